"""The user-facing documents: the Sphinx docs build without a warning, the README stays a README.

``pytest -m docs`` selects the builds (seconds). They need the doc tools of the ``[dev]`` extra
(Sphinx, sphinx-airflow-theme, myst-parser) and fail without them; the floor lane, whose
virtualenv holds only the package's floors and pytest, deselects them (``-m "not docs"`` in
scripts/test.sh) and still checks the README and its DAG on the oldest Airflow.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow < 3.2 (the floor lane)
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
DOC_TOOLS = ("sphinx", "sphinx_airflow_theme", "myst_parser")


def _build(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _require_doc_tools() -> None:
    missing = [m for m in DOC_TOOLS if importlib.util.find_spec(m) is None]
    assert not missing, f"the doc tools are not installed: {missing}: pip install -e '.[dev]'"


@pytest.mark.docs
def test_the_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    _require_doc_tools()
    done = _build(tmp_path)
    assert done.returncode == 0, f"sphinx-build -W failed:\n{done.stderr[-6000:]}\n{done.stdout[-2000:]}"
    html = tmp_path / "html"
    # The generated parts are there: the settings table from config.OPTIONS, the reference from
    # the docstrings, every example DAG included in a guide.
    from airflow_batchjob import config

    configuration = (html / "configuration.html").read_text()
    assert all(f'id="option-{name.replace("_", "-")}"' in configuration for name in config.OPTIONS)
    operators = (html / "reference" / "operators.html").read_text()
    assert "airflow_batchjob.operators.job.BatchJobOperator" in operators
    guides = "".join(p.read_text() for p in (html / "guides").glob("*.html"))
    for example in sorted((ROOT / "example_dags").glob("example_*.py")):
        assert example.name in guides, f"{example.name} is in no guide"


@pytest.mark.docs
def test_a_warning_fails_the_build(tmp_path: Path) -> None:
    """The check above is only worth something if -W really turns a warning into a failure."""
    _require_doc_tools()
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text("project = 'w'\n")
    (src / "index.rst").write_text("W\n=\n\n.. toctree::\n\n   missing-page\n")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "missing-page" in done.stderr


def test_the_readme_is_for_users() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 16 * 1024, f"README.md is {len(readme.encode())} bytes (at most 16 KiB)"
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[0] for line in first_block] == ["scripts/demo.sh", "scripts/test.sh"]
    for path in ("LICENSE", "CHANGELOG.md", "CONTRIBUTING.md"):
        assert (ROOT / path).is_file(), path
    assert "## Measured times" in (ROOT / "CONTRIBUTING.md").read_text()


def test_the_readmes_first_dag_runs_as_pasted(tmp_path: Path) -> None:
    """Its code block is a whole DAG file: it imports cleanly, on its own, with a real image."""
    readme = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    (tmp_path / "hello_batchjob.py").write_text(code)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    dag = bag.dags["hello_batchjob"]
    assert {t.task_id for t in dag.tasks} == {"hello", "fruit"}
    assert all(t.image.startswith("busybox:") for t in dag.tasks)


def test_the_documentation_url_names_the_docs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = project["urls"]["Documentation"]
    assert not url.startswith("https://pypi.org/"), url
    assert url in (ROOT / "docs/index.rst").read_text(), "docs/index.rst says where the docs are published"

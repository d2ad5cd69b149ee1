"""The package a user installs: the sdist and wheel built, checked, installed and run.

Every other test imports this checkout (an editable install). Here the sdist and the wheel are
built as a release would build them (``uv build``: the wheel from the sdist, so the sdist is shown
complete), their contents and metadata checked (``twine check``), and the wheel installed, not
editable, into a virtualenv of its own, where Airflow finds the provider and a DAG defers a Job on
the local cluster from the installed code alone. Marker ``wheel``: ``scripts/test.sh`` runs this
file in the wheel lane, after the floor lane on its cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as lc

pytestmark = [pytest.mark.cluster, pytest.mark.wheel]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "airflow_batchjob"
# What only the checkout carries: none of it belongs in a user's site-packages.
NOT_SHIPPED = ("tests/", "benchmarks/", "localcluster/", "example_dags/", "scripts/", "docs/", "deploy/")


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command whose output is shown when it fails."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, (
        f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run(BIN / "uv", "build", "--quiet", "--out-dir", out, ROOT)
    found = {p.suffix: p for p in out.iterdir() if p.suffix in (".whl", ".gz")}
    assert set(found) == {".whl", ".gz"}, sorted(out.iterdir())
    return {"wheel": found[".whl"], "sdist": found[".gz"]}


def test_twine_check_passes(dists: dict[str, Path]) -> None:
    # --strict: a README that PyPI would render as plain text fails too.
    run(BIN / "twine", "check", "--strict", dists["wheel"], dists["sdist"])


def test_the_wheel_holds_the_package_and_nothing_else(dists: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    stray = [n for n in names if not n.startswith((f"{PACKAGE}/", f"{info}/"))]
    assert not stray, f"files outside the package in the wheel: {stray}"
    for needed in ("py.typed", "__init__.py", "worker/__main__.py", "operators/job.py", "triggers/job.py"):
        assert f"{PACKAGE}/{needed}" in names, f"{needed} is missing from the wheel"
    assert f"{info}/licenses/LICENSE" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Every module of the checkout's package is in the wheel (a new subpackage forgotten by the build
    # configuration would be missing here, not in an editable install).
    source = {str(p.relative_to(ROOT)) for p in (ROOT / PACKAGE).rglob("*.py")}
    assert source <= set(names), f"modules left out of the wheel: {sorted(source - set(names))}"

    meta = Parser().parsestr(zipfile.ZipFile(dists["wheel"]).read(f"{info}/METADATA").decode())
    assert meta["Name"] == "airflow-batchjob"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Description-Content-Type"] == "text/markdown"
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("apache-airflow>=") for r in requires), requires
    entry_points = zipfile.ZipFile(dists["wheel"]).read(f"{info}/entry_points.txt").decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_batchjob:get_provider_info" in entry_points


def test_the_sdist_holds_what_builds_the_wheel_and_no_checkout_tooling(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = [n.removeprefix(f"{top}/") for n in tar.getnames()]
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", f"{PACKAGE}/py.typed"):
        assert needed in names, f"{needed} is missing from the sdist"
    stray = [n for n in names if n.startswith(NOT_SHIPPED)]
    assert not stray, f"checkout-only files in the sdist: {stray[:10]}"


@pytest.fixture(scope="module")
def installed(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv holding the wheel (not editable) and its dependencies, nothing of the checkout.

    The versions are those of the test virtualenv (as constraints): the wheel is what is under
    test, not the day's resolution, and uv's cache then serves every download after the first run.
    """
    home = tmp_path_factory.mktemp("wheel-venv")
    venv = home / "venv"
    constraints = home / "constraints.txt"
    frozen = run(BIN / "uv", "pip", "freeze", "--python", sys.executable).stdout.splitlines()
    constraints.write_text(
        "\n".join(line for line in frozen if not line.startswith(("-e ", "airflow-batchjob")))
    )
    run(BIN / "uv", "venv", "--quiet", "--python", sys.executable, venv)
    # Bytecode compiled now: PYTHONDONTWRITEBYTECODE is set here (see scripts/venvlib.sh).
    run(
        BIN / "uv",
        "pip",
        "install",
        "--quiet",
        "--compile-bytecode",
        "--python",
        venv / "bin" / "python",
        "-c",
        constraints,
        f"{dists['wheel']}[redis,rabbitmq]",
    )
    yield venv


def wheel_env(venv: Path, airflow_home: Path) -> dict[str, str]:
    """The environment of a user's machine: no path into this checkout, a home of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AIRFLOW_HOME", "VIRTUAL_ENV")}
    env |= {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
    }
    return env


def test_the_installed_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    code = "import airflow_batchjob, airflow_batchjob.worker; print(airflow_batchjob.__file__)"
    where = run(installed / "bin" / "python", "-c", code, cwd=tmp_path, env=wheel_env(installed, tmp_path))
    assert "/site-packages/airflow_batchjob/" in where.stdout and str(ROOT) not in where.stdout, where.stdout
    listed = run(
        BIN / "uv", "pip", "list", "--python", installed / "bin" / "python", "--format", "json"
    ).stdout
    ours = [p for p in json.loads(listed) if p["name"] == "airflow-batchjob"]
    assert ours and "editable_project_location" not in ours[0], ours


def test_airflow_finds_the_provider(installed: Path, dists: dict[str, Path], tmp_path: Path) -> None:
    out = run(
        installed / "bin" / "airflow",
        "providers",
        "get",
        "airflow-batchjob",
        "--full",
        "-o",
        "json",
        cwd=tmp_path,
        env=wheel_env(installed, tmp_path),
    ).stdout
    info = json.loads(out[out.index("[") :])[0]
    assert info["package-name"] == "airflow-batchjob", info
    assert info["versions"][0] == dists["wheel"].name.split("-")[1]
    text = json.dumps(info)
    for listed in (
        "airflow_batchjob.operators.job",
        "airflow_batchjob.triggers.job",
        "airflow_batchjob.sensors.job",
    ):
        assert listed in text, f"{listed} not in the provider info Airflow read from the wheel"


DEFERRED_DAG = textwrap.dedent(
    """
    import json, os, sys

    import pendulum
    from airflow.sdk import DAG

    from airflow_batchjob.operators.job import BatchJobOperator

    with DAG("wheel_deferred", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        BatchJobOperator(
            task_id="hello",
            namespace=os.environ["NAMESPACE"],
            image="busybox:1.36",
            cmds=["sh", "-c", "echo hello from the wheel"],
            deferrable=True,
            defer_after=0,
        )

    if __name__ == "__main__":
        import airflow_batchjob

        dr = dag.test()
        ti = dr.get_task_instance("hello")
        print("RESULT", json.dumps({"state": str(ti.state), "file": airflow_batchjob.__file__,
                                    "xcom": ti.xcom_pull(task_ids="hello")}))
    """
)


def test_a_deferred_job_runs_from_the_installed_wheel(
    installed: Path, tmp_path: Path, local_cluster: lc.State, namespace: str
) -> None:
    env = wheel_env(installed, tmp_path) | {"NAMESPACE": namespace}
    (tmp_path / "dags").mkdir()
    dag_file = tmp_path / "dags" / "wheel_deferred.py"
    dag_file.write_text(DEFERRED_DAG)
    run(installed / "bin" / "airflow", "db", "migrate", cwd=tmp_path, env=env)
    proc = run(installed / "bin" / "python", dag_file, cwd=tmp_path, env=env, timeout=300)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["state"].endswith("success"), f"{result}\n{proc.stderr[-3000:]}"
    assert str(ROOT) not in result["file"]
    assert result["xcom"]["outcome"]["state"] == "succeeded", result
    # The task deferred, and the installed trigger watched the Job to its end and relayed its Pod's log.
    logs = (proc.stdout + proc.stderr).splitlines()
    assert any("Pausing task as DEFERRED" in x for x in logs), "\n".join(logs[-40:])
    trigger = [x for x in logs if "airflow_batchjob.triggers.job.JobTrigger" in x]
    assert any("hello from the wheel" in x for x in trigger), "\n".join(logs[-40:])
    assert any("1/1 succeeded" in x for x in trigger), "\n".join(logs[-40:])

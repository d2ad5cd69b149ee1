"""The operators' hints accept what the code accepts: a typed DAG passes mypy (issue 26 item 6).

Airflow and the Kubernetes client are not analysed (``follow_imports = skip``: they become
``Any``), which keeps the check to a few seconds; the operators' own signatures are what it reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DAG_FILE = Path(__file__).parent / "typed" / "ported_dag.py"
CONFIG = """\
[mypy]
python_version = 3.11
ignore_missing_imports = True
follow_imports = silent
warn_unused_ignores = True

[mypy-airflow.*,kubernetes.*,kubernetes_asyncio.*,pendulum.*,sqlalchemy.*,pydantic.*]
follow_imports = skip
"""


def test_a_ported_dag_type_checks(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    out, err, status = api.run(
        ["--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), str(DAG_FILE)]
    )
    assert status == 0, out + err


def test_a_wrong_type_is_still_caught(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "from airflow_batchjob.operators.job import BatchJobOperator\n"
        "BatchJobOperator(task_id='t', image='b', cmds='echo hi', skip_on_exit_code='99')\n"
    )
    out, _, status = api.run(["--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), str(bad)])
    assert status == 1 and "skip_on_exit_code" in out

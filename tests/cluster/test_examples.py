"""Every example DAG runs to success on the local cluster (``dag.test()``, triggers in line).

The demo (``scripts/demo.sh``) runs the same DAGs through a real scheduler and triggerer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow < 3.2 (the floor lane)
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

from tests.unit.test_example_dags import EXAMPLES, EXPECTED

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_example_dag_runs_to_success(
    run_dag: Any, namespace: str, monkeypatch: pytest.MonkeyPatch, dag_id: str
) -> None:
    monkeypatch.setenv("BATCHJOB_EXAMPLE_NAMESPACE", namespace)  # read when the DAG file is parsed
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "_common", raising=False)  # re-read the namespace for this test
    bag = DagBag(dag_folder=str(Path(EXAMPLES) / f"{dag_id}.py"))
    result = run_dag(bag.dags[dag_id])
    assert {t: r["state"] for t, r in result.items()} == {t: "success" for t in result}

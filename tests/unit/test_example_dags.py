"""Every example DAG imports cleanly and is a DAG an Airflow user would copy."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow < 3.2 (the floor lane)
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
EXPECTED = {
    "example_batchjob",
    "example_jobgroup",
    "example_indexed",
    "example_queue_rabbitmq",
    "example_queue_redis",
    "example_nightly_pipeline",
    "example_map_reduce",
    "example_batch_map",
}


def test_example_dags_import_without_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # Airflow puts its DAGs folder on sys.path: _common imports
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED
    for dag in bag.dags.values():
        assert dag.doc_md, f"{dag.dag_id} explains its pattern in doc_md"
        assert all(t.retries >= 1 for t in dag.tasks), f"{dag.dag_id} sets retries"

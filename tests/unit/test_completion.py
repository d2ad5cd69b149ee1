"""Ending a task in the triggerer (``triggers/completion.py``): what travels, what ends there.

The pure parts: which settings travel in the trigger's row, which events end the task there, and
that a sensor's met goal ends it with the XCom its worker would have pushed (a sensor's
``execute_complete`` makes no API call). The real triggerer ending real operators' tasks is
``tests/stack/test_defer_race.py``.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.sensors.job import JobSensor
from airflow_batchjob.triggers.completion import (
    complete,
    completion_spec,
    run_completion,
    triggerer_sets_xcoms,
)
from airflow_batchjob.triggers.job import JobTrigger

TI = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=None, try_number=2, max_tries=3)
LOG = logging.getLogger("test_completion")


@pytest.fixture(autouse=True)
def _turned_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """``[batchjob] complete_in_triggerer`` is off by default; these tests are about it on."""
    monkeypatch.setenv("AIRFLOW__BATCHJOB__COMPLETE_IN_TRIGGERER", "True")


# A spec is made only for a triggerer that can write XComs (Airflow 3.3 here, not the 3.0 floor).
needs_xcom_writes = pytest.mark.skipif(
    not triggerer_sets_xcoms(), reason="this Airflow's triggerer writes no XComs"
)


def in_dag(make: Any) -> Any:
    """The task as Airflow executes it: in a DAG (which says whether mapped tasks depend on it)."""
    with DAG("d", schedule=None):
        return make()


JOB = {"namespace": "ns", "name": "j", "uid": "u", "state": "succeeded", "succeeded": 1, "failed": 0}


@needs_xcom_writes
def test_the_spec_names_the_class_and_carries_the_rendered_settings_as_json() -> None:
    op = in_dag(
        lambda: BatchJobOperator(
            task_id="t", image="busybox", cmds=["true"], namespace="ns", delete_on_finish="always"
        )
    )
    spec = completion_spec(op, TI)
    assert spec is not None
    assert spec["operator"] == "airflow_batchjob.operators.job.BatchJobOperator"
    assert spec["fields"]["delete_on_finish"] == "always" and spec["fields"]["namespace"] == "ns"
    assert spec["ti"] == {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "r",
        "map_index": -1,
        "try_number": 2,
        "max_tries": 3,
    }
    json.dumps(spec, allow_nan=False)  # what the trigger's row can hold
    assert not {"params", "upstream_task_ids", "_log"} & set(spec["fields"])


def test_a_dag_authors_own_execute_complete_is_never_run_in_the_triggerer() -> None:
    class Mine(BatchJobOperator):
        def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
            return "worker-only work"

    assert completion_spec(in_dag(lambda: Mine(task_id="t", image="busybox", cmds=["true"])), TI) is None


def test_a_task_that_mapped_tasks_expand_over_finishes_on_a_worker() -> None:
    """Airflow's worker records the length of the value they map over; the triggerer does not."""

    def make() -> Any:
        op = BatchJobOperator(task_id="t", image="busybox", cmds=["true"])

        @task
        def each(x: Any) -> None: ...

        each.expand(x=op.output)
        return op

    assert completion_spec(in_dag(make), TI) is None


def test_it_is_off_unless_the_deployment_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__BATCHJOB__COMPLETE_IN_TRIGGERER")
    assert completion_spec(in_dag(lambda: JobSensor(task_id="s", job_name="j", namespace="ns")), TI) is None


@pytest.mark.parametrize(
    ("event", "ends"),
    [
        ({"status": "met", "job": JOB}, True),
        ({"status": "met", "job": {**JOB, "state": "failed"}}, False),
        ({"status": "timeout", "job": JOB}, False),
        ({"status": "error", "job": None}, False),
    ],
)
def test_only_a_job_that_succeeded_ends_in_the_triggerer(event: dict[str, Any], ends: bool) -> None:
    op = BatchJobOperator(task_id="t", image="busybox", cmds=["true"])
    assert op.completes_in_triggerer(event) is ends


@pytest.mark.parametrize(
    ("counts", "ends"),
    [({"total": 3, "succeeded": 3, "failed": 0}, True), ({"total": 3, "succeeded": 2, "failed": 1}, False)],
)
def test_only_a_group_without_a_failure_ends_in_the_triggerer(counts: dict[str, int], ends: bool) -> None:
    op = JobGroupOperator(task_id="g", image="busybox", cmds=["true"], items=["a"])
    assert op.completes_in_triggerer({"status": "met", "counts": counts}) is ends


@needs_xcom_writes
def test_a_met_sensor_ends_with_the_xcom_its_worker_would_push() -> None:
    spec = completion_spec(in_dag(lambda: JobSensor(task_id="s", job_name="j", namespace="ns")), TI)
    assert spec is not None
    event = {"status": "met", "message": "Job ns/j: Complete", "job": JOB}
    assert run_completion(spec, event, LOG) == {"return_value": JOB}
    assert run_completion(spec, {"status": "failed", "message": "Failed", "job": JOB}, LOG) is None


@needs_xcom_writes
def test_a_sensor_with_do_xcom_push_off_ends_without_a_return_value() -> None:
    spec = completion_spec(
        in_dag(lambda: JobSensor(task_id="s", job_name="j", namespace="ns", do_xcom_push=False)), TI
    )
    assert spec is not None
    assert run_completion(spec, {"status": "met", "message": "", "job": JOB}, LOG) == {}


def test_anything_unexpected_hands_the_event_to_a_worker() -> None:
    spec = {"operator": "airflow_batchjob.operators.job.NoSuchOperator", "fields": {}, "ti": {}}
    assert complete(spec, {"status": "met", "job": JOB}, LOG) is False


@needs_xcom_writes
def test_the_trigger_row_carries_the_spec_and_leaves_it_out_by_default() -> None:
    spec = completion_spec(in_dag(lambda: JobSensor(task_id="s", job_name="j", namespace="ns")), TI)
    assert "completion" not in JobTrigger(namespace="ns", job_name="j").serialize()[1]
    kwargs = JobTrigger(namespace="ns", job_name="j", completion=spec).serialize()[1]
    assert kwargs["completion"] == spec


@pytest.mark.skipif(triggerer_sets_xcoms(), reason="this Airflow's triggerer writes XComs")
def test_no_spec_where_the_triggerer_cannot_write_xcoms() -> None:
    """Airflow 3.0: every deferred task resumes on a worker; nothing extra weighs on the trigger."""
    assert completion_spec(in_dag(lambda: JobSensor(task_id="s", job_name="j", namespace="ns")), TI) is None

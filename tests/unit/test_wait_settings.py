"""A deferred wait and a wait in the worker must run with the same settings.

The operators hand their wait settings to a trigger (deferrable) or to the wait coroutine
(``deferrable=False``) through two different code paths; a setting carried by one and not the
other (``diagnose_interval`` once was) silently behaves differently in the default mode.
With ``defer_after=0``, deferring raises ``TaskDeferred`` before any API call, so this needs no
cluster.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.exceptions import TaskDeferred

from airflow_batchjob.operators.job import BaseBatchJobOperator, BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator

SETTINGS: dict[str, Any] = {
    "kubernetes_conn_id": "k8s_other",
    "progress_interval": 3.0,
    "diagnostics": False,
    "diagnose_interval": 7.0,
    "pending_timeout": 90.0,
    "logs": {"containers": ["main"], "max_streams": 2, "max_lines": 10, "tail_lines": 50},
}


# The task instance a worker's context holds (the trigger gets how to end the task in the triggerer).
CONTEXT: Any = {"ti": SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)}

OPERATOR: dict[str, Any] = {
    **{k: v for k, v in SETTINGS.items() if k != "logs"},
    "container_logs": ["main"],
    "max_log_streams": 2,
    "max_log_lines": 10,
}


def _carried(op: BaseBatchJobOperator, trigger: Any) -> None:
    options = op.wait_options(deadline=None)
    shared = {k for k in options if k not in ("deadline", "progress")}
    assert shared == set(SETTINGS), "a new wait setting must be added to SETTINGS (and to the triggers)"
    for key in sorted(shared):
        assert getattr(trigger, key) == options[key] == SETTINGS[key], key
    # ... and the trigger hands the wait the same set of settings as the worker's wait gets.
    assert set(trigger.wait_settings()) == set(options)


def test_job_wait_settings_reach_the_trigger() -> None:
    op = BatchJobOperator(
        task_id="t", namespace="ns", image="busybox", cmds=["true"], defer_after=0, **OPERATOR
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.wait(CONTEXT, "ns", "job-1", "uid-1")
    _carried(op, deferred.value.trigger)
    assert deferred.value.trigger.delete_on_kill is True


def test_group_wait_settings_reach_the_trigger() -> None:
    op = JobGroupOperator(
        task_id="t",
        namespace="ns",
        image="busybox",
        cmds=["true"],
        items=["a", "b"],
        defer_after=0,
        **OPERATOR,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.wait_group(CONTEXT, "ns", "jobgroup=g", 2)
    _carried(op, deferred.value.trigger)
    assert deferred.value.trigger.delete_on_kill is True

"""Telling a user's clear from Airflow failing a try after the Job succeeded (``core/reported.py``),
the event for a Job decided before any wait, and the trigger's settle time."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from airflow_batchjob.core.reported import (
    ANNOTATION_REPORTED,
    cleared_since_success,
    keep_succeeded,
    parse_mark,
    reported_mark,
)
from airflow_batchjob.operators.job import decided_event
from airflow_batchjob.triggers.base import SETTLE_SECONDS, settle, settle_seconds
from airflow_batchjob.triggers.job import JobTrigger


def job(mark: str | None = None, **status: Any) -> dict[str, Any]:
    annotations = {ANNOTATION_REPORTED: mark} if mark is not None else {}
    return {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "annotations": annotations},
        "spec": {"completions": 1, "parallelism": 1},
        "status": status,
    }


def test_mark_round_trips_and_ignores_foreign_values() -> None:
    assert parse_mark(reported_mark(3, 5)) == (3, 5)
    for foreign in (None, "", "yes", "try=1", "try=x,max_tries=2"):
        assert parse_mark(foreign) is None


def test_unreported_success_is_kept() -> None:
    # No try succeeded with it: the worker died, or Airflow failed the try before it reported.
    assert keep_succeeded(job(), max_tries=1)


def test_success_reported_in_this_generation_is_kept() -> None:
    # A try reported it and Airflow failed the try anyway (same max_tries: no clear since).
    assert keep_succeeded(job(reported_mark(1, 1)), max_tries=1)


def test_success_reported_before_a_clear_runs_again() -> None:
    # Clearing sets max_tries = try_number + retries: a new value.
    assert not keep_succeeded(job(reported_mark(1, 1)), max_tries=2)
    assert cleared_since_success([job(), job(reported_mark(2, 3))], max_tries=5)
    assert not cleared_since_success([job(), job(reported_mark(2, 3))], max_tries=3)
    assert not cleared_since_success([], max_tries=3)


COMPLETE = {
    "succeeded": 1,
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"},
    ],
}


def test_decided_event_for_finished_and_running_jobs() -> None:
    event = decided_event(job(**COMPLETE))
    assert event is not None and event["status"] == "met"
    assert event["job"]["state"] == "succeeded"
    assert decided_event(job(active=1)) is None


def test_settle_holds_an_early_event_only() -> None:
    t0 = time.monotonic()
    asyncio.run(settle(t0, 0.3, _NoLog()))
    assert time.monotonic() - t0 >= 0.3
    t1 = time.monotonic()
    asyncio.run(settle(t1 - 5, 0.3, _NoLog()))  # decided long after the trigger started
    assert time.monotonic() - t1 < 0.1


def test_triggers_settle_by_default_and_serialize_a_changed_value(monkeypatch: Any) -> None:
    monkeypatch.delenv("AIRFLOW__BATCHJOB__DEFER_SETTLE_SECONDS", raising=False)
    trigger = JobTrigger(namespace="ns", job_name="j")
    assert trigger.settle_seconds is None and settle_seconds(None) == SETTLE_SECONDS > 0
    assert "settle_seconds" not in trigger.serialize()[1]
    monkeypatch.setenv("AIRFLOW__BATCHJOB__DEFER_SETTLE_SECONDS", "2.5")
    assert settle_seconds(None) == 2.5 and settle_seconds(0.0) == 0.0
    assert (
        JobTrigger(namespace="ns", job_name="j", settle_seconds=1.0).serialize()[1]["settle_seconds"] == 1.0
    )


def test_only_a_trigger_a_triggerer_runs_holds_its_event(monkeypatch: Any) -> None:
    """`dags test` and `tasks test` run the trigger in the task's own process (no task instance
    on the trigger): no executor report can race the resumed task there, so nothing is held."""
    monkeypatch.delenv("AIRFLOW__BATCHJOB__DEFER_SETTLE_SECONDS", raising=False)
    trigger = JobTrigger(namespace="ns", job_name="j")
    assert not trigger.in_triggerer() and trigger.hold_seconds() == 0.0
    trigger.task_instance = SimpleNamespace(task_id="t")  # as a triggerer sets it before running it
    assert trigger.in_triggerer() and trigger.hold_seconds() == SETTLE_SECONDS


class _NoLog:
    def info(self, *args: Any) -> None:
        pass


def test_deferrable_follows_the_deployment_only_where_it_set_it(monkeypatch: Any) -> None:
    from airflow_batchjob.operators.base import default_deferrable

    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert default_deferrable() is True  # Airflow's shipped False is no choice of the deployment
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert default_deferrable() is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert default_deferrable() is True

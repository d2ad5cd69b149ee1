"""A trigger's diagnostics summary adds to what the wait in the worker saw before it deferred:
a short Job may be over before the trigger first looks (CI run ci11 reported "at most 0 Pods ran
at once (0 requested)" for a Job whose two Pods the worker had seen running)."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_batchjob.triggers.diagnostics import WaitDiagnostics


def job(active: int, parallelism: int = 2, succeeded: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
        "spec": {"parallelism": parallelism, "completions": 2},
        "status": {"active": active, "ready": active, "succeeded": succeeded},
    }


def never(*_: Any, **__: Any) -> Any:
    raise AssertionError("no API client is needed to summarise")


def summary_after(seen: dict[str, Any] | None, *jobs: dict[str, Any]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        diag = WaitDiagnostics(
            conn_id="c", namespace="ns", factory=never, queue=asyncio.Queue(), progress=None, seen=seen
        )
        for j in jobs:
            await diag.observe([j])
        return diag.summary()

    return asyncio.run(run())


def test_a_job_over_before_the_trigger_looks_keeps_what_the_worker_saw() -> None:
    seen = {"max_observed_parallelism": 2, "requested_parallelism": 2, "problems": ["p: ImagePull"]}
    got = summary_after(seen, job(active=0, succeeded=2))
    assert got["max_observed_parallelism"] == 2
    assert got["requested_parallelism"] == 2
    assert got["problems"] == ["p: ImagePull"]


def test_the_trigger_raises_what_it_sees_above_the_worker() -> None:
    got = summary_after({"max_observed_parallelism": 1, "requested_parallelism": 2}, job(active=2))
    assert got["max_observed_parallelism"] == 2


def test_without_a_handover_the_summary_starts_empty() -> None:
    got = summary_after(None, job(active=0, succeeded=2))
    assert got["max_observed_parallelism"] == 0 and got["problems"] == []

"""A wait's view of its Job's Kueue Workload (issue 33), beside the Job watch of ``triggers/job.py``.

The Workload is followed by the shared namespace watch (kind ``workloads``, selected by the
``kueue.x-k8s.io/job-uid`` label Kueue puts on it), on the wait's own wake-up queue: a change of
the Workload (queued with a new reason, admitted, evicted, finished) wakes the wait as a change of
the Job does. ``core/kueue.KueueTracker`` says what to log; ``queue_timeout`` ends the wait with
status ``stuck`` when the Job is still not admitted that long after it queued. An eviction is not
an end: Kueue suspends the Job (its Pods are deleted, not failed) and readmits it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from airflow_batchjob.core.kueue import JOB_UID_LABEL, KueueSettings, KueueTracker, managed
from airflow_batchjob.core.watchscope import Scope
from airflow_batchjob.hooks.subscription import Job, Subscription
from airflow_batchjob.hooks.watch import ClientFactory, subscription


class WorkloadFollower:
    """Follows one Job's Workload for a wait; ``None`` work for a Job without a Kueue queue."""

    def __init__(
        self,
        settings: KueueSettings,
        *,
        conn_id: str,
        namespace: str,
        factory: ClientFactory,
        queue: asyncio.Queue[tuple[str, Job | None]],
        progress: Callable[[str], None] | None,
    ) -> None:
        self.settings = settings
        self.conn_id, self.namespace, self.factory, self.queue = conn_id, namespace, factory, queue
        self.progress = progress
        self.tracker = KueueTracker(queue_timeout=settings.queue_timeout)
        self.sub: Subscription | None = None
        self._stack = contextlib.AsyncExitStack()
        self._uid: str | None = None

    async def __aenter__(self) -> WorkloadFollower:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    async def observe(self, job: Job, now: float | None = None) -> str | None:
        """Look at the Job's Workload; log what changed; the reason to stop when queue_timeout ran out."""
        now = time.time() if now is None else now
        if not managed(job):
            return None
        uid = job["metadata"]["uid"]
        if self._uid != uid:  # the first look (or, by a selector, a new Job): follow its Workload
            await self._stack.aclose()
            self._stack = contextlib.AsyncExitStack()
            self._uid = uid
            self.sub = await self._stack.enter_async_context(
                subscription(
                    self.conn_id,
                    self.namespace,
                    Scope(selector=f"{JOB_UID_LABEL}={uid}"),
                    self.factory,
                    kind="workloads",
                    queue=self.queue,
                )
            )
        sub = self.sub
        # No right to read Workloads, or Kueue's kinds missing: the wait goes on, on the Job alone.
        if sub is not None and sub.error:
            if self.progress is not None and self.tracker.phases != ["unreadable"]:
                self.progress(f"Kueue: cannot follow the Workload of Job {self.namespace}: {sub.error}")
                self.tracker.phases = ["unreadable"]
            return None
        if sub is None or not sub.synced:
            return None  # its first list wakes the wait again
        workloads = sorted(sub.jobs.values(), key=lambda w: w["metadata"].get("creationTimestamp") or "")
        for line in self.tracker.observe(workloads[-1] if workloads else None, now):
            if self.progress is not None:
                self.progress(line)
        return self.tracker.over_queue_timeout(now)

    def until(self, deadline: float | None, now: float | None = None) -> float | None:
        """The wait's next wake-up: its deadline, or sooner when queue_timeout runs out first."""
        now = time.time() if now is None else now
        left = self.tracker.next_wake(now)
        if left is None:
            return deadline
        return now + left + 0.05 if deadline is None else min(deadline, now + left + 0.05)

    def stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event, with the time queued and the evictions in its ``diagnostics`` summary."""
        if self._uid is None:
            return event
        summary = self.tracker.summary(time.time())
        diagnostics = event.get("diagnostics")
        if isinstance(diagnostics, dict):
            diagnostics["kueue"] = summary
        else:
            event["kueue"] = summary
        if self.progress is not None and event.get("status") != "timeout":
            self.progress(
                f"Kueue: {summary['queued_seconds']:.0f}s queued, {summary['evictions']} eviction(s), "
                f"ClusterQueue {summary['cluster_queue'] or '-'}"
            )
        return event


def follower(
    kueue: dict[str, Any] | None,
    *,
    conn_id: str,
    namespace: str,
    factory: ClientFactory,
    queue: asyncio.Queue[tuple[str, Job | None]],
    progress: Callable[[str], None] | None,
) -> WorkloadFollower | None:
    settings = KueueSettings.from_dict(kueue)
    if not settings.enabled:
        return None
    return WorkloadFollower(
        settings, conn_id=conn_id, namespace=namespace, factory=factory, queue=queue, progress=progress
    )

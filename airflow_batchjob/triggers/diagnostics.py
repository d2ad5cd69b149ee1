"""Explain a slow or stuck wait while it happens: Pod and Event watches started only when needed.

A healthy Job costs nothing extra: its status alone (``active``, ``ready`` against the wanted
parallelism) shows there is nothing to explain. When it shows a gap and no progress for a few
seconds (a fan-out ramping up always has a gap, but keeps progressing), the waiter
joins the process's shared Pod and Event watches of the namespace (one each, whatever the number
of waiters) and logs, on each change and at most every ``interval`` seconds otherwise, why fewer
Pods run than requested and why Pods that exist do not start (see ``core/diagnose.py``).
``pending_timeout`` turns a Pod that cannot be scheduled or started for that long into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from airflow_batchjob.core.diagnose import (
    CONTROLLER_UID,
    PodProblem,
    diagnose,
    needs_diagnosis,
    parallelism_of,
    pending_violation,
)
from airflow_batchjob.core.watchscope import Scope
from airflow_batchjob.hooks.watch import ClientFactory, Job, Subscription, subscription
from airflow_batchjob.triggers.podlogs import LogSettings, PodLogs

GRACE_SECONDS = 5.0  # a gap shorter than this is ordinary start-up, not worth two more watches
MAX_LINES = 12
LOOK_EVERY = 2.0  # seconds between two diagnoses of the same wait
MAX_UIDS = 100  # Jobs whose Pods are selected by uid; a larger group by the wait's Pod selector
_AGE = re.compile(r" for \d+s")


class WaitDiagnostics:
    """Tracks the Jobs of one wait; starts Pod/Event watches on a lasting gap; logs and summarises."""

    def __init__(
        self,
        *,
        conn_id: str,
        namespace: str,
        factory: ClientFactory,
        queue: asyncio.Queue[tuple[str, Job | None]],
        progress: Callable[[str], None] | None,
        interval: float = 30.0,
        pending_timeout: float | None = None,
        enabled: bool = True,
        grace: float = GRACE_SECONDS,
        pod_scope: Scope | None = None,
        seen: dict[str, Any] | None = None,
    ) -> None:
        self.conn_id, self.namespace, self.factory, self.queue = conn_id, namespace, factory, queue
        self.progress = progress
        self.interval = interval
        self.pending_timeout = pending_timeout
        self.enabled = enabled or pending_timeout is not None
        self.grace = grace
        self.uids: set[str] = set()
        self.pods: Subscription | None = None
        self.events: Subscription | None = None
        self._stack = contextlib.AsyncExitStack()
        self._gap_since: float | None = None
        self._signature: tuple[int, ...] = ()
        self._next_look = 0.0
        self._last_key: tuple[str, ...] = ()
        self._last_log = 0.0
        # What the wait in the worker saw before it handed over (``seen``, its summary) counts too:
        # a short Job may be over by the time the trigger first looks.
        seen = seen or {}
        self.max_active = int(seen.get("max_observed_parallelism") or 0)
        self.requested = int(seen.get("requested_parallelism") or 0)
        self.problems: list[str] = list(seen.get("problems") or [])  # distinct lines, for the XCom
        self.logs: PodLogs | None = None  # set by ``watched`` when the wait shows Pod logs
        self.final_status: str | None = None
        self.log_pods: Subscription | None = None
        self.pod_scope = pod_scope
        self._diag_stack: contextlib.AsyncExitStack | None = None
        self._covered: frozenset[str] = frozenset()

    async def __aenter__(self) -> WaitDiagnostics:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._diag_stack is not None:
            await self._diag_stack.aclose()
        await self._stack.__aexit__(*exc)

    @property
    def watching(self) -> bool:
        return self.pods is not None

    async def _start(self) -> None:
        """Join the Pod and Event watches for the Jobs seen so far (again when more Jobs appear)."""
        if self._diag_stack is not None:
            await self._diag_stack.aclose()
        self._diag_stack = stack = contextlib.AsyncExitStack()
        uids = sorted(self.uids)
        self._covered = frozenset(uids)
        ctx = stack.enter_async_context
        # Only these Jobs' Pods and Events are listed, never the namespace's: by their uid, or by
        # the wait's own Pod selector for a large group (a selector of 1,000 uids is a long URL).
        if len(uids) <= MAX_UIDS or self.pod_scope is None:
            pods = Scope(selector=f"{CONTROLLER_UID} in ({','.join(uids)})")
        else:
            pods = self.pod_scope
        self.pods = await ctx(
            subscription(self.conn_id, self.namespace, pods, self.factory, kind="pods", queue=self.queue)
        )
        # A field selector holds one uid; several Jobs' FailedCreate events are few (1 h TTL).
        one = f",involvedObject.uid={uids[0]}" if len(uids) == 1 else ""
        self.events = await ctx(
            subscription(
                self.conn_id,
                self.namespace,
                Scope(fields=f"involvedObject.kind=Job{one}"),
                self.factory,
                kind="events",
                queue=self.queue,
                where=lambda ev: (ev.get("involvedObject") or {}).get("uid") in self.uids,
            )
        )

    async def observe(self, jobs: Iterable[Job], now: float | None = None) -> PodProblem | None:
        """Look at the Jobs (and Pods, Events once watched), log, return a Pod past pending_timeout."""
        if not self.enabled:
            return None
        now = time.time() if now is None else now
        running = [j for j in jobs if j.get("metadata", {}).get("uid")]
        active = wanted = requested = 0
        counts = [0, 0, 0]
        for job in running:
            self.uids.add(job["metadata"]["uid"])
            par = parallelism_of(job)
            active += par.active
            wanted += par.wanted
            requested += par.requested if par.wanted else 0
            status = job.get("status") or {}
            counts[0] += int(status.get("succeeded") or 0)
            counts[1] += int(status.get("failed") or 0)
            counts[2] += int(status.get("ready") or 0)
        self.max_active = max(self.max_active, active)
        self.requested = max(self.requested, requested)
        gapped = [j for j in running if needs_diagnosis(j)]
        if not gapped:
            self._gap_since = None
            if self._last_key and self.progress and wanted:
                self.progress(f"Pods of {self._what(running)}: {active} running, nothing holds them back now")
            self._last_key = ()
            return None
        if not self.watching:
            # A gap while Pods keep starting or finishing is a fan-out ramping up, not a problem:
            # start the extra watches only after the grace period without any progress.
            signature = (active, *counts)
            if self._gap_since is None or signature != self._signature:
                self._gap_since, self._signature = now, signature
            if now - self._gap_since < self.grace:
                return None
            await self._start()
            return None  # the watches' first lists wake the waiter again
        if not self.uids <= self._covered:  # more Jobs than the watches were joined for
            await self._start()
            return None
        if self._gap_since is None:
            self._gap_since = now
        if now < self._next_look:  # a fan-out sends many event batches: look at most every few seconds
            return None
        self._next_look = now + LOOK_EVERY
        return self._look(gapped, now)

    def _look(self, gapped: list[Job], now: float) -> PodProblem | None:
        assert self.pods is not None and self.events is not None
        failed = self.pods.error or self.events.error
        if failed:  # e.g. no RBAC grant to watch Pods or Events: the wait goes on without them
            if self.progress:
                self.progress(f"diagnostics off: {failed}")
            self.enabled = False
            return None
        if not (self.pods.synced and self.events.synced):
            return None
        by_uid: dict[str, list[Job]] = {}
        for pod in self.pods.jobs.values():
            by_uid.setdefault(pod["metadata"]["labels"][CONTROLLER_UID], []).append(pod)
        events = list(self.events.jobs.values())
        diagnoses = [diagnose(j, by_uid.get(j["metadata"]["uid"], []), events, now) for j in gapped]
        diagnoses = [d for d in diagnoses if d.lines]
        key = tuple(sorted({k for d in diagnoses for k in d.key}))
        if self.progress and diagnoses and (key != self._last_key or now - self._last_log >= self.interval):
            lines = [line for d in diagnoses for line in d.lines]
            more = [f"... and {len(lines) - MAX_LINES} more"] if len(lines) > MAX_LINES else []
            self.progress("waiting: " + "\n  ".join(lines[:MAX_LINES] + more))
            self._last_key, self._last_log = key, now
        for d in diagnoses:
            for line in d.lines:
                stable = _AGE.sub("", line)
                if stable not in self.problems and len(self.problems) < 20:
                    self.problems.append(stable)
        if self.pending_timeout is None:
            return None
        return pending_violation((p for d in diagnoses for p in d.stuck), now, self.pending_timeout)

    def next_wake(self, now: float | None = None) -> float | None:
        """Seconds until the waiter should look again without an event (grace, re-log, pending_timeout)."""
        if not self.enabled or self._gap_since is None:
            return None
        now = time.time() if now is None else now
        if not self.watching:
            return max(0.0, self._gap_since + self.grace - now)
        wake = self.interval
        if self.pending_timeout is not None:
            wake = min(wake, max(1.0, self.pending_timeout / 4))
        return max(wake, self._next_look - now)

    async def next_update(self, deadline: float | None) -> bool:
        """Wait for a watch update or a timer of ours; drain the queue (the newest state is what counts).

        Returns False once ``deadline`` has passed. Both the Job and the group waits loop on this.
        """
        timeouts = [
            t for t in (self.next_wake(), deadline and max(0.0, deadline - time.time())) if t is not None
        ]
        try:
            await asyncio.wait_for(self.queue.get(), min(timeouts) if timeouts else None)
        except TimeoutError:
            if deadline is not None and time.time() >= deadline:
                return False
        while not self.queue.empty():
            self.queue.get_nowait()
        if self.logs is not None and self.log_pods is not None:
            self.logs.update(self.log_pods.jobs.values())
        return True

    def stuck_message(self, stuck: PodProblem) -> str:
        """The "stuck" event's message for a Pod past ``pending_timeout``."""
        return f"{stuck.line(time.time())} (pending_timeout is {self.pending_timeout or 0:.0f}s)"

    def stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event, with this wait's summary when diagnostics are on, and where its log streams
        got to (``log_positions``: a wait that hands over passes them on)."""
        if self.enabled:
            event["diagnostics"] = self.summary()
        self.final_status = event.get("status")
        if self.logs is not None:
            event["log_positions"] = self.logs.positions  # still filled in until the wait's end
        return event

    def summary(self) -> dict[str, Any]:
        return {
            "requested_parallelism": self.requested,
            "max_observed_parallelism": self.max_active,
            "watched_pods": self.watching,
            "problems": list(self.problems),
        }

    @staticmethod
    def _what(jobs: list[Job]) -> str:
        if len(jobs) == 1:
            meta = jobs[0]["metadata"]
            return f"Job {meta.get('namespace')}/{meta.get('name')}"
        return f"{len(jobs)} Jobs"


@contextlib.asynccontextmanager
async def watched(
    conn_id: str,
    namespace: str,
    scope: Scope,
    factory: ClientFactory,
    *,
    progress: Callable[[str], None] | None,
    interval: float,
    pending_timeout: float | None,
    enabled: bool,
    keep_deleted: bool = False,
    logs: LogSettings | None = None,
    pod_scope: Scope | None = None,
    seen: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Subscription, WaitDiagnostics]]:
    """The Jobs in ``scope`` from the shared watch, and their diagnostics, on one wake-up queue.

    With ``logs`` (and ``pod_scope``, which selects the wait's Pods), the Pods' logs are followed
    into ``progress`` while the wait runs (``triggers/podlogs.py``).
    """
    queue: asyncio.Queue[tuple[str, Job | None]] = asyncio.Queue()
    async with contextlib.AsyncExitStack() as stack:
        sub = await stack.enter_async_context(
            subscription(conn_id, namespace, scope, factory, queue=queue, keep_deleted=keep_deleted)
        )
        diag = await stack.enter_async_context(
            WaitDiagnostics(
                conn_id=conn_id,
                namespace=namespace,
                factory=factory,
                queue=queue,
                progress=progress,
                interval=interval,
                pending_timeout=pending_timeout,
                enabled=enabled,
                pod_scope=pod_scope,
                seen=seen,
            )
        )
        if logs is not None and logs.enabled and pod_scope is not None and progress is not None:
            pods = await stack.enter_async_context(
                subscription(conn_id, namespace, pod_scope, factory, kind="pods", queue=queue)
            )
            diag.logs, diag.log_pods = PodLogs(pods.api, namespace, progress, logs), pods
        try:
            yield sub, diag
        except BaseException:
            if diag.logs is not None:
                await diag.logs.stop()
            raise
        if diag.logs is not None and diag.log_pods is not None:
            if diag.final_status in ("met", "failed", "stuck"):  # the outcome: show every Pod's end
                diag.logs.update(diag.log_pods.jobs.values())
                await diag.logs.finish()
            else:  # a wait that times out (or hands over to the trigger) just stops reading
                await diag.logs.stop()

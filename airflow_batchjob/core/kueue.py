"""Kueue (kubernetes-sigs/kueue): the queue labels on a Job, and reading its Workload. Pure.

A Job labelled ``kueue.x-k8s.io/queue-name: <LocalQueue>`` is created suspended; Kueue makes a
Workload for it (labelled ``kueue.x-k8s.io/job-uid``), unsuspends the Job once the Workload is
admitted, and may later evict it (preemption, PodsReady timeout): the Job is suspended again,
its Pods deleted, and the Workload requeued. The provider never unsuspends such a Job: Kueue does.

``KueueTracker`` turns the Workload's successive states into task-log lines (queued, admitted,
evicted, finished), the time spent queued and the number of evictions, for the wait and for the
``diagnostics`` XCom. Conditions are read as Kueue writes them (apis/kueue/v1beta2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.outcome import outcome_from_job

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"  # a WorkloadPriorityClass's name
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on the Workload: the Job it stands for
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
# Both are object names used as label values: a DNS-1123 label satisfies both rules.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class KueueSettings:
    """What an operator says about Kueue: the LocalQueue, the priority, how long it may queue."""

    local_queue: str | None = None
    priority_class: str | None = None
    queue_timeout: float | None = None

    @property
    def enabled(self) -> bool:
        return self.local_queue is not None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> KueueSettings:
        return cls(**dict(data or {}))


def check_name(param: str, value: Any) -> None:
    """A LocalQueue or WorkloadPriorityClass name: also a label value (63 chars, lower case)."""
    if not isinstance(value, str) or len(value) > 63 or not _NAME.match(value):
        raise InvalidJobSpecError(
            f"{param}={value!r}: give the name of a Kueue object, as a label value allows it: at most "
            "63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        )


def settings(
    *,
    queue_name: str | None,
    local_queue: str | None,
    priority_class: str | None,
    queue_timeout: float | None,
) -> KueueSettings:
    """The operator's Kueue parameters checked (parse time); ``queue_name`` is the peer's name
    of ``local_queue``."""
    if queue_name is not None and local_queue is not None and queue_name != local_queue:
        raise InvalidJobSpecError(
            f"queue_name={queue_name!r} and local_queue={local_queue!r}: they name the same thing, pass one"
        )
    queue = local_queue if local_queue is not None else queue_name
    if queue is not None:
        check_name("queue_name", queue)
    if priority_class is not None:
        check_name("priority_class", priority_class)
        if queue is None:
            raise InvalidJobSpecError(
                f"priority_class={priority_class!r} is a Kueue WorkloadPriorityClass: give queue_name too "
                "(for the Pods' PriorityClass, use priority_class_name)"
            )
    if queue_timeout is not None:
        if queue is None:
            raise InvalidJobSpecError(
                "queue_timeout limits the time a Job waits in a Kueue queue: give queue_name"
            )
        if queue_timeout <= 0:
            raise InvalidJobSpecError(f"queue_timeout={queue_timeout!r}: use a positive duration")
    return KueueSettings(queue, priority_class, queue_timeout)


def apply_queue(job: dict[str, Any], kueue: KueueSettings) -> None:
    """Label ``job`` (API form, in place) for its LocalQueue and priority, and create it suspended."""
    if not kueue.enabled:
        return
    labels = job.setdefault("metadata", {}).setdefault("labels", {})
    labels[QUEUE_LABEL] = kueue.local_queue
    if kueue.priority_class:
        labels[PRIORITY_LABEL] = kueue.priority_class
    job.setdefault("spec", {})["suspend"] = True  # Kueue unsuspends it once admitted


def managed(job: Mapping[str, Any]) -> bool:
    """True for a Job that Kueue admits: nobody else may unsuspend it."""
    return QUEUE_LABEL in ((job.get("metadata") or {}).get("labels") or {})


@dataclass(frozen=True)
class WorkloadState:
    """One look at a Workload: its phase and what Kueue says about it."""

    name: str
    phase: str  # queued, admitted, evicted, finished
    local_queue: str = ""
    cluster_queue: str = ""
    reason: str = ""
    message: str = ""
    flavors: dict[str, str] = field(default_factory=dict)
    evictions: int = 0

    def line(self) -> str:
        where = f"LocalQueue {self.local_queue}" + (
            f", ClusterQueue {self.cluster_queue}" if self.cluster_queue else ""
        )
        if self.phase == "admitted":
            flavors = ", ".join(f"{r}={f}" for r, f in sorted(self.flavors.items())) or "no flavors"
            return f"Kueue admitted Workload {self.name} ({where}; flavors {flavors})"
        if self.phase == "evicted":
            return f"Kueue evicted Workload {self.name} ({self.reason}: {self.message}); requeued in {where}"
        if self.phase == "finished":
            return f"Kueue: Workload {self.name} finished ({self.reason})"
        why = f"{self.reason}: {self.message}" if self.message else self.reason or "not yet considered"
        return f"Kueue queued Workload {self.name} in {where} ({why})"


def _conditions(wl: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in (wl.get("status") or {}).get("conditions") or []}


def read_workload(wl: Mapping[str, Any]) -> WorkloadState:
    """The phase Kueue's conditions give: Finished, else Admitted, else Evicted (until readmitted),
    else queued (with QuotaReserved's reason and message: why it is not admitted)."""
    conds = _conditions(wl)
    status = wl.get("status") or {}
    admission = status.get("admission") or {}
    flavors = {
        str(r): str(f)
        for psa in admission.get("podSetAssignments") or []
        for r, f in (psa.get("flavors") or {}).items()
    }
    evictions = sum(
        int(e.get("count") or 0) for e in (status.get("schedulingStats") or {}).get("evictions") or []
    )
    base: dict[str, Any] = {
        "name": str((wl.get("metadata") or {}).get("name", "")),
        "local_queue": str((wl.get("spec") or {}).get("queueName", "")),
        "cluster_queue": str(admission.get("clusterQueue", "")),
        "flavors": flavors,
        "evictions": evictions,
    }

    def true(kind: str) -> Mapping[str, Any] | None:
        c = conds.get(kind)
        return c if c is not None and c.get("status") == "True" else None

    if (c := true("Finished")) is not None:
        return WorkloadState(
            phase="finished", reason=c.get("reason", ""), message=c.get("message", ""), **base
        )
    if true("Admitted") is not None:
        return WorkloadState(phase="admitted", **base)
    evicted = true("Evicted")
    if evicted is not None:
        by = true("Preempted") or evicted
        return WorkloadState(
            phase="evicted", reason=by.get("reason", ""), message=by.get("message", ""), **base
        )
    pending = conds.get("QuotaReserved") or {}
    if pending.get("status") == "True":  # quota reserved, admission checks still to pass
        return WorkloadState(
            phase="queued", reason="QuotaReserved", message="waiting for admission checks", **base
        )
    return WorkloadState(
        phase="queued", reason=pending.get("reason", ""), message=pending.get("message", ""), **base
    )


@dataclass
class KueueTracker:
    """Follows one Job's Workload through a wait: log lines on each change, time queued, evictions.

    Times are ``time.time()`` seconds passed in by the caller (pure, testable).
    """

    queue_timeout: float | None = None
    last: WorkloadState | None = None
    queued_seconds: float = 0.0
    queued_since: float | None = None
    evictions: int = 0
    flavors: dict[str, str] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)

    def observe(self, wl: Mapping[str, Any] | None, now: float) -> list[str]:
        """The lines to log for this look at the Workload (none if nothing changed)."""
        if wl is None:
            if self.queued_since is None and self.last is None:
                self.queued_since = now  # created, no Workload yet: queued already
            return []
        state = read_workload(wl)
        waiting = state.phase in ("queued", "evicted")
        if waiting and self.queued_since is None:
            self.queued_since = now
        elif not waiting and self.queued_since is not None:
            self.queued_seconds += now - self.queued_since
            self.queued_since = None
        lines: list[str] = []
        prev = self.last
        if state.phase == "evicted" and (prev is None or prev.phase != "evicted"):
            self.evictions += 1
        if state.phase == "admitted":
            self.flavors = dict(state.flavors)
        if prev is None or (prev.phase, prev.reason, prev.message) != (
            state.phase,
            state.reason,
            state.message,
        ):
            lines.append(state.line())
            if not self.phases or self.phases[-1] != state.phase:
                self.phases.append(state.phase)
        self.last = state
        return lines

    def time_queued(self, now: float) -> float:
        running = now - self.queued_since if self.queued_since is not None else 0.0
        return self.queued_seconds + running

    def over_queue_timeout(self, now: float) -> str | None:
        """Why the wait must end: still not admitted ``queue_timeout`` seconds after it queued."""
        if self.queue_timeout is None or self.queued_since is None:
            return None
        waited = now - self.queued_since
        if waited < self.queue_timeout:
            return None
        why = self.last.line() if self.last is not None else "no Workload yet (is Kueue running?)"
        return (
            f"not admitted by Kueue after {waited:.0f}s (queue_timeout is {self.queue_timeout:.0f}s): {why}"
        )

    def next_wake(self, now: float) -> float | None:
        """Seconds until ``queue_timeout`` runs out, for a waiter that must look then."""
        if self.queue_timeout is None or self.queued_since is None:
            return None
        return max(0.0, self.queued_since + self.queue_timeout - now)

    def summary(self, now: float) -> dict[str, Any]:
        """For the ``diagnostics`` XCom."""
        last = self.last
        return {
            "local_queue": last.local_queue if last else None,
            "cluster_queue": (last.cluster_queue or None) if last else None,
            "queued_seconds": round(self.time_queued(now), 1),
            "evictions": max(self.evictions, last.evictions if last else 0),
            "flavors": dict(self.flavors),
            "phases": list(self.phases),
        }


def admission_counts(jobs: list[Mapping[str, Any]]) -> str:
    """For a group's progress line: how many of its unfinished Kueue Jobs are admitted (unsuspended
    by Kueue) and how many still queue; empty for a group without a queue."""
    waiting = [j for j in jobs if managed(j) and not outcome_from_job(j).done]
    if not any(managed(j) for j in jobs):
        return ""
    queued = sum(1 for j in waiting if (j.get("spec") or {}).get("suspend"))
    return f" (Kueue: {len(waiting) - queued} admitted, {queued} queued)"

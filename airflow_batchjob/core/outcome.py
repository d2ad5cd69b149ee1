"""Interpret a Job's status the way the Job controller writes it.

Since Kubernetes 1.31 the controller first sets an interim condition (``SuccessCriteriaMet`` or
``FailureTarget``), waits for the Job's Pods to terminate, then sets the terminal ``Complete`` or
``Failed`` with the same reason. The outcome is decided at the interim step, so we report it then,
with ``final=False`` until the terminal condition lands. Older clusters skip the interim step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from airflow_batchjob.core.indexes import format_indexes, parse_indexes
from airflow_batchjob.core.manifest import to_api


class JobState(str, Enum):
    """Coarse lifecycle of a Job as the operator/trigger care about it."""

    PENDING = "pending"  # exists, but the controller has not started it (no status yet)
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_SUCCESS_TYPES = ("SuccessCriteriaMet", "Complete")
_FAILURE_TYPES = ("FailureTarget", "Failed")
_TERMINAL_TYPES = ("Complete", "Failed")


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """A snapshot of one Job's progress; JSON-round-trippable so triggers can ship it as an event."""

    name: str
    namespace: str
    uid: str | None = None
    state: JobState = JobState.PENDING
    reason: str | None = None
    message: str | None = None
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    terminating: int = 0
    completed_indexes: tuple[int, ...] = field(default_factory=tuple)
    failed_indexes: tuple[int, ...] = field(default_factory=tuple)
    final: bool = False
    condition_time: str | None = None
    completions: int | None = None
    parallelism: int | None = None
    start_time: str | None = None
    completion_time: str | None = None

    @property
    def done(self) -> bool:
        """The outcome is decided (success or failure), even if Pods are still terminating."""
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (enum as its value, tuples as lists)."""
        data = asdict(self)
        data["state"] = self.state.value
        data["completed_indexes"] = list(self.completed_indexes)
        data["failed_indexes"] = list(self.failed_indexes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobOutcome:
        """Inverse of ``to_dict``; unknown keys are ignored so older/newer payloads still load."""
        known = {f for f in cls.__dataclass_fields__ if f in data}
        kwargs = {k: data[k] for k in known}
        kwargs["state"] = JobState(data.get("state", JobState.PENDING.value))
        kwargs["completed_indexes"] = tuple(data.get("completed_indexes") or ())
        kwargs["failed_indexes"] = tuple(data.get("failed_indexes") or ())
        return cls(**kwargs)

    def summary(self) -> str:
        """One human line for logs, e.g. "3/5 succeeded, 1 failed, 2 active (running)"."""
        total = f"/{self.completions}" if self.completions is not None else ""
        text = f"{self.succeeded}{total} succeeded, {self.failed} failed, {self.active} active"
        if self.terminating:
            text += f", {self.terminating} terminating"
        if self.failed_indexes:
            text += f", failed indexes {format_indexes(self.failed_indexes)}"
        text += f" ({self.state.value}"
        if self.reason:
            text += f": {self.reason}"
        if self.done and not self.final:
            text += ", pods still terminating"
        return text + ")"


def _true_conditions(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("status") == "True"]


def _decisive(conditions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The condition that decides the outcome.

    Terminal (Complete/Failed) beats interim (SuccessCriteriaMet/FailureTarget). The apiserver
    rejects success and failure conditions together, but if a foreign controller (managedBy) wrote
    both, the one with the earliest lastTransitionTime wins, and failure wins a tie.
    """
    outcome = [c for c in conditions if c.get("type") in _SUCCESS_TYPES + _FAILURE_TYPES]
    if not outcome:
        return None
    terminal = [c for c in outcome if c.get("type") in _TERMINAL_TYPES]
    candidates = terminal or outcome
    # Normalised to UTC "...Z", timestamps sort lexically; missing times sort last.
    return min(
        candidates,
        key=lambda c: (_iso(c.get("lastTransitionTime")) or "~", c.get("type") not in _FAILURE_TYPES),
    )


def _count(value: Any) -> int:
    return int(value) if value is not None else 0


def outcome_from_job(job: Mapping[str, Any] | Any) -> JobOutcome:
    """Derive a JobOutcome from an API-form Job dict (e.g. a watch event's raw object) or a V1Job."""
    if not isinstance(job, Mapping):
        job = to_api(job)
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    conditions = _true_conditions(status)
    decisive = _decisive(conditions)
    suspended = next((c for c in conditions if c.get("type") == "Suspended"), None)
    active, ready = _count(status.get("active")), _count(status.get("ready"))
    # Terminated Pods the controller has not yet moved into succeeded/failed (it lists their UIDs
    # first, and is still doing so at SuccessCriteriaMet / FailureTarget) really ended that way.
    uncounted = status.get("uncountedTerminatedPods") or {}
    succeeded = _count(status.get("succeeded")) + len(uncounted.get("succeeded") or ())
    failed = _count(status.get("failed")) + len(uncounted.get("failed") or ())

    reason = message = condition_time = None
    final = False
    if decisive is not None:
        ctype = decisive.get("type")
        state = JobState.FAILED if ctype in _FAILURE_TYPES else JobState.SUCCEEDED
        final = ctype in _TERMINAL_TYPES
        reason, message = decisive.get("reason"), decisive.get("message")
        condition_time = decisive.get("lastTransitionTime")
    elif suspended is not None:
        state = JobState.SUSPENDED
        reason, message = suspended.get("reason"), suspended.get("message")
        condition_time = suspended.get("lastTransitionTime")
    elif active or ready or succeeded or failed or status.get("startTime"):
        state = JobState.RUNNING
    else:
        state = JobState.PENDING

    return JobOutcome(
        name=meta.get("name") or "",
        namespace=meta.get("namespace") or "",
        uid=meta.get("uid"),
        state=state,
        reason=reason,
        message=message,
        active=active,
        ready=ready,
        succeeded=succeeded,
        failed=failed,
        terminating=_count(status.get("terminating")),
        completed_indexes=tuple(parse_indexes(status.get("completedIndexes"))),
        failed_indexes=tuple(parse_indexes(status.get("failedIndexes"))),
        final=final,
        condition_time=_iso(condition_time),
        completions=spec.get("completions"),
        parallelism=spec.get("parallelism"),
        start_time=_iso(status.get("startTime")),
        completion_time=_iso(status.get("completionTime")),
    )


def _iso(value: Any) -> str | None:
    """A timestamp as the API writes it: RFC 3339 in UTC ending in "Z", e.g. "2024-05-01T10:00:00Z".

    Job dicts from the API already have that form and are kept as they are. A ``V1Job`` carries
    datetimes, which arrive here as datetimes or (through ``to_api``) as "+00:00" strings.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.endswith("Z"):
            return value
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # not ours to fix: keep what the API sent
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is not None:  # naive datetimes are taken to be UTC already
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"

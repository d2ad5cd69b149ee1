"""What a waiter waits for, and whether a Job's current status meets it.

Shared by the operator (wait until the Job's outcome is decided), the sensor (wait for a named
condition, a count, or indexes) and the trigger that runs either. Pure, so it is unit-tested on
status objects; the trigger only feeds it Jobs from the watch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.outcome import JobOutcome, JobState, format_indexes, outcome_from_job

CONDITIONS = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget", "Suspended")


class Verdict(str, Enum):
    WAITING = "waiting"
    MET = "met"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class WaitFor:
    """A waiting goal. With no goal set, waits until the Job's outcome is decided (either way).

    ``condition``: a Job condition type that must be True. ``succeeded_at_least``: that many Pods
    succeeded. ``indexes``: these completion indexes all completed. ``fail_on``: condition types
    that end the wait as failed. Whatever can no longer happen (the Job reached ``Complete`` or
    ``Failed`` without meeting the goal) also ends it as failed.
    """

    condition: str | None = None
    succeeded_at_least: int | None = None
    indexes: tuple[int, ...] = ()
    fail_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for c in (self.condition, *self.fail_on):
            if c is not None and c not in CONDITIONS:
                raise InvalidJobSpecError(f"unknown Job condition {c!r}: use one of {', '.join(CONDITIONS)}")
        if self.succeeded_at_least is not None and self.succeeded_at_least < 1:
            raise InvalidJobSpecError("succeeded_at_least must be >= 1")
        if any(i < 0 for i in self.indexes):
            raise InvalidJobSpecError("indexes must be >= 0")
        if self.condition is not None and self.condition in self.fail_on:
            raise InvalidJobSpecError(f"{self.condition} is both the condition waited for and in fail_on")

    @property
    def decided(self) -> bool:
        """True for the default goal: the outcome is decided, success or failure."""
        return self.condition is None and self.succeeded_at_least is None and not self.indexes

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "succeeded_at_least": self.succeeded_at_least,
            "indexes": list(self.indexes),
            "fail_on": list(self.fail_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WaitFor:
        data = data or {}
        return cls(
            condition=data.get("condition"),
            succeeded_at_least=data.get("succeeded_at_least"),
            indexes=tuple(data.get("indexes") or ()),
            fail_on=tuple(data.get("fail_on") or ()),
        )

    def describe(self) -> str:
        if self.decided:
            return "the Job's outcome"
        parts = []
        if self.condition:
            parts.append(f"condition {self.condition}")
        if self.succeeded_at_least:
            parts.append(f">= {self.succeeded_at_least} succeeded")
        if self.indexes:
            parts.append(f"indexes {format_indexes(self.indexes)} completed")
        return " and ".join(parts)


def true_conditions(job: Mapping[str, Any]) -> set[str]:
    return {
        c.get("type", "")
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def check(job: Mapping[str, Any], wait: WaitFor) -> tuple[Verdict, JobOutcome, str]:
    """Judge the Job against the goal: (verdict, outcome, a sentence saying why)."""
    outcome = outcome_from_job(job)
    ref = f"{outcome.namespace}/{outcome.name}"
    if wait.decided:
        if outcome.done:
            return Verdict.MET, outcome, f"Job {ref} {outcome.state.value}: {outcome.reason}"
        return Verdict.WAITING, outcome, outcome.summary()
    conds = true_conditions(job)
    hit = sorted(conds & set(wait.fail_on))
    if hit:
        return (
            Verdict.FAILED,
            outcome,
            f"Job {ref} has {', '.join(hit)} ({outcome.reason}: {outcome.message})",
        )
    met = True
    if wait.condition is not None:
        met &= wait.condition in conds
    if wait.succeeded_at_least is not None:
        met &= outcome.succeeded >= wait.succeeded_at_least
    if wait.indexes:
        met &= set(wait.indexes) <= set(outcome.completed_indexes)
        lost = sorted(set(wait.indexes) & set(outcome.failed_indexes))
        if lost:
            return Verdict.FAILED, outcome, f"Job {ref}: indexes {format_indexes(lost)} failed"
    if met:
        return Verdict.MET, outcome, f"Job {ref}: {wait.describe()} met"
    if outcome.final or (outcome.done and _excluded(wait.condition, outcome.state)):
        final = "succeeded" if outcome.state is JobState.SUCCEEDED else "failed"
        return (
            Verdict.FAILED,
            outcome,
            f"Job {ref} {final} ({outcome.reason}) without {wait.describe()}: it can no longer happen",
        )
    return Verdict.WAITING, outcome, outcome.summary()


def _excluded(condition: str | None, state: JobState) -> bool:
    """A decided Job can no longer reach a condition of the other outcome, or be suspended."""
    if condition in ("Complete", "SuccessCriteriaMet"):
        return state is JobState.FAILED
    if condition in ("Failed", "FailureTarget"):
        return state is JobState.SUCCEEDED
    return condition == "Suspended"

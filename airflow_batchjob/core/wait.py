"""What a waiter waits for, and whether a Job's current status meets it.

Shared by the operator (wait until the Job's outcome is decided), the sensor (wait for a named
condition, a count, or indexes) and the trigger that runs either. Pure, so it is unit-tested on
status objects; the trigger only feeds it Jobs from the watch.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.indexes import format_indexes
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job

CONDITIONS = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget", "Suspended")

# A terminal condition implies its interim one was reached: clusters before 1.31 never write the
# interim conditions, and a Job that is Complete has met its success criteria whatever the version.
_IMPLIED_BY = {"Complete": "SuccessCriteriaMet", "Failed": "FailureTarget"}


class Verdict(str, Enum):
    WAITING = "waiting"
    MET = "met"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class WaitFor:
    """A waiting goal. With no goal set, waits until the Job's outcome is decided (either way).

    ``condition``: a Job condition type that must be True (``Complete`` also meets
    ``SuccessCriteriaMet``, and ``Failed`` meets ``FailureTarget``, as clusters before 1.31 write
    only the terminal ones). ``succeeded_at_least``: that many Pods succeeded. ``indexes``: these
    completion indexes all completed. ``fail_on``: condition types that end the wait as failed,
    with or without a goal. Whatever can no longer happen (the Job reached ``Complete`` or
    ``Failed`` without meeting the goal) also ends it as failed. ``indexes`` and ``fail_on`` may
    be given as lists; they are kept as tuples.
    """

    condition: str | None = None
    succeeded_at_least: int | None = None
    indexes: tuple[int, ...] = ()
    fail_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        indexes = _sequence(self.indexes, "indexes", "completion indexes, e.g. (0, 3)", problems)
        fail_on = _sequence(self.fail_on, "fail_on", "condition types, e.g. ('Failed',)", problems)
        for c in (self.condition, *fail_on):
            if c is not None and c not in CONDITIONS:
                problems.append(f"unknown Job condition {c!r}: use one of {', '.join(CONDITIONS)}")
        if self.succeeded_at_least is not None:
            if not _is_int(self.succeeded_at_least):
                problems.append(
                    f"succeeded_at_least must be an integer, not {_describe(self.succeeded_at_least)}"
                )
            elif self.succeeded_at_least < 1:
                problems.append("succeeded_at_least must be >= 1")
        bad = [i for i in indexes if not _is_int(i)]
        if bad:
            problems.append(f"indexes must be integers, not {', '.join(_describe(i) for i in bad)}")
        elif any(i < 0 for i in indexes):
            problems.append("indexes must be >= 0")
        if self.condition is not None and self.condition in fail_on:
            problems.append(f"{self.condition} is both the condition waited for and in fail_on")
        if problems:
            raise InvalidJobSpecError(problems)
        object.__setattr__(self, "indexes", tuple(int(i) for i in indexes))
        object.__setattr__(self, "fail_on", fail_on)
        if self.succeeded_at_least is not None:
            object.__setattr__(self, "succeeded_at_least", int(self.succeeded_at_least))

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
        return cls(  # lists (as JSON gives them) become tuples; anything else is rejected
            condition=data.get("condition"),
            succeeded_at_least=data.get("succeeded_at_least"),
            indexes=data.get("indexes") or (),
            fail_on=data.get("fail_on") or (),
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


def reached_conditions(job: Mapping[str, Any]) -> set[str]:
    """The True conditions, plus the interim condition each terminal one implies."""
    conds = true_conditions(job)
    return conds | {_IMPLIED_BY[c] for c in conds if c in _IMPLIED_BY}


def check(job: Mapping[str, Any], wait: WaitFor) -> tuple[Verdict, JobOutcome, str]:
    """Judge the Job against the goal: (verdict, outcome, a sentence saying why)."""
    outcome = outcome_from_job(job)
    ref = f"{outcome.namespace}/{outcome.name}"
    conds = true_conditions(job)
    # fail_on comes first, under any goal. A Failed-only Job (before 1.31) also hits
    # fail_on=("FailureTarget",); the message names the condition it really has.
    hit = sorted(conds & set(wait.fail_on)) or sorted(c for c in conds if _IMPLIED_BY.get(c) in wait.fail_on)
    if hit:
        return (
            Verdict.FAILED,
            outcome,
            f"Job {ref} has {', '.join(hit)} ({outcome.reason}: {outcome.message})",
        )
    if wait.decided:
        if outcome.done:
            return Verdict.MET, outcome, f"Job {ref} {outcome.state.value}: {outcome.reason}"
        return Verdict.WAITING, outcome, outcome.summary()
    met = True
    if wait.condition is not None:
        met &= wait.condition in reached_conditions(job)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _sequence(value: Any, name: str, what: str, problems: list[str]) -> tuple[Any, ...]:
    """``value`` as a tuple if it is a list or tuple; otherwise note the problem and return ()."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    hint = f": write {name}=({value!r},)" if isinstance(value, str) else ""
    problems.append(f"{name} must be a list or tuple of {what}, not {_describe(value)}{hint}")
    return ()

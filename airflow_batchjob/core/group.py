"""A group of Jobs (one per work item) judged as one: progress, goal, and throttling.

Pure functions over Job dicts, shared by the JobGroup operator, sensor and trigger. Throttling
(``max_active``) is a reconciliation computed from the current Jobs alone (which queued Jobs to
resume now), so a restarted trigger simply carries on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.naming import LABEL_PREFIX
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.wait import Verdict

ANNOTATION_QUEUED = f"{LABEL_PREFIX}/queued"  # suspended by us to honour max_active_jobs, not by the user
ANNOTATION_ITEM_INDEX = f"{LABEL_PREFIX}/item-index"


@dataclass(frozen=True, kw_only=True)
class GroupGoal:
    """When a group wait ends. By default: every expected Job's outcome is decided.

    ``expected``: how many Jobs make the group (None: whatever matches, at least one).
    ``fail_fast``: end as failed at the first failed Job. ``succeeded_at_least``: end as met once
    that many succeeded (and as failed once it can no longer happen).
    """

    expected: int | None = None
    fail_fast: bool = False
    succeeded_at_least: int | None = None

    def __post_init__(self) -> None:
        if self.expected is not None and self.expected < 0:
            raise InvalidJobSpecError("expected must be >= 0")
        if self.succeeded_at_least is not None and self.succeeded_at_least < 1:
            raise InvalidJobSpecError("succeeded_at_least must be >= 1")
        if (
            self.expected is not None
            and self.succeeded_at_least is not None
            and self.succeeded_at_least > self.expected
        ):
            raise InvalidJobSpecError(
                f"succeeded_at_least={self.succeeded_at_least} exceeds the group's {self.expected} Jobs"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "fail_fast": self.fail_fast,
            "succeeded_at_least": self.succeeded_at_least,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GroupGoal:
        data = data or {}
        return cls(
            expected=data.get("expected"),
            fail_fast=bool(data.get("fail_fast")),
            succeeded_at_least=data.get("succeeded_at_least"),
        )


@dataclass(frozen=True)
class GroupProgress:
    total: int
    succeeded: int
    failed: int
    running: int
    queued: int  # suspended: by us (max_active_jobs) or by the user

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def line(self, expected: int | None = None) -> str:
        """E.g. "37/100 done, 2 failed, 5 running, 56 queued"."""
        total = expected if expected is not None else self.total
        text = f"{self.done}/{total} done, {self.failed} failed, {self.running} running"
        if self.queued:
            text += f", {self.queued} queued"
        if expected is not None and self.total < expected:
            text += f", {expected - self.total} not created yet"
        return text


def progress_of(outcomes: Sequence[JobOutcome]) -> GroupProgress:
    states = [o.state for o in outcomes]
    return GroupProgress(
        total=len(outcomes),
        succeeded=states.count(JobState.SUCCEEDED),
        failed=states.count(JobState.FAILED),
        running=states.count(JobState.RUNNING) + states.count(JobState.PENDING),
        queued=states.count(JobState.SUSPENDED),
    )


def judge_group(outcomes: Sequence[JobOutcome], goal: GroupGoal) -> tuple[Verdict, str]:
    """MET when the goal is reached, FAILED when it is failed or can no longer be reached."""
    p = progress_of(outcomes)
    line = p.line(goal.expected)
    expected = goal.expected if goal.expected is not None else max(1, p.total)
    if goal.succeeded_at_least is not None:
        if p.succeeded >= goal.succeeded_at_least:
            return Verdict.MET, f"{p.succeeded} Jobs succeeded (wanted {goal.succeeded_at_least}): {line}"
        if p.succeeded + (expected - p.done) < goal.succeeded_at_least:
            return Verdict.FAILED, f"{goal.succeeded_at_least} successes can no longer happen: {line}"
    if goal.fail_fast and p.failed:
        return Verdict.FAILED, f"a Job failed: {line}"
    if p.total >= expected and p.done == p.total:
        return Verdict.MET, f"all {p.total} Jobs finished: {line}"
    return Verdict.WAITING, line


def with_deleted(
    present: Sequence[Mapping[str, Any]], deleted: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The group to judge, and the names of its Jobs deleted before they finished.

    A Job deleted after it finished (``ttlSecondsAfterFinished``, a user's clean-up) still counts
    with its last state: its result happened. One deleted before it finished never gets an
    outcome, so a wait on the group could never end; the caller reports it instead.
    """
    names = {j["metadata"]["name"] for j in present}
    group, lost = list(present), []
    for name, job in sorted(deleted.items()):
        if name in names:
            continue
        if outcome_from_job(job).done:
            group.append(job)
        else:
            lost.append(name)
    return group, lost


def item_index(job: Mapping[str, Any]) -> int:
    """The item's position, from the annotation the operator writes (large for foreign Jobs)."""
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ITEM_INDEX)
    return int(value) if value is not None and str(value).isdigit() else 1 << 30


def to_resume(jobs: Sequence[Mapping[str, Any]], max_active: int) -> list[str]:
    """Names of queued Jobs to resume now so that at most ``max_active`` run, in item order."""
    active = 0
    waiting: list[Mapping[str, Any]] = []
    for job in jobs:
        outcome = outcome_from_job(job)
        if outcome.done:
            continue
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        if (job.get("spec") or {}).get("suspend") and annotations.get(ANNOTATION_QUEUED) == "true":
            waiting.append(job)
        elif not (job.get("spec") or {}).get("suspend"):
            active += 1
    slots = max(0, max_active - active)
    waiting.sort(key=item_index)
    return [j["metadata"]["name"] for j in waiting[:slots]]

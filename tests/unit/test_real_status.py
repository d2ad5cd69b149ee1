"""Outcomes and waiting verdicts on Job statuses written by a real Job controller.

The fixtures in ``fixtures/jobs`` are full API objects captured by ``fixtures/capture_jobs.py``
from kube-apiserver / kube-controller-manager 1.37 (see its docstring for each scenario and the
moment it was saved). Nothing in them was edited.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.wait import Verdict, WaitFor, check

FIXTURES = Path(__file__).parent / "fixtures" / "jobs"

S, F = JobState.SUCCEEDED, JobState.FAILED
COMPLETIONS = "Reached expected number of succeeded pods"
BACKOFF = "Job has reached the specified backoff limit"
DEADLINE = "Job was active longer than specified deadline"

# fixture: state, final, reason, message (a regex), finished Pods (succeeded, failed) counting those
# the controller has not yet moved out of uncountedTerminatedPods, completed and failed indexes,
# completions, parallelism.
EXPECTED: dict[str, tuple[JobState, bool, str | None, str | None, tuple[int, int], str, str, int, int]] = {
    "running": (JobState.RUNNING, False, None, None, (0, 0), "", "", 1, 1),
    "suspended": (JobState.SUSPENDED, False, "JobSuspended", "Job suspended", (0, 0), "", "", 1, 1),
    "succeeded-criteria-met": (S, False, "CompletionsReached", COMPLETIONS, (2, 0), "", "", 2, 2),
    "complete": (S, True, "CompletionsReached", COMPLETIONS, (2, 0), "", "", 2, 2),
    "failure-target": (F, False, "BackoffLimitExceeded", BACKOFF, (0, 1), "", "", 1, 1),
    "failed": (F, True, "BackoffLimitExceeded", BACKOFF, (0, 1), "", "", 1, 1),
    "pod-failure-policy": (
        F,
        True,
        "PodFailurePolicy",
        r"Container main for pod capture-\w+/pod-failure-policy-\w+ failed with exit code 42 "
        r"matching FailJob rule at index 0",
        (0, 1),
        "",
        "",
        1,
        1,
    ),
    "indexed-complete": (S, True, "CompletionsReached", COMPLETIONS, (5, 0), "0-4", "", 5, 5),
    "failed-indexes": (F, True, "FailedIndexes", "Job has failed indexes", (2, 2), "0,2", "1,3", 4, 4),
    "max-failed-indexes": (
        F,
        True,
        "MaxFailedIndexesExceeded",
        "Job has exceeded the specified maximal number of failed indexes",
        (1, 1),
        "0",
        "1",
        4,
        1,
    ),
    "success-policy": (S, False, "SuccessPolicy", "Matched rules at index 0", (1, 0), "0", "", 3, 3),
    "success-policy-complete": (S, True, "SuccessPolicy", "Matched rules at index 0", (1, 0), "0", "", 3, 3),
    "deadline-exceeded-failure-target": (F, False, "DeadlineExceeded", DEADLINE, (0, 1), "", "", 1, 1),
    "deadline-exceeded": (F, True, "DeadlineExceeded", DEADLINE, (0, 1), "", "", 1, 1),
}


# Several moments of one Job: fixture -> Job name (others are named after their Job).
JOB_NAMES = {
    "succeeded-criteria-met": "complete",
    "failure-target": "backoff-limit",
    "failed": "backoff-limit",
    "success-policy-complete": "success-policy",
    "deadline-exceeded-failure-target": "deadline-exceeded",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def status_of(job: dict[str, Any]) -> dict[str, Any]:
    return job.get("status") or {}


def true_types(job: dict[str, Any]) -> list[str]:
    return [c["type"] for c in status_of(job).get("conditions") or [] if c["status"] == "True"]


def expand(indexes: str | None) -> tuple[int, ...]:
    """The controller's "0,2-4" form, expanded independently of the code under test."""
    out: list[int] = []
    for part in (indexes or "").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return tuple(out)


def test_every_fixture_is_covered() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_a_full_api_object(name: str) -> None:
    job = load(name)
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == JOB_NAMES.get(name, name)
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "namespace"):
        assert key in job["metadata"], key
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["sh", "-c"]
    assert "uncountedTerminatedPods" in job["status"]


# ------------------------------------------------------------------------------------------------
# outcome_from_job


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome(name: str) -> None:
    state, final, reason, message, (ok, ko), completed, failed, completions, parallelism = EXPECTED[name]
    job = load(name)
    status = status_of(job)
    outcome = outcome_from_job(job)
    assert outcome.state is state
    assert outcome.final is final
    assert outcome.done is (state in (S, F))
    assert outcome.reason == reason
    if message is None:
        assert outcome.message is None
    else:
        assert outcome.message is not None and re.fullmatch(message, outcome.message)
    # Pods listed in uncountedTerminatedPods (the controller is still flushing them into
    # succeeded/failed at the interim conditions) have really finished: the outcome counts them.
    assert outcome.succeeded == ok
    assert outcome.failed == ko
    assert status.get("completedIndexes", "") == completed
    assert status.get("failedIndexes", "") == failed
    assert outcome.completed_indexes == expand(completed)
    assert outcome.failed_indexes == expand(failed)
    assert outcome.completions == completions
    assert outcome.parallelism == parallelism


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_mirrors_the_status(name: str) -> None:
    """Counts, indexes, identity and times exactly as the controller wrote them; finished Pods
    also count those still listed in uncountedTerminatedPods."""
    job = load(name)
    status = status_of(job)
    outcome = outcome_from_job(job)
    assert outcome.name == job["metadata"]["name"]
    assert outcome.namespace == job["metadata"]["namespace"]
    assert outcome.uid == job["metadata"]["uid"]
    for field in ("active", "ready", "terminating"):
        assert getattr(outcome, field) == status.get(field, 0), field
    uncounted = status["uncountedTerminatedPods"]
    for field in ("succeeded", "failed"):
        assert getattr(outcome, field) == status.get(field, 0) + len(uncounted.get(field) or []), field
    assert outcome.completed_indexes == expand(status.get("completedIndexes"))
    assert outcome.failed_indexes == expand(status.get("failedIndexes"))
    assert outcome.start_time == status.get("startTime")
    assert outcome.completion_time == status.get("completionTime")
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    decisive = next(
        (
            conditions[t]
            for t in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget", "Suspended")
            if t in conditions
        ),
        None,
    )
    assert outcome.condition_time == (decisive or {}).get("lastTransitionTime")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_round_trips_as_an_event(name: str) -> None:
    outcome = outcome_from_job(load(name))
    data = json.loads(json.dumps(outcome.to_dict()))
    assert JobOutcome.from_dict(data) == outcome


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_from_v1job_is_the_same(name: str) -> None:
    """A V1Job (the client's model, with datetimes) gives the same outcome, times included: both
    are written as the API writes them ("...Z"), not "+00:00"."""
    job = load(name)
    model = ApiClient()._ApiClient__deserialize(job, "V1Job")
    from_model, from_dict = outcome_from_job(model).to_dict(), outcome_from_job(job).to_dict()
    assert from_model == from_dict
    for field in ("condition_time", "start_time", "completion_time"):
        assert from_model[field] is None or from_model[field].endswith("Z"), field


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 23, 12, 36, 38, tzinfo=timezone.utc), "2026-11-23T12:36:38Z"),
        (datetime(2026, 11, 23, 13, 36, 38, tzinfo=timezone(timedelta(hours=1))), "2026-11-23T12:36:38Z"),
        (datetime(2026, 11, 23, 12, 36, 38), "2026-11-23T12:36:38Z"),  # naive: taken as UTC
        (datetime(2026, 11, 23, 12, 36, 38, 120000, tzinfo=timezone.utc), "2026-11-23T12:36:38.120000Z"),
        ("2026-11-23T12:36:38+00:00", "2026-11-23T12:36:38Z"),
        ("2026-11-23T12:36:38Z", "2026-11-23T12:36:38Z"),
        ("2026-11-23T12:36:38.123456Z", "2026-11-23T12:36:38.123456Z"),  # API text is kept as is
    ],
)
def test_times_are_written_as_the_api_writes_them(value: Any, expected: str) -> None:
    job = load("complete")
    job["status"]["startTime"] = value
    job["status"]["conditions"][-1]["lastTransitionTime"] = value
    outcome = outcome_from_job(job)
    assert outcome.start_time == expected
    assert outcome.condition_time == expected


def test_interim_conditions_come_first() -> None:
    """The controller (>= 1.31) writes the interim condition, then the terminal one: as captured."""
    assert true_types(load("succeeded-criteria-met")) == ["SuccessCriteriaMet"]
    assert true_types(load("complete")) == ["SuccessCriteriaMet", "Complete"]
    assert true_types(load("failure-target")) == ["FailureTarget"]
    assert true_types(load("failed")) == ["FailureTarget", "Failed"]
    assert true_types(load("success-policy")) == ["SuccessCriteriaMet"]
    assert true_types(load("deadline-exceeded-failure-target")) == ["FailureTarget"]


def test_success_policy_terminates_the_rest() -> None:
    outcome = outcome_from_job(load("success-policy"))
    assert outcome.terminating >= 1 or outcome.active >= 1  # index 1 and 2 were still sleeping
    assert outcome_from_job(load("success-policy-complete")).terminating == 0


def test_running_summary() -> None:
    assert outcome_from_job(load("running")).summary() == "0/1 succeeded, 0 failed, 1 active (running)"


def test_interim_summary_counts_uncounted_pods() -> None:
    """At SuccessCriteriaMet both Pods are still in uncountedTerminatedPods, status.succeeded unset."""
    assert (
        outcome_from_job(load("succeeded-criteria-met")).summary()
        == "2/2 succeeded, 0 failed, 0 active (succeeded: CompletionsReached, pods still terminating)"
    )
    assert (
        outcome_from_job(load("failure-target")).summary()
        == "0/1 succeeded, 1 failed, 0 active (failed: BackoffLimitExceeded, pods still terminating)"
    )


def test_failed_indexes_summary() -> None:
    assert (
        outcome_from_job(load("failed-indexes")).summary()
        == "2/4 succeeded, 2 failed, 0 active, failed indexes 1,3 (failed: FailedIndexes)"
    )


def test_suspended_has_no_start_time() -> None:
    outcome = outcome_from_job(load("suspended"))
    assert outcome.start_time is None
    assert outcome.condition_time is not None


# ------------------------------------------------------------------------------------------------
# check

DEFAULT = WaitFor()
COMPLETE = WaitFor(condition="Complete")
COMPLETE_OR_FAIL = WaitFor(condition="Complete", fail_on=("FailureTarget", "Failed"))
M, W, X = Verdict.MET, Verdict.WAITING, Verdict.FAILED

CHECKS: list[tuple[str, WaitFor, Verdict, str]] = [
    ("running", DEFAULT, W, "0/1 succeeded, 0 failed, 1 active (running)"),
    ("running", COMPLETE, W, ""),
    ("running", WaitFor(condition="Suspended"), W, ""),
    ("running", WaitFor(succeeded_at_least=1), W, ""),
    ("suspended", DEFAULT, W, "(suspended: JobSuspended)"),
    ("suspended", WaitFor(condition="Suspended"), M, "condition Suspended met"),
    ("suspended", COMPLETE, W, ""),
    ("suspended", WaitFor(condition="Complete", fail_on=("Suspended",)), X, "has Suspended (JobSuspended"),
    ("succeeded-criteria-met", DEFAULT, M, "succeeded: CompletionsReached"),
    ("succeeded-criteria-met", WaitFor(condition="SuccessCriteriaMet"), M, ""),
    ("succeeded-criteria-met", COMPLETE, W, ""),
    ("succeeded-criteria-met", WaitFor(succeeded_at_least=2), M, ">= 2 succeeded met"),  # uncounted Pods
    ("succeeded-criteria-met", COMPLETE_OR_FAIL, W, ""),
    ("succeeded-criteria-met", WaitFor(condition="Failed"), X, "can no longer happen"),
    ("succeeded-criteria-met", WaitFor(condition="FailureTarget"), X, "can no longer happen"),
    ("succeeded-criteria-met", WaitFor(condition="Suspended"), X, "can no longer happen"),
    ("complete", DEFAULT, M, "succeeded: CompletionsReached"),
    ("complete", COMPLETE, M, "condition Complete met"),
    ("complete", COMPLETE_OR_FAIL, M, ""),
    ("complete", WaitFor(condition="SuccessCriteriaMet"), M, ""),
    ("complete", WaitFor(condition="Failed"), X, "succeeded (CompletionsReached) without condition Failed"),
    ("complete", WaitFor(condition="Suspended"), X, "can no longer happen"),
    ("complete", WaitFor(succeeded_at_least=2), M, ">= 2 succeeded met"),
    ("complete", WaitFor(succeeded_at_least=5), X, "without >= 5 succeeded: it can no longer happen"),
    ("failure-target", DEFAULT, M, "failed: BackoffLimitExceeded"),
    ("failure-target", COMPLETE, X, "failed (BackoffLimitExceeded) without condition Complete"),
    ("failure-target", COMPLETE_OR_FAIL, X, "has FailureTarget (BackoffLimitExceeded: " + BACKOFF),
    ("failure-target", WaitFor(condition="FailureTarget"), M, ""),
    ("failure-target", WaitFor(condition="Failed"), W, ""),
    ("failure-target", WaitFor(fail_on=("FailureTarget",)), X, "has FailureTarget (BackoffLimitExceeded"),
    ("failed", DEFAULT, M, "failed: BackoffLimitExceeded"),
    ("failed", WaitFor(condition="Failed"), M, ""),
    ("failed", COMPLETE_OR_FAIL, X, "has Failed, FailureTarget"),
    ("failed", WaitFor(succeeded_at_least=1), X, "can no longer happen"),
    ("pod-failure-policy", DEFAULT, M, "failed: PodFailurePolicy"),
    ("pod-failure-policy", COMPLETE_OR_FAIL, X, "failed with exit code 42 matching FailJob rule"),
    ("pod-failure-policy", WaitFor(condition="Failed"), M, ""),
    ("indexed-complete", WaitFor(indexes=(0, 1, 2, 3, 4)), M, "indexes 0-4 completed met"),
    ("indexed-complete", WaitFor(indexes=(4,), succeeded_at_least=5), M, ""),
    ("indexed-complete", WaitFor(indexes=(5,)), X, "without indexes 5 completed: it can no longer happen"),
    ("failed-indexes", DEFAULT, M, "failed: FailedIndexes"),
    ("failed-indexes", WaitFor(indexes=(0, 2)), M, "indexes 0,2 completed met"),
    ("failed-indexes", WaitFor(indexes=(1,)), X, "indexes 1 failed"),
    ("failed-indexes", WaitFor(indexes=(0, 1, 2, 3)), X, "indexes 1,3 failed"),
    ("failed-indexes", COMPLETE, X, "failed (FailedIndexes) without condition Complete"),
    ("max-failed-indexes", DEFAULT, M, "failed: MaxFailedIndexesExceeded"),
    ("max-failed-indexes", WaitFor(indexes=(0,)), M, ""),
    ("max-failed-indexes", WaitFor(indexes=(1,)), X, "indexes 1 failed"),
    ("max-failed-indexes", WaitFor(indexes=(2, 3)), X, "without indexes 2,3 completed"),
    ("success-policy", DEFAULT, M, "succeeded: SuccessPolicy"),
    ("success-policy", WaitFor(condition="SuccessCriteriaMet"), M, ""),
    ("success-policy", COMPLETE, W, ""),
    ("success-policy", WaitFor(indexes=(0,)), M, ""),
    ("success-policy", WaitFor(indexes=(1,)), W, "pods still terminating"),
    ("success-policy-complete", COMPLETE, M, ""),
    ("success-policy-complete", WaitFor(indexes=(1,)), X, "succeeded (SuccessPolicy) without indexes 1"),
    ("deadline-exceeded-failure-target", DEFAULT, M, "failed: DeadlineExceeded"),
    ("deadline-exceeded-failure-target", COMPLETE, X, "failed (DeadlineExceeded) without condition Complete"),
    ("deadline-exceeded-failure-target", WaitFor(condition="Failed"), W, ""),
    ("deadline-exceeded", WaitFor(condition="Failed"), M, ""),
    ("deadline-exceeded", COMPLETE_OR_FAIL, X, "has Failed, FailureTarget (DeadlineExceeded: " + DEADLINE),
]


@pytest.mark.parametrize(
    ("name", "wait", "verdict", "why"),
    CHECKS,
    ids=[f"{n}-{w.describe().replace(' ', '_')}-{v.value}" for n, w, v, _ in CHECKS],
)
def test_check(name: str, wait: WaitFor, verdict: Verdict, why: str) -> None:
    job = load(name)
    got, outcome, reason = check(job, wait)
    assert got is verdict, reason
    assert why in reason
    assert outcome == outcome_from_job(job)
    if got is Verdict.WAITING:
        assert reason == outcome.summary()
    else:
        assert reason.startswith(f"Job {outcome.namespace}/{outcome.name}")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_goal_met_exactly_when_decided(name: str) -> None:
    verdict, outcome, _ = check(load(name), WaitFor())
    assert (verdict is Verdict.MET) is outcome.done
    assert verdict is not Verdict.FAILED  # the default goal reports a failed Job as met, state failed

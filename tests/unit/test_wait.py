"""Waiting goals judged against Job statuses shaped as the Job controller writes them.

Statuses here are hand-built; ``test_real_status.py`` runs the same judgements on statuses captured
from a real Job controller.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.outcome import JobState
from airflow_batchjob.core.wait import (
    CONDITIONS,
    Verdict,
    WaitFor,
    _excluded,
    check,
    reached_conditions,
    true_conditions,
)

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:05:00Z"
T2 = "2024-05-01T10:05:02Z"

REASONS = {
    "SuccessCriteriaMet": ("CompletionsReached", "Reached expected number of succeeded pods"),
    "Complete": ("CompletionsReached", "Reached expected number of succeeded pods"),
    "FailureTarget": ("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    "Failed": ("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    "Suspended": ("JobSuspended", "Job suspended"),
}


def cond(ctype: str, status: str = "True", at: str = T1) -> dict[str, Any]:
    reason, message = REASONS[ctype]
    return {
        "type": ctype,
        "status": status,
        "lastProbeTime": at,
        "lastTransitionTime": at,
        "reason": reason,
        "message": message,
    }


def job(
    *conditions: str | dict[str, Any],
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    terminating: int = 0,
    completed_indexes: str | None = None,
    failed_indexes: str | None = None,
    completions: int = 3,
    started: bool = True,
    status: bool = True,
) -> dict[str, Any]:
    """A Job as the API returns it; conditions given by type are True, with the controller's reasons."""
    st: dict[str, Any] = {"terminating": terminating, "uncountedTerminatedPods": {}, "ready": 0}
    if started:
        st["startTime"] = T0
    if conditions:
        st["conditions"] = [cond(c) if isinstance(c, str) else c for c in conditions]
    for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
        if value:
            st[key] = value
    if completed_indexes is not None:
        st["completedIndexes"] = completed_indexes
    if failed_indexes is not None:
        st["failedIndexes"] = failed_indexes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl-1", "namespace": "data", "uid": "u-1"},
        "spec": {"completions": completions, "parallelism": 3},
        **({"status": st} if status else {}),
    }


PENDING = job(started=False, status=False)
RUNNING = job(active=3)
SUCCESS_CRITERIA_MET = job("SuccessCriteriaMet", succeeded=3)
COMPLETE = job("SuccessCriteriaMet", "Complete", succeeded=3)
FAILURE_TARGET = job("FailureTarget", failed=1, terminating=2)
FAILED = job("FailureTarget", "Failed", failed=1)
SUSPENDED = job("Suspended", started=False)
DECIDED = {
    "SuccessCriteriaMet": SUCCESS_CRITERIA_MET,
    "Complete": COMPLETE,
    "FailureTarget": FAILURE_TARGET,
    "Failed": FAILED,
}


# ------------------------------------------------------------------------------------------------
# the default goal: the outcome is decided


def test_default_goal_is_decided() -> None:
    assert WaitFor().decided
    assert WaitFor.from_dict(None).decided
    assert WaitFor().describe() == "the Job's outcome"


@pytest.mark.parametrize(
    "status", [PENDING, RUNNING, SUSPENDED, job(active=1, succeeded=2), job(failed=2, active=1)]
)
def test_default_goal_waits_until_decided(status: dict[str, Any]) -> None:
    verdict, outcome, why = check(status, WaitFor())
    assert verdict is Verdict.WAITING
    assert not outcome.done
    assert why == outcome.summary()


@pytest.mark.parametrize(
    ("status", "state", "final"),
    [
        (SUCCESS_CRITERIA_MET, JobState.SUCCEEDED, False),
        (COMPLETE, JobState.SUCCEEDED, True),
        (job("Complete", succeeded=3), JobState.SUCCEEDED, True),  # clusters before 1.31: no interim
        (FAILURE_TARGET, JobState.FAILED, False),
        (FAILED, JobState.FAILED, True),
        (job("Failed", failed=1), JobState.FAILED, True),
    ],
    ids=["SuccessCriteriaMet", "Complete", "Complete-only", "FailureTarget", "Failed", "Failed-only"],
)
def test_default_goal_met_once_decided(status: dict[str, Any], state: JobState, final: bool) -> None:
    verdict, outcome, why = check(status, WaitFor())
    assert verdict is Verdict.MET  # met either way: the caller reads the outcome's state
    assert outcome.state is state
    assert outcome.final is final
    assert why == f"Job data/etl-1 {state.value}: {outcome.reason}"


def test_default_goal_ignores_false_conditions() -> None:
    status = job(cond("Complete", status="False"), cond("Failed", status="Unknown"), active=1)
    assert check(status, WaitFor())[0] is Verdict.WAITING


def test_default_goal_met_on_failure_while_suspended() -> None:
    status = job("Suspended", "FailureTarget", "Failed")
    verdict, outcome, _ = check(status, WaitFor())
    assert verdict is Verdict.MET
    assert outcome.state is JobState.FAILED


# ------------------------------------------------------------------------------------------------
# condition goals


@pytest.mark.parametrize(
    ("condition", "meets", "waits"),
    [
        ("Complete", [COMPLETE, job("Complete", succeeded=3)], [PENDING, RUNNING, SUCCESS_CRITERIA_MET]),
        ("Failed", [FAILED, job("Failed")], [PENDING, RUNNING, FAILURE_TARGET]),
        # Complete-only / Failed-only: clusters before 1.31 write no interim condition
        (
            "SuccessCriteriaMet",
            [SUCCESS_CRITERIA_MET, COMPLETE, job("Complete", succeeded=3)],
            [PENDING, RUNNING],
        ),
        ("FailureTarget", [FAILURE_TARGET, FAILED, job("Failed", failed=1)], [PENDING, RUNNING]),
        ("Suspended", [SUSPENDED, job("Suspended", active=0, succeeded=1)], [PENDING, RUNNING]),
    ],
)
def test_condition_goal(condition: str, meets: list[dict[str, Any]], waits: list[dict[str, Any]]) -> None:
    wait = WaitFor(condition=condition)
    assert not wait.decided
    for status in meets:
        verdict, _, why = check(status, wait)
        assert verdict is Verdict.MET, status
        assert why == f"Job data/etl-1: condition {condition} met"
    for status in waits:
        verdict, outcome, why = check(status, wait)
        assert verdict is Verdict.WAITING, status
        assert why == outcome.summary()


@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_goal_needs_status_true(condition: str) -> None:
    for status in ("False", "Unknown"):
        verdict, _, _ = check(job(cond(condition, status=status), active=1), WaitFor(condition=condition))
        assert verdict is Verdict.WAITING


def test_suspended_goal_met_again_after_resume_and_suspend() -> None:
    resumed = job(cond("Suspended", status="False"), active=2)
    assert check(resumed, WaitFor(condition="Suspended"))[0] is Verdict.WAITING
    assert check(job("Suspended", succeeded=1), WaitFor(condition="Suspended"))[0] is Verdict.MET


# ------------------------------------------------------------------------------------------------
# goals that can no longer happen


@pytest.mark.parametrize(
    ("condition", "status", "outcome_word"),
    [
        ("Complete", FAILURE_TARGET, "failed"),
        ("Complete", FAILED, "failed"),
        ("Complete", job("Failed"), "failed"),
        ("SuccessCriteriaMet", FAILURE_TARGET, "failed"),
        ("SuccessCriteriaMet", FAILED, "failed"),
        ("Failed", SUCCESS_CRITERIA_MET, "succeeded"),
        ("Failed", COMPLETE, "succeeded"),
        ("FailureTarget", SUCCESS_CRITERIA_MET, "succeeded"),
        ("FailureTarget", COMPLETE, "succeeded"),
        ("Suspended", SUCCESS_CRITERIA_MET, "succeeded"),
        ("Suspended", COMPLETE, "succeeded"),
        ("Suspended", FAILURE_TARGET, "failed"),
        ("Suspended", FAILED, "failed"),
    ],
)
def test_condition_that_can_no_longer_happen_fails(
    condition: str, status: dict[str, Any], outcome_word: str
) -> None:
    verdict, outcome, why = check(status, WaitFor(condition=condition))
    assert verdict is Verdict.FAILED
    assert outcome.done
    assert why == (
        f"Job data/etl-1 {outcome_word} ({outcome.reason}) without condition {condition}: "
        "it can no longer happen"
    )


@pytest.mark.parametrize(
    ("condition", "status"),
    [
        ("Complete", SUCCESS_CRITERIA_MET),  # Complete follows once Pods are gone
        ("Failed", FAILURE_TARGET),  # Failed follows once Pods are gone
        ("Complete", SUSPENDED),  # a suspended Job may be resumed
        ("Failed", SUSPENDED),
    ],
)
def test_condition_that_can_still_happen_waits(condition: str, status: dict[str, Any]) -> None:
    assert check(status, WaitFor(condition=condition))[0] is Verdict.WAITING


@pytest.mark.parametrize(
    ("condition", "state", "excluded"),
    [
        ("Complete", JobState.FAILED, True),
        ("Complete", JobState.SUCCEEDED, False),
        ("SuccessCriteriaMet", JobState.FAILED, True),
        ("SuccessCriteriaMet", JobState.SUCCEEDED, False),
        ("Failed", JobState.SUCCEEDED, True),
        ("Failed", JobState.FAILED, False),
        ("FailureTarget", JobState.SUCCEEDED, True),
        ("FailureTarget", JobState.FAILED, False),
        ("Suspended", JobState.SUCCEEDED, True),
        ("Suspended", JobState.FAILED, True),
        (None, JobState.SUCCEEDED, False),
        (None, JobState.FAILED, False),
    ],
)
def test_excluded(condition: str | None, state: JobState, excluded: bool) -> None:
    assert _excluded(condition, state) is excluded


def test_succeeded_at_least_more_than_a_complete_job_has_fails() -> None:
    status = job("SuccessCriteriaMet", "Complete", succeeded=3)
    verdict, outcome, why = check(status, WaitFor(succeeded_at_least=5))
    assert verdict is Verdict.FAILED
    assert outcome.succeeded == 3
    assert (
        why == "Job data/etl-1 succeeded (CompletionsReached) without >= 5 succeeded: it can no longer happen"
    )


def test_succeeded_at_least_more_than_a_failed_job_has_fails() -> None:
    status = job("FailureTarget", "Failed", succeeded=2, failed=1)
    verdict, _, why = check(status, WaitFor(succeeded_at_least=3))
    assert verdict is Verdict.FAILED
    assert why.startswith("Job data/etl-1 failed (BackoffLimitExceeded) without >= 3 succeeded")


def test_indexes_never_completed_by_a_finished_job_fail() -> None:
    status = job("SuccessCriteriaMet", "Complete", succeeded=3, completed_indexes="0-2")
    verdict, _, why = check(status, WaitFor(indexes=(2, 4)))
    assert verdict is Verdict.FAILED
    assert "without indexes 2,4 completed: it can no longer happen" in why


def test_interim_conditions_do_not_end_count_goals() -> None:
    """Before Complete/Failed, Pods still terminating may yet be counted: keep waiting."""
    assert check(job("SuccessCriteriaMet", succeeded=3), WaitFor(succeeded_at_least=5))[0] is Verdict.WAITING
    assert check(job("FailureTarget", succeeded=1), WaitFor(succeeded_at_least=2))[0] is Verdict.WAITING


# ------------------------------------------------------------------------------------------------
# fail_on


def test_fail_on_ends_the_wait() -> None:
    wait = WaitFor(condition="Complete", fail_on=("FailureTarget", "Failed"))
    assert check(RUNNING, wait)[0] is Verdict.WAITING
    assert check(SUCCESS_CRITERIA_MET, wait)[0] is Verdict.WAITING
    assert check(COMPLETE, wait)[0] is Verdict.MET
    verdict, _, why = check(FAILURE_TARGET, wait)
    assert verdict is Verdict.FAILED
    assert why == f"Job data/etl-1 has FailureTarget (BackoffLimitExceeded: {REASONS['Failed'][1]})"
    verdict, _, why = check(FAILED, wait)
    assert verdict is Verdict.FAILED
    assert why.startswith("Job data/etl-1 has Failed, FailureTarget (BackoffLimitExceeded: ")


def test_fail_on_suspended() -> None:
    wait = WaitFor(condition="Complete", fail_on=("Suspended",))
    verdict, outcome, why = check(SUSPENDED, wait)
    assert verdict is Verdict.FAILED
    assert outcome.state is JobState.SUSPENDED
    assert why == "Job data/etl-1 has Suspended (JobSuspended: Job suspended)"
    assert check(job(cond("Suspended", status="False"), active=1), wait)[0] is Verdict.WAITING


def test_fail_on_is_checked_before_the_goal() -> None:
    """A Job suspended after one Pod succeeded: the goal is met, but fail_on wins."""
    status = job("Suspended", succeeded=1)
    assert check(status, WaitFor(succeeded_at_least=1))[0] is Verdict.MET
    assert check(status, WaitFor(succeeded_at_least=1, fail_on=("Suspended",)))[0] is Verdict.FAILED


def test_fail_on_only_counts_true_conditions() -> None:
    status = job(cond("FailureTarget", status="False"), active=1)
    assert check(status, WaitFor(condition="Complete", fail_on=("FailureTarget",)))[0] is Verdict.WAITING


def test_fail_on_other_than_the_outcome_is_ignored() -> None:
    wait = WaitFor(condition="Failed", fail_on=("Suspended",))
    assert check(FAILURE_TARGET, wait)[0] is Verdict.WAITING
    assert check(FAILED, wait)[0] is Verdict.MET


@pytest.mark.parametrize(
    "status", [FAILURE_TARGET, FAILED, SUSPENDED], ids=["FailureTarget", "Failed", "Suspended"]
)
def test_fail_on_is_honoured_under_default_goal(status: dict[str, Any]) -> None:
    """WaitFor(fail_on=...) with no condition/count/indexes: fail_on is checked before the default
    goal, so a FailureTarget/Failed Job gives FAILED (not MET) and a suspended Job does not wait
    forever. (It used to be ignored there.)"""
    types = [c["type"] for c in status["status"]["conditions"]]
    wait = WaitFor(fail_on=(types[0],))
    assert wait.decided
    verdict, _, why = check(status, wait)
    assert verdict is Verdict.FAILED
    assert why.startswith(f"Job data/etl-1 has {types[0]}")


def test_default_goal_with_fail_on_still_met_by_the_other_outcome() -> None:
    wait = WaitFor(fail_on=("FailureTarget", "Failed", "Suspended"))
    assert check(RUNNING, wait)[0] is Verdict.WAITING
    assert check(SUCCESS_CRITERIA_MET, wait)[0] is Verdict.MET
    assert check(COMPLETE, wait)[0] is Verdict.MET
    assert check(job(cond("Suspended", status="False"), active=1), wait)[0] is Verdict.WAITING


def test_default_goal_with_fail_on_success() -> None:
    """fail_on may name a success condition too: the wait then fails when the Job succeeds."""
    wait = WaitFor(fail_on=("SuccessCriteriaMet",))
    verdict, _, why = check(SUCCESS_CRITERIA_MET, wait)
    assert verdict is Verdict.FAILED
    assert why == f"Job data/etl-1 has SuccessCriteriaMet (CompletionsReached: {REASONS['Complete'][1]})"
    assert check(FAILED, wait)[0] is Verdict.MET  # decided, as failed: the caller reads the state


# ------------------------------------------------------------------------------------------------
# clusters before 1.31: only the terminal condition is written


@pytest.mark.parametrize(
    ("condition", "status"),
    [
        ("SuccessCriteriaMet", job("Complete", succeeded=3)),
        ("FailureTarget", job("Failed", failed=1)),
    ],
    ids=["Complete-meets-SuccessCriteriaMet", "Failed-meets-FailureTarget"],
)
def test_terminal_condition_implies_the_interim_one(condition: str, status: dict[str, Any]) -> None:
    """Without interim conditions a goal of SuccessCriteriaMet / FailureTarget would otherwise
    end as "can no longer happen" when the Job reaches Complete / Failed."""
    verdict, _, why = check(status, WaitFor(condition=condition))
    assert verdict is Verdict.MET
    assert why == f"Job data/etl-1: condition {condition} met"
    assert reached_conditions(status) == {condition, *true_conditions(status)}


def test_terminal_condition_does_not_imply_the_other_outcome() -> None:
    assert check(job("Complete", succeeded=3), WaitFor(condition="FailureTarget"))[0] is Verdict.FAILED
    assert check(job("Failed", failed=1), WaitFor(condition="SuccessCriteriaMet"))[0] is Verdict.FAILED
    assert reached_conditions(job("Suspended")) == {"Suspended"}


def test_fail_on_interim_condition_hit_by_the_terminal_one() -> None:
    """fail_on=("FailureTarget",) fires on a Failed-only Job, naming the condition it has."""
    verdict, _, why = check(
        job("Failed", failed=1), WaitFor(condition="Complete", fail_on=("FailureTarget",))
    )
    assert verdict is Verdict.FAILED
    assert why.startswith("Job data/etl-1 has Failed (BackoffLimitExceeded: ")
    verdict, _, why = check(job("Complete", succeeded=3), WaitFor(fail_on=("SuccessCriteriaMet",)))
    assert verdict is Verdict.FAILED
    assert why.startswith("Job data/etl-1 has Complete (CompletionsReached: ")


# ------------------------------------------------------------------------------------------------
# succeeded_at_least


@pytest.mark.parametrize(
    ("succeeded", "at_least", "verdict"),
    [
        (0, 1, Verdict.WAITING),
        (2, 3, Verdict.WAITING),
        (3, 3, Verdict.MET),
        (4, 3, Verdict.MET),
        (1, 1, Verdict.MET),
    ],
)
def test_succeeded_at_least(succeeded: int, at_least: int, verdict: Verdict) -> None:
    status = job(active=2, succeeded=succeeded, completions=10)
    got, outcome, why = check(status, WaitFor(succeeded_at_least=at_least))
    assert got is verdict
    assert outcome.succeeded == succeeded
    if verdict is Verdict.MET:
        assert why == f"Job data/etl-1: >= {at_least} succeeded met"


def test_succeeded_at_least_met_while_failures_are_tolerated() -> None:
    status = job(active=1, succeeded=2, failed=4, completions=10)
    assert check(status, WaitFor(succeeded_at_least=2))[0] is Verdict.MET


def test_succeeded_at_least_and_condition_both_needed() -> None:
    wait = WaitFor(condition="SuccessCriteriaMet", succeeded_at_least=3)
    assert check(job(active=1, succeeded=3), wait)[0] is Verdict.WAITING
    assert check(job("SuccessCriteriaMet", succeeded=2), wait)[0] is Verdict.WAITING
    assert check(job("SuccessCriteriaMet", succeeded=3), wait)[0] is Verdict.MET
    verdict, _, why = check(job("SuccessCriteriaMet", "Complete", succeeded=2), wait)
    assert verdict is Verdict.FAILED
    assert "without condition SuccessCriteriaMet and >= 3 succeeded" in why


# ------------------------------------------------------------------------------------------------
# indexes


@pytest.mark.parametrize(
    ("indexes", "completed", "failed", "verdict"),
    [
        ((1, 4), "0-2,4", None, Verdict.MET),
        ((1, 3), "0-2,4", None, Verdict.WAITING),
        ((0,), "0", None, Verdict.MET),
        ((0,), None, None, Verdict.WAITING),
        ((1, 3), "1", "3", Verdict.FAILED),
        ((1, 3), "0,2", "1,3", Verdict.FAILED),
        ((1, 3), "1,3", "5", Verdict.MET),  # other indexes failing does not matter
        ((1, 3), "1", "5", Verdict.WAITING),
        ((2, 2, 2), "2", None, Verdict.MET),
    ],
)
def test_indexes(
    indexes: tuple[int, ...], completed: str | None, failed: str | None, verdict: Verdict
) -> None:
    status = job(active=1, completed_indexes=completed, failed_indexes=failed, completions=6)
    got, _, why = check(status, WaitFor(indexes=indexes))
    assert got is verdict
    if verdict is Verdict.MET:
        assert why.endswith("completed met")


def test_failed_index_reason_names_the_lost_indexes() -> None:
    status = job(active=2, completed_indexes="0", failed_indexes="1,3-5", completions=8)
    verdict, outcome, why = check(status, WaitFor(indexes=(0, 3, 4, 7)))
    assert verdict is Verdict.FAILED
    assert outcome.failed_indexes == (1, 3, 4, 5)
    assert why == "Job data/etl-1: indexes 3,4 failed"


def test_indexes_and_condition() -> None:
    wait = WaitFor(condition="Complete", indexes=(0, 1))
    assert check(job(active=1, completed_indexes="0,1"), wait)[0] is Verdict.WAITING
    verdict, _, why = check(job("SuccessCriteriaMet", "Complete", succeeded=3, completed_indexes="0-2"), wait)
    assert verdict is Verdict.MET
    assert why == "Job data/etl-1: condition Complete and indexes 0,1 completed met"


# ------------------------------------------------------------------------------------------------
# invalid goals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"condition": "Completed"}, "unknown Job condition 'Completed'"),
        ({"condition": "complete"}, "unknown Job condition 'complete'"),
        ({"condition": ""}, "unknown Job condition ''"),
        ({"condition": "Ready"}, "unknown Job condition 'Ready'"),
        ({"fail_on": ("Failed", "Error")}, "unknown Job condition 'Error'"),
        ({"succeeded_at_least": 0}, "succeeded_at_least must be >= 1"),
        ({"succeeded_at_least": -2}, "succeeded_at_least must be >= 1"),
        ({"indexes": (0, -1)}, "indexes must be >= 0"),
        (
            {"condition": "Failed", "fail_on": ("Failed",)},
            "Failed is both the condition waited for and in fail_on",
        ),
        (
            {"condition": "Suspended", "fail_on": ("Failed", "Suspended")},
            "Suspended is both the condition waited for and in fail_on",
        ),
    ],
)
def test_invalid_goal_raises(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message) as err:
        WaitFor(**kwargs)
    assert isinstance(err.value, ValueError)
    assert err.value.problems


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"succeeded_at_least": "3"}, "succeeded_at_least must be an integer, not '3' (str)"),
        ({"succeeded_at_least": 2.0}, "succeeded_at_least must be an integer, not 2.0 (float)"),
        ({"succeeded_at_least": True}, "succeeded_at_least must be an integer, not True (bool)"),
        ({"indexes": ("1",)}, "indexes must be integers, not '1' (str)"),
        ({"indexes": (0, 1.5, None)}, "indexes must be integers, not 1.5 (float), None (NoneType)"),
        ({"indexes": 3}, "indexes must be a list or tuple of completion indexes, e.g. (0, 3), not 3 (int)"),
        ({"indexes": "0,1"}, "indexes must be a list or tuple of completion indexes"),
        (
            {"fail_on": "Failed"},
            "fail_on must be a list or tuple of condition types, e.g. ('Failed',), not 'Failed' (str): "
            "write fail_on=('Failed',)",
        ),
        ({"fail_on": {"Failed"}}, "fail_on must be a list or tuple of condition types"),
        ({"fail_on": (3,)}, "unknown Job condition 3"),
        ({"condition": 1}, "unknown Job condition 1"),
    ],
)
def test_wrong_types_raise_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        WaitFor(**kwargs)
    assert message in str(err.value)


def test_every_problem_is_reported() -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        WaitFor(condition="Done", succeeded_at_least="3", indexes=(-1,), fail_on="Failed")
    assert len(err.value.problems) == 4


def test_from_dict_rejects_wrong_types() -> None:
    with pytest.raises(InvalidJobSpecError, match="not 'Failed' \\(str\\)"):
        WaitFor.from_dict({"fail_on": "Failed"})
    with pytest.raises(InvalidJobSpecError, match="succeeded_at_least must be an integer"):
        WaitFor.from_dict({"succeeded_at_least": "3"})
    with pytest.raises(InvalidJobSpecError, match="indexes must be integers"):
        WaitFor.from_dict({"indexes": ["1"]})


def test_lists_are_kept_as_tuples() -> None:
    wait = WaitFor(indexes=[2, 0], fail_on=["Failed"])  # type: ignore[arg-type]
    assert wait == WaitFor(indexes=(2, 0), fail_on=("Failed",))
    assert wait.indexes == (2, 0)
    assert wait.fail_on == ("Failed",)
    hash(wait)  # still hashable


def test_unknown_condition_message_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        WaitFor(condition="Done")
    for c in CONDITIONS:
        assert c in str(err.value)


def test_invalid_goal_from_dict_raises() -> None:
    with pytest.raises(InvalidJobSpecError):
        WaitFor.from_dict({"condition": "Succeeded"})
    with pytest.raises(InvalidJobSpecError):
        WaitFor.from_dict({"indexes": [-3]})
    with pytest.raises(InvalidJobSpecError):
        WaitFor.from_dict({"succeeded_at_least": 0})


# ------------------------------------------------------------------------------------------------
# to_dict / from_dict


@pytest.mark.parametrize(
    "wait",
    [
        WaitFor(),
        WaitFor(condition="Complete"),
        WaitFor(condition="Complete", fail_on=("FailureTarget", "Failed")),
        WaitFor(condition="Suspended", fail_on=("Failed",)),
        WaitFor(succeeded_at_least=4),
        WaitFor(indexes=(0, 3, 7)),
        WaitFor(condition="SuccessCriteriaMet", succeeded_at_least=2, indexes=(1,), fail_on=("Suspended",)),
    ],
)
def test_round_trip(wait: WaitFor) -> None:
    data = wait.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    assert WaitFor.from_dict(data) == wait
    assert WaitFor.from_dict(json.loads(json.dumps(data))) == wait
    assert WaitFor.from_dict(data).decided is wait.decided


def test_to_dict_shape() -> None:
    assert WaitFor(condition="Complete", indexes=(2, 1), fail_on=("Failed",)).to_dict() == {
        "condition": "Complete",
        "succeeded_at_least": None,
        "indexes": [2, 1],
        "fail_on": ["Failed"],
    }


@pytest.mark.parametrize("data", [None, {}, {"condition": None, "indexes": None, "fail_on": None}])
def test_from_dict_defaults(data: dict[str, Any] | None) -> None:
    assert WaitFor.from_dict(data) == WaitFor()


def test_from_dict_ignores_unknown_keys() -> None:
    assert WaitFor.from_dict({"condition": "Failed", "future_field": 1}) == WaitFor(condition="Failed")


conditions_st = st.sampled_from(CONDITIONS)


@st.composite
def wait_fors(draw: st.DrawFn) -> WaitFor:
    condition = draw(st.none() | conditions_st)
    succeeded_at_least = draw(st.none() | st.integers(1, 10_000))
    indexes = tuple(draw(st.lists(st.integers(0, 100_000), max_size=8)))
    fail_on: list[str] = []
    if condition is not None or succeeded_at_least is not None or indexes:
        fail_on = draw(st.lists(conditions_st.filter(lambda c: c != condition), unique=True, max_size=3))
    return WaitFor(
        condition=condition, succeeded_at_least=succeeded_at_least, indexes=indexes, fail_on=tuple(fail_on)
    )


@given(wait_fors())
def test_round_trip_property(wait: WaitFor) -> None:
    assert WaitFor.from_dict(json.loads(json.dumps(wait.to_dict()))) == wait


def test_true_conditions() -> None:
    status = job("Suspended", cond("Complete", status="False"), cond("Failed", status="Unknown"))
    assert true_conditions(status) == {"Suspended"}
    assert true_conditions(PENDING) == set()
    assert true_conditions({"status": {"conditions": None}}) == set()


def test_describe() -> None:
    assert WaitFor(condition="Complete").describe() == "condition Complete"
    assert WaitFor(succeeded_at_least=2).describe() == ">= 2 succeeded"
    assert WaitFor(indexes=(5, 1, 2, 3)).describe() == "indexes 1-3,5 completed"
    assert (
        WaitFor(condition="Complete", succeeded_at_least=2, indexes=(0, 1)).describe()
        == "condition Complete and >= 2 succeeded and indexes 0,1 completed"
    )


def test_verdicts_are_json_strings() -> None:
    assert json.dumps([v.value for v in Verdict]) == '["waiting", "met", "failed"]'
    assert Verdict("met") is Verdict.MET

"""Group goals, progress lines and max_active throttling over Job dicts."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.group import (
    ANNOTATION_ITEM_INDEX,
    ANNOTATION_QUEUED,
    GroupGoal,
    judge_group,
    to_resume,
    with_deleted,
)
from airflow_batchjob.core.outcome import outcome_from_job
from airflow_batchjob.core.wait import Verdict


def job(
    name: str, state: str = "running", index: int = 0, suspend: bool = False, queued: bool = False
) -> dict[str, Any]:
    conds = {
        "succeeded": [{"type": "SuccessCriteriaMet", "status": "True"}],
        "failed": [{"type": "FailureTarget", "status": "True"}],
        "running": [],
        "suspended": [{"type": "Suspended", "status": "True"}],
    }[state]
    annotations = {ANNOTATION_ITEM_INDEX: str(index)}
    if queued:
        annotations[ANNOTATION_QUEUED] = "true"
    return {
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
        "spec": {"suspend": suspend},
        "status": {"conditions": conds, "active": 1 if state == "running" else 0},
    }


def outcomes(*jobs: dict[str, Any]) -> list[Any]:
    return [outcome_from_job(j) for j in jobs]


def test_all_finished_is_met_whatever_the_outcomes() -> None:
    verdict, why = judge_group(outcomes(job("a", "succeeded"), job("b", "failed")), GroupGoal(expected=2))
    assert verdict is Verdict.MET and "2/2 done, 1 failed" in why


def test_waits_for_jobs_not_created_yet() -> None:
    verdict, why = judge_group(outcomes(job("a", "succeeded")), GroupGoal(expected=3))
    assert verdict is Verdict.WAITING and "2 not created yet" in why


def test_fail_fast_and_succeeded_at_least() -> None:
    group = outcomes(job("a", "failed"), job("b"), job("c", "succeeded"))
    assert judge_group(group, GroupGoal(expected=3, fail_fast=True))[0] is Verdict.FAILED
    assert judge_group(group, GroupGoal(expected=3, succeeded_at_least=1))[0] is Verdict.MET
    assert judge_group(group, GroupGoal(expected=3, succeeded_at_least=2))[0] is Verdict.WAITING
    verdict, why = judge_group(group, GroupGoal(expected=3, succeeded_at_least=3))
    assert verdict is Verdict.FAILED and "can no longer happen" in why


def test_goal_validation_and_round_trip() -> None:
    with pytest.raises(InvalidJobSpecError):
        GroupGoal(expected=2, succeeded_at_least=3)
    goal = GroupGoal(expected=5, fail_fast=True, succeeded_at_least=2)
    assert GroupGoal.from_dict(goal.to_dict()) == goal


def test_to_resume_fills_free_slots_in_item_order() -> None:
    jobs = [
        job("run-0", index=0),
        job("done-1", "succeeded", index=1),
        job("q-4", index=4, suspend=True, queued=True),
        job("q-2", index=2, suspend=True, queued=True),
        job("q-3", index=3, suspend=True, queued=True),
        job("user-5", index=5, suspend=True),
    ]
    assert to_resume(jobs, max_active=3) == ["q-2", "q-3"]  # one running; the user's own suspend is kept
    assert to_resume(jobs, max_active=1) == []


def test_deleted_jobs_that_finished_still_count_with_their_last_state() -> None:
    present = [job("b", "running")]
    deleted = {"a": job("a", "succeeded"), "c": job("c", "failed")}
    group, lost = with_deleted(present, deleted)
    assert lost == []
    assert sorted(j["metadata"]["name"] for j in group) == ["a", "b", "c"]
    assert judge_group(outcomes(*group), GroupGoal(expected=3))[0] is Verdict.WAITING
    group, _ = with_deleted([job("b", "succeeded")], deleted)
    assert judge_group(outcomes(*group), GroupGoal(expected=3))[0] is Verdict.MET


def test_deleted_jobs_that_had_not_finished_are_named() -> None:
    deleted = {
        "x": job("x", "running"),
        "q": job("q", "suspended", queued=True),
        "ok": job("ok", "succeeded"),
    }
    group, lost = with_deleted([job("b")], deleted)
    assert lost == ["q", "x"]
    assert sorted(j["metadata"]["name"] for j in group) == ["b", "ok"]


def test_a_job_recreated_under_a_deleted_name_is_the_one_judged() -> None:
    group, lost = with_deleted([job("a", "running")], {"a": job("a", "failed")})
    assert lost == [] and [outcome_from_job(j).state.value for j in group] == ["running"]

"""Job status interpretation, using statuses shaped like the Job controller writes them."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import V1Job, V1JobCondition, V1JobSpec, V1JobStatus, V1ObjectMeta, V1PodTemplateSpec

from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:05:00Z"
T2 = "2024-05-01T10:05:02Z"


def cond(
    ctype: str, reason: str | None = None, message: str = "", at: str = T1, status: str = "True"
) -> dict[str, Any]:
    c = {"type": ctype, "status": status, "lastProbeTime": at, "lastTransitionTime": at, "message": message}
    if reason is not None:
        c["reason"] = reason
    return c


def job(status: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl-x", "namespace": "data", "uid": "1234-abcd"},
        "spec": {"completions": 1, "parallelism": 1, **spec},
        **({"status": status} if status is not None else {}),
    }


# ------------------------------------------------------------------------------------------------
# outcome_from_job


def test_empty_status_is_pending() -> None:
    statuses: list[dict[str, Any] | None] = [None, {}]
    for status in statuses:
        out = outcome_from_job(job(status))
        assert out.state is JobState.PENDING and not out.done and not out.final
        assert (out.active, out.ready, out.succeeded, out.failed, out.terminating) == (0, 0, 0, 0, 0)
        assert out.reason is None and out.condition_time is None


def test_running() -> None:
    out = outcome_from_job(
        job(
            {"active": 2, "ready": 1, "terminating": 0, "startTime": T0, "uncountedTerminatedPods": {}},
            completions=5,
            parallelism=2,
        )
    )
    assert out.state is JobState.RUNNING
    assert (out.active, out.ready, out.completions, out.parallelism) == (2, 1, 5, 2)
    assert out.start_time == T0
    assert out.summary().startswith("0/5 succeeded, 0 failed, 2 active (running")


def test_started_without_pods_yet_is_running() -> None:
    assert outcome_from_job(job({"startTime": T0, "active": 0})).state is JobState.RUNNING


def test_completed_non_indexed() -> None:
    status = {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", T1),
            cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods", T2),
        ],
        "startTime": T0,
        "completionTime": T2,
        "succeeded": 1,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }
    out = outcome_from_job(job(status))
    assert out.state is JobState.SUCCEEDED and out.final and out.done
    assert out.reason == "CompletionsReached"
    assert out.condition_time == T2
    assert out.completion_time == T2
    assert out.uid == "1234-abcd" and out.name == "etl-x" and out.namespace == "data"


def test_success_criteria_met_only_is_not_final() -> None:
    status = {
        "conditions": [cond("SuccessCriteriaMet", "CompletionsReached", at=T1)],
        "startTime": T0,
        "succeeded": 1,
        "terminating": 1,
    }
    out = outcome_from_job(job(status))
    assert out.state is JobState.SUCCEEDED and out.done and not out.final
    assert out.condition_time == T1
    assert "pods still terminating" in out.summary()


def test_backoff_limit_exceeded() -> None:
    status = {
        "conditions": [
            cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit", T1),
            cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", T2),
        ],
        "startTime": T0,
        "failed": 7,
        "terminating": 0,
    }
    out = outcome_from_job(job(status, backoffLimit=6))
    assert out.state is JobState.FAILED and out.final
    assert out.reason == "BackoffLimitExceeded"
    assert out.message == "Job has reached the specified backoff limit"
    assert out.failed == 7
    assert out.condition_time == T2


def test_failure_target_only_is_failed_not_final() -> None:
    status = {"conditions": [cond("FailureTarget", "BackoffLimitExceeded")], "failed": 7, "terminating": 2}
    out = outcome_from_job(job(status))
    assert out.state is JobState.FAILED and not out.final and out.terminating == 2


def test_pod_failure_policy_failure() -> None:
    msg = "Container main for pod data/etl-x-abcde failed with exit code 42 matching FailJob rule at index 0"
    status = {
        "conditions": [
            cond("FailureTarget", "PodFailurePolicy", msg, T1),
            cond("Failed", "PodFailurePolicy", msg, T2),
        ],
        "startTime": T0,
        "failed": 1,
    }
    out = outcome_from_job(job(status))
    assert (out.state, out.reason, out.message) == (JobState.FAILED, "PodFailurePolicy", msg)


def test_indexed_completed() -> None:
    status = {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached", at=T1),
            cond("Complete", "CompletionsReached", at=T2),
        ],
        "completedIndexes": "0-4",
        "succeeded": 5,
        "startTime": T0,
    }
    out = outcome_from_job(job(status, completions=5, parallelism=5, completionMode="Indexed"))
    assert out.state is JobState.SUCCEEDED and out.completed_indexes == (0, 1, 2, 3, 4)
    assert out.summary().startswith("5/5 succeeded")


def test_failed_indexes_with_backoff_limit_per_index() -> None:
    status = {
        "conditions": [
            cond("FailureTarget", "FailedIndexes", "Job has failed indexes", T1),
            cond("Failed", "FailedIndexes", "Job has failed indexes", T2),
        ],
        "completedIndexes": "0,2-4",
        "failedIndexes": "1,5",
        "succeeded": 4,
        "failed": 4,
        "startTime": T0,
    }
    out = outcome_from_job(job(status, completions=6, completionMode="Indexed", backoffLimitPerIndex=1))
    assert out.state is JobState.FAILED and out.reason == "FailedIndexes"
    assert out.completed_indexes == (0, 2, 3, 4) and out.failed_indexes == (1, 5)
    assert "failed indexes 1,5" in out.summary()


def test_max_failed_indexes_exceeded() -> None:
    status = {
        "conditions": [
            cond(
                "FailureTarget",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
                T1,
            ),
            cond(
                "Failed",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
                T2,
            ),
        ],
        "failedIndexes": "0-2",
        "failed": 6,
        "startTime": T0,
    }
    out = outcome_from_job(
        job(status, completions=10, completionMode="Indexed", backoffLimitPerIndex=1, maxFailedIndexes=2)
    )
    assert out.state is JobState.FAILED and out.reason == "MaxFailedIndexesExceeded"
    assert out.failed_indexes == (0, 1, 2)


def test_success_policy_met() -> None:
    status = {
        "conditions": [
            cond("SuccessCriteriaMet", "SuccessPolicy", "Matched rules at index 0", T1),
            cond("Complete", "SuccessPolicy", "Matched rules at index 0", T2),
        ],
        "completedIndexes": "0",
        "succeeded": 1,
        "startTime": T0,
    }
    out = outcome_from_job(job(status, completions=4, completionMode="Indexed"))
    assert out.state is JobState.SUCCEEDED and out.final and out.reason == "SuccessPolicy"
    assert out.completed_indexes == (0,)


def test_suspended() -> None:
    status = {"conditions": [cond("Suspended", "JobSuspended", "Job suspended", T1)]}
    out = outcome_from_job(job(status, suspend=True))
    assert out.state is JobState.SUSPENDED and out.reason == "JobSuspended" and not out.done


def test_resumed_is_running() -> None:
    status = {
        "conditions": [cond("Suspended", "JobResumed", "Job resumed", T2, status="False")],
        "startTime": T2,
        "active": 1,
    }
    out = outcome_from_job(job(status, suspend=False))
    assert out.state is JobState.RUNNING and out.reason is None


def test_deadline_exceeded() -> None:
    msg = "Job was active longer than specified deadline"
    status = {
        "conditions": [
            cond("FailureTarget", "DeadlineExceeded", msg, T1),
            cond("Failed", "DeadlineExceeded", msg, T2),
        ],
        "startTime": T0,
        "failed": 1,
    }
    out = outcome_from_job(job(status, activeDeadlineSeconds=60))
    assert out.state is JobState.FAILED and out.reason == "DeadlineExceeded"


def test_pre_131_cluster_failed_without_failure_target() -> None:
    out = outcome_from_job(job({"conditions": [cond("Failed", "BackoffLimitExceeded")], "failed": 7}))
    assert out.state is JobState.FAILED and out.final


def test_non_true_conditions_are_ignored() -> None:
    status = {
        "conditions": [cond("Failed", "X", status="False"), cond("Complete", "Y", status="Unknown")],
        "active": 1,
    }
    assert outcome_from_job(job(status)).state is JobState.RUNNING


def test_conflicting_conditions_earliest_wins() -> None:
    early_fail = {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached", at=T2),
            cond("FailureTarget", "X", at=T1),
        ]
    }
    assert outcome_from_job(job(early_fail)).state is JobState.FAILED
    early_ok = {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached", at=T1),
            cond("FailureTarget", "X", at=T2),
        ]
    }
    assert outcome_from_job(job(early_ok)).state is JobState.SUCCEEDED
    tie = {
        "conditions": [
            cond("SuccessCriteriaMet", "CompletionsReached", at=T1),
            cond("FailureTarget", "X", at=T1),
        ]
    }
    assert outcome_from_job(job(tie)).state is JobState.FAILED
    terminal_wins = {
        "conditions": [cond("FailureTarget", "X", at=T1), cond("Complete", "CompletionsReached", at=T2)]
    }
    assert outcome_from_job(job(terminal_wins)).state is JobState.SUCCEEDED


def test_terminating_none_and_missing_ready_default_to_zero() -> None:
    out = outcome_from_job(job({"active": 1, "terminating": None, "ready": None}))
    assert out.terminating == 0 and out.ready == 0


def test_v1job_input() -> None:
    from datetime import datetime, timezone

    t1 = datetime(2024, 5, 1, 10, 5, tzinfo=timezone.utc)
    v1 = V1Job(
        metadata=V1ObjectMeta(name="etl-x", namespace="data", uid="u"),
        spec=V1JobSpec(completions=3, completion_mode="Indexed", template=V1PodTemplateSpec()),
        status=V1JobStatus(
            conditions=[
                V1JobCondition(
                    type="SuccessCriteriaMet",
                    status="True",
                    reason="CompletionsReached",
                    last_transition_time=t1,
                ),
                V1JobCondition(
                    type="Complete", status="True", reason="CompletionsReached", last_transition_time=t1
                ),
            ],
            completed_indexes="0-2",
            succeeded=3,
        ),
    )
    out = outcome_from_job(v1)
    assert out.state is JobState.SUCCEEDED and out.final
    assert out.completed_indexes == (0, 1, 2)
    assert out.condition_time is not None and out.condition_time.startswith("2024-05-01T10:05:00")


def test_to_dict_roundtrip_is_json_safe() -> None:
    status = {
        "conditions": [cond("FailureTarget", "FailedIndexes", "m", T1)],
        "completedIndexes": "0,2",
        "failedIndexes": "1",
        "succeeded": 2,
        "failed": 2,
        "terminating": 1,
        "startTime": T0,
    }
    out = outcome_from_job(job(status, completions=3, completionMode="Indexed", backoffLimitPerIndex=0))
    data = json.loads(json.dumps(out.to_dict()))
    assert data["state"] == "failed" and data["failed_indexes"] == [1]
    assert JobOutcome.from_dict(data) == out
    assert JobOutcome.from_dict({**data, "added_in_a_future_version": 1}) == out

"""core/diagnose.py: parallelism gaps, Pod problems, pending timeouts and summaries, from API-form dicts."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_batchjob.core.diagnose import (
    diagnose,
    failed_create_events,
    needs_diagnosis,
    parallelism_of,
    parse_time,
    pending_violation,
    pod_problem,
    pod_summary,
)

T0 = "2026-01-01T00:00:00Z"
NOW = parse_time("2026-01-01T00:01:00Z") or 0.0  # 60 s after T0


def job(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, uid: str = "u1"
) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "namespace": "ns", "uid": uid},
        "spec": spec or {},
        "status": status or {},
    }


def pod(
    name: str = "j-abc",
    phase: str = "Pending",
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": T0, "labels": {}, **meta},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
    "1 No preemption victims found for incoming pod.",
}
SCHEDULED = {"type": "PodScheduled", "status": "True"}


def waiting(reason: str, message: str = "") -> list[dict[str, Any]]:
    return [{"name": "main", "state": {"waiting": {"reason": reason, "message": message}}, "restartCount": 0}]


class TestParallelism:
    def test_default_parallelism_is_one(self) -> None:
        p = parallelism_of(job())
        assert (p.requested, p.wanted, p.active) == (1, 1, 0)

    def test_remaining_completions_cap_what_is_wanted(self) -> None:
        p = parallelism_of(job({"parallelism": 5, "completions": 6}, {"succeeded": 4, "active": 2}))
        assert (p.requested, p.wanted) == (5, 2)
        assert p.why_fewer_wanted == "only 2 of 6 completions remain"

    def test_indexed_counts_completed_and_failed_indexes(self) -> None:
        p = parallelism_of(
            job(
                {"parallelism": 4, "completions": 6, "completionMode": "Indexed"},
                {"completedIndexes": "0-2", "failedIndexes": "4", "succeeded": 3},
            )
        )
        assert p.wanted == 2

    def test_work_queue_after_first_success_wants_no_new_pods(self) -> None:
        p = parallelism_of(job({"parallelism": 4}, {"succeeded": 1, "active": 2}))
        assert p.wanted == 2
        assert "first success" in (p.why_fewer_wanted or "")

    @pytest.mark.parametrize(
        "spec,status",
        [
            ({"suspend": True}, {}),
            ({}, {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}),
            ({}, {"conditions": [{"type": "Failed", "status": "True"}]}),
        ],
    )
    def test_suspended_or_decided_wants_nothing(self, spec: dict[str, Any], status: dict[str, Any]) -> None:
        assert parallelism_of(job(spec, status)).wanted == 0
        assert not needs_diagnosis(job(spec, status))


class TestNeedsDiagnosis:
    def test_all_ready(self) -> None:
        assert not needs_diagnosis(job({"parallelism": 2}, {"active": 2, "ready": 2}))

    def test_fewer_active_than_wanted(self) -> None:
        assert needs_diagnosis(job({"parallelism": 3}, {"active": 1, "ready": 1}))

    def test_active_but_not_ready(self) -> None:
        assert needs_diagnosis(job({"parallelism": 2}, {"active": 2, "ready": 1}))

    def test_missing_ready_field_counts_as_unknown(self) -> None:
        assert needs_diagnosis(job({}, {"active": 1}))


class TestPodProblem:
    def test_unschedulable_has_scheduler_message(self) -> None:
        p = pod_problem(pod(conditions=[UNSCHEDULABLE]))
        assert p is not None and p.stuck and p.reason == "Unschedulable"
        assert "Insufficient cpu" in p.message
        assert p.line(NOW).startswith("Pod j-abc Pending for 60s: Unschedulable: 0/1 nodes are available")

    @pytest.mark.parametrize(
        "reason", ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"]
    )
    def test_container_cannot_start(self, reason: str) -> None:
        p = pod_problem(pod(conditions=[SCHEDULED], containers=waiting(reason, "some  detail\nmore")))
        assert p is not None and p.stuck and p.reason == reason and p.container == "main"
        assert p.message == "some detail more"
        assert f"container main waiting for 60s: {reason}: some detail more" in p.line(NOW)

    def test_container_creating_is_not_stuck(self) -> None:
        p = pod_problem(pod(conditions=[SCHEDULED], containers=waiting("ContainerCreating")))
        assert p is not None and not p.stuck

    def test_not_yet_scheduled_is_not_stuck(self) -> None:
        p = pod_problem(pod())
        assert p is not None and not p.stuck and p.reason == "NotScheduled"

    def test_running_pod_is_fine_unless_crash_looping(self) -> None:
        running = [{"name": "main", "state": {"running": {"startedAt": T0}}}]
        assert pod_problem(pod(phase="Running", conditions=[SCHEDULED], containers=running)) is None
        crash = pod_problem(
            pod(phase="Running", conditions=[SCHEDULED], containers=waiting("CrashLoopBackOff"))
        )
        assert crash is not None and not crash.stuck and crash.reason == "CrashLoopBackOff"

    @pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
    def test_finished_pods_have_no_problem(self, phase: str) -> None:
        assert pod_problem(pod(phase=phase)) is None

    def test_terminating_pod_has_no_problem(self) -> None:
        assert pod_problem(pod(conditions=[UNSCHEDULABLE], deletionTimestamp=T0)) is None

    def test_index_is_shown(self) -> None:
        p = pod_problem(
            pod(
                conditions=[UNSCHEDULABLE],
                annotations={"batch.kubernetes.io/job-completion-index": "3"},
            )
        )
        assert p is not None and "(index 3)" in p.line(NOW)


def quota_event(uid: str = "u1", when: str = T0, message: str = "quota") -> dict[str, Any]:
    return {
        "metadata": {"name": f"e-{when}"},
        "involvedObject": {"kind": "Job", "uid": uid, "name": "j"},
        "reason": "FailedCreate",
        "type": "Warning",
        "message": message,
        "lastTimestamp": when,
    }


class TestDiagnose:
    def test_quota_gap_explained_by_failed_create(self) -> None:
        msg = (
            'Error creating: pods "j-x" is forbidden: exceeded quota: one-pod, '
            "requested: pods=1, used: pods=1, limited: pods=1"
        )
        d = diagnose(
            job({"parallelism": 3, "completions": 3}, {"active": 1, "ready": 1}),
            [],
            [quota_event(message="older"), quota_event(when="2026-01-01T00:00:30Z", message=msg)],
            NOW,
        )
        assert d.gap == 2
        assert d.lines == [
            "Job ns/j: parallelism 1 running of 3 requested; 2 missing: "
            f"the Job controller cannot create Pods: FailedCreate: {msg}"
        ]

    def test_other_jobs_events_are_ignored(self) -> None:
        assert failed_create_events([quota_event(uid="other")], "u1") == []

    def test_backoff_after_failures(self) -> None:
        d = diagnose(job({"parallelism": 2, "completions": 4}, {"active": 0, "failed": 2}), [], [], NOW)
        assert "2 Pods failed: the controller backs off" in d.lines[0]

    def test_terminating_pods(self) -> None:
        d = diagnose(job({"parallelism": 2}, {"active": 0, "terminating": 2}), [], [], NOW)
        assert "2 Pods are still terminating" in d.lines[0]

    def test_controller_lag(self) -> None:
        d = diagnose(job({"parallelism": 2}, {"active": 1, "ready": 1}), [], [], NOW)
        assert d.lines[0].endswith("1 missing: the Job controller has not created them yet")

    def test_pods_that_do_not_start_are_listed_with_their_reason(self) -> None:
        pods = [
            pod("a", conditions=[UNSCHEDULABLE]),
            pod("b", conditions=[SCHEDULED], containers=waiting("ErrImagePull", "not found")),
            pod("c", conditions=[SCHEDULED], containers=waiting("ContainerCreating")),
        ]
        d = diagnose(job({"parallelism": 3}, {"active": 3, "ready": 0}), pods, [], NOW)
        assert d.lines[0] == "Job ns/j: parallelism 3 running of 3 requested, 3 of them not running"
        assert any("Pod a Pending for 60s: Unschedulable" in x for x in d.lines)
        assert any("Pod b container main waiting for 60s: ErrImagePull: not found" in x for x in d.lines)
        assert not any("Pod c" in x for x in d.lines)  # ordinary start-up is not a problem
        assert {p.pod for p in d.stuck} == {"a", "b"}

    def test_key_ignores_ages_but_tracks_reasons(self) -> None:
        j = job({"parallelism": 1}, {"active": 1, "ready": 0})
        a = diagnose(j, [pod(conditions=[UNSCHEDULABLE])], [], NOW)
        b = diagnose(j, [pod(conditions=[UNSCHEDULABLE])], [], NOW + 30)
        c = diagnose(j, [pod(conditions=[SCHEDULED], containers=waiting("ErrImagePull"))], [], NOW)
        assert a.key == b.key != c.key

    def test_many_pods_are_capped(self) -> None:
        pods = [pod(f"p{i}", conditions=[UNSCHEDULABLE]) for i in range(9)]
        d = diagnose(job({"parallelism": 9}, {"active": 9, "ready": 0}), pods, [], NOW, max_pods=5)
        assert d.lines[-1] == "4 more Pods cannot start"
        assert len(d.stuck) == 9

    def test_decided_job_has_nothing_to_say(self) -> None:
        done = job({}, {"conditions": [{"type": "Complete", "status": "True"}]})
        assert diagnose(done, [pod(conditions=[UNSCHEDULABLE])], [], NOW).lines == []


class TestPendingViolation:
    def test_longest_stuck_pod_past_the_timeout(self) -> None:
        old = pod_problem(pod("old", conditions=[UNSCHEDULABLE]))
        young = pod_problem(
            pod("young", conditions=[UNSCHEDULABLE], creationTimestamp="2026-01-01T00:00:50Z")
        )
        assert old is not None and young is not None
        assert pending_violation([young, old], NOW, 30) is old
        assert pending_violation([young], NOW, 30) is None
        assert pending_violation([young, old], NOW, 61) is None


class TestPodSummary:
    def test_pending_time_evictions_and_failures(self) -> None:
        started = [
            {"name": "main", "state": {"terminated": {"startedAt": "2026-01-01T00:00:10Z", "exitCode": 1}}}
        ]
        evicted = pod("e", phase="Failed")
        evicted["status"]["reason"] = "Evicted"
        pods = [
            pod("a", phase="Failed", containers=started),
            pod("b", conditions=[UNSCHEDULABLE]),  # still Pending: counts until now
            evicted,
        ]
        s = pod_summary(pods, NOW)
        assert s["pods_seen"] == 3
        assert s["pods_failed_seen"] == 2
        assert s["pods_evicted"] == 1
        assert s["pending_seconds_max"] == 60.0
        assert s["pending_seconds_total"] == 10.0 + 60.0 + 60.0

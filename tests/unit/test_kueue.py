"""core/kueue.py: the queue labels, parse-time checks, and reading a Workload as Kueue writes it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.kueue import (
    PRIORITY_LABEL,
    QUEUE_LABEL,
    KueueSettings,
    KueueTracker,
    apply_queue,
    managed,
    read_workload,
    settings,
)
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator


def given(**kw: Any) -> KueueSettings:
    args: dict[str, Any] = {
        "queue_name": None,
        "local_queue": None,
        "priority_class": None,
        "queue_timeout": None,
    }
    return settings(**{**args, **kw})


def workload(*conditions: tuple[str, str, str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "job-j-1a2b3"},
        "spec": {"queueName": "team-a"},
        "status": {
            "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions],
            **status,
        },
    }


PENDING = (
    "QuotaReserved",
    "False",
    "Pending",
    "couldn't assign flavors to pod set main: insufficient quota for cpu",
)
ADMISSION = {"clusterQueue": "cq", "podSetAssignments": [{"name": "main", "flavors": {"cpu": "default"}}]}


def test_queue_labels_and_suspend() -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"}, "spec": {"suspend": False}}
    apply_queue(job, given(queue_name="team-a", priority_class="high"))
    assert job["metadata"]["labels"] == {QUEUE_LABEL: "team-a", PRIORITY_LABEL: "high"}
    assert job["spec"]["suspend"] is True and managed(job)


def test_no_queue_changes_nothing() -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"}, "spec": {}}
    apply_queue(job, given())
    assert job == {"metadata": {"name": "j"}, "spec": {}} and not managed(job)


@pytest.mark.parametrize("bad", ["Team-A", "a_b", "-a", "a" * 64, "", 3])
def test_names_follow_label_value_rules(bad: Any) -> None:
    with pytest.raises(InvalidJobSpecError, match="queue_name="):
        given(queue_name=bad)
    with pytest.raises(InvalidJobSpecError, match="priority_class="):
        given(queue_name="q", priority_class=bad)


def test_combinations_refused() -> None:
    with pytest.raises(InvalidJobSpecError, match="pass one"):
        given(queue_name="a", local_queue="b")
    with pytest.raises(InvalidJobSpecError, match="give queue_name"):
        given(priority_class="high")
    with pytest.raises(InvalidJobSpecError, match="give queue_name"):
        given(queue_timeout=10)
    with pytest.raises(InvalidJobSpecError, match="positive"):
        given(queue_name="a", queue_timeout=0)
    assert given(local_queue="a").local_queue == "a"


def test_operator_refuses_at_parse_time_naming_the_parameter() -> None:
    with pytest.raises(InvalidJobTemplateError, match="queue_name='Team A'"):
        BatchJobOperator(task_id="t", image="busybox", queue_name="Team A")
    op = BatchJobOperator(task_id="t", image="busybox", queue_name="team-a", queue_timeout=30)
    assert op.kueue == KueueSettings("team-a", None, 30.0)
    assert KueueSettings.from_dict(op.kueue.to_dict()) == op.kueue


def test_workload_phases() -> None:
    queued = read_workload(workload(PENDING))
    assert (queued.phase, queued.reason) == ("queued", "Pending")
    assert "insufficient quota for cpu" in queued.line() and "LocalQueue team-a" in queued.line()
    admitted = read_workload(
        workload(
            ("QuotaReserved", "True", "QuotaReserved", ""),
            ("Admitted", "True", "Admitted", ""),
            admission=ADMISSION,
        )
    )
    assert admitted.phase == "admitted" and admitted.flavors == {"cpu": "default"}
    assert "ClusterQueue cq" in admitted.line() and "cpu=default" in admitted.line()
    evicted = read_workload(
        workload(
            ("Evicted", "True", "Preempted", "Preempted to accommodate a higher priority Workload"),
            (
                "Preempted",
                "True",
                "InClusterQueue",
                "Preempted to accommodate a workload (UID: x) due to prioritization",
            ),
            PENDING,
        )
    )
    assert evicted.phase == "evicted" and evicted.reason == "InClusterQueue" and "requeued" in evicted.line()
    finished = read_workload(workload(("Finished", "True", "Succeeded", "Job finished successfully")))
    assert finished.phase == "finished"
    assert read_workload({"metadata": {"name": "w"}}).phase == "queued"


def test_tracker_counts_time_queued_and_evictions() -> None:
    t = KueueTracker(queue_timeout=100)
    assert t.observe(None, 0.0) == []  # no Workload yet: queued from now
    lines = t.observe(workload(PENDING), 1.0)
    assert len(lines) == 1 and lines[0].startswith("Kueue queued")
    assert t.observe(workload(PENDING), 5.0) == []  # unchanged: nothing logged
    adm = workload(("Admitted", "True", "Admitted", ""), admission=ADMISSION)
    assert t.observe(adm, 10.0)[0].startswith("Kueue admitted")
    ev = workload(("Evicted", "True", "Preempted", "by a higher priority Workload"), PENDING)
    assert "evicted" in t.observe(ev, 20.0)[0]
    assert t.over_queue_timeout(50.0) is None and t.next_wake(50.0) == pytest.approx(70.0)
    t.observe(adm, 30.0)
    s = t.summary(40.0)
    assert s["queued_seconds"] == pytest.approx(20.0) and s["evictions"] == 1
    assert s["phases"] == ["queued", "admitted", "evicted", "admitted"] and s["cluster_queue"] == "cq"


def test_queue_timeout_names_the_reason() -> None:
    t = KueueTracker(queue_timeout=30)
    t.observe(workload(PENDING), 0.0)
    why = t.over_queue_timeout(31.0)
    assert why is not None and "queue_timeout is 30s" in why and "insufficient quota for cpu" in why
    assert KueueTracker().over_queue_timeout(1e9) is None

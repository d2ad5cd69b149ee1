"""Jobs through a real Kueue (v0.17, ``localcluster/kueue.py``) on the local cluster, via Airflow.

Quota, admission, preemption and requeueing are Kueue's own; the Pods run on the node agent. Every
wait is on a condition (a file a Pod wrote, a Workload's state), never a fixed sleep.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from airflow_batchjob.core import naming
from airflow_batchjob.core.kueue import JOB_UID_LABEL, PRIORITY_LABEL, QUEUE_LABEL
from localcluster import cluster as lc
from tests.cluster.helpers import jobs_in, new_dag, peak, script_template, span_events
from tests.kueue.conftest import KUEUE

pytestmark = [pytest.mark.kueue, pytest.mark.cluster]

ONE_CPU = {"requests": {"cpu": "1", "memory": "64Mi"}}
# /proc/uptime: the host's clock, shared by every Pod (busybox's date has no %N).
SPAN = (
    'read t _ < /proc/uptime; echo "$t 1" >> /out/spans; {work}; '
    'read t _ < /proc/uptime; echo "$t -1" >> /out/spans'
)


class AdmittedPeak:
    """Watches the namespace's Workloads in a thread: the most that held quota at once."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api, self.namespace = client.CustomObjectsApi(api_client), namespace
        self.holding: dict[str, bool] = {}
        self.top = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AdmittedPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        w = watch.Watch()
        args = ("kueue.x-k8s.io", "v1beta2", self.namespace, "workloads")
        while not self._stop.is_set():
            for ev in w.stream(self.api.list_namespaced_custom_object, *args, timeout_seconds=2):
                wl = ev["object"]
                status = wl.get("status") or {}  # none yet right after Kueue created it
                conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
                count = sum(ps.get("count", 1) for ps in wl["spec"].get("podSets") or [])
                reclaimed = sum(r.get("count", 0) for r in status.get("reclaimablePods") or [])
                name = wl["metadata"]["name"]
                self.seen.add(name)
                self.holding[name] = (
                    conds.get("QuotaReserved") == "True"
                    and conds.get("Finished") != "True"
                    and reclaimed < count
                )
                self.top = max(self.top, sum(self.holding.values()))
                if self._stop.is_set():
                    break


def test_fan_out_of_ten_one_cpu_items_under_two_cpus(
    run_dag: Any,
    make_queue: Callable[..., str],
    kueue_grant: str,
    api_client: Any,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_batchjob.operators.jobgroup import JobGroupOperator

    namespace = kueue_grant
    queue = make_queue(cpu="2")
    with new_dag("kueue_fan_out") as dag:
        JobGroupOperator(
            task_id="fan_out",
            namespace=namespace,
            items=[f"item{i}" for i in range(10)],
            job_template=script_template(SPAN.format(work="sleep 1"), tmp_path),
            container_resources=ONE_CPU,
            queue_name=queue,
            progress_interval=0,
            get_logs=False,  # ten Pods' output is not what this test reads
        )
    with AdmittedPeak(api_client, namespace) as admitted:
        result = run_dag(dag)["fan_out"]
    out = capfd.readouterr().out
    assert result["state"] == "success", out[-3000:]
    rows = result["xcom"]["return_value"]
    assert [r["state"] for r in rows] == ["succeeded"] * 10
    assert len(admitted.seen) == 10, "one Workload per Job"
    assert 1 <= admitted.top <= 2, f"Kueue admitted {admitted.top} at once under 2 CPUs"
    events = span_events(tmp_path / "spans")
    assert len(events) == 20 and peak(events) <= 2
    for job in jobs_in(api_client, namespace):
        assert job.metadata.labels[QUEUE_LABEL] == queue
    # The progress lines: first most Jobs queue, later they are admitted and finish.
    counts = [tuple(map(int, m)) for m in re.findall(r"Kueue: (\d+) admitted, (\d+) queued", out)]
    assert counts, out[-3000:]
    assert any(q >= 6 for _, q in counts), counts  # 10 created at once, at most 2 admitted
    assert all(a <= 2 for a, _ in counts), counts


def priority_class(api_client: Any, name: str, value: int) -> None:
    body = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": name},
    }
    body["value"] = value
    client.CustomObjectsApi(api_client).create_cluster_custom_object(
        "kueue.x-k8s.io", "v1beta2", "workloadpriorityclasses", body
    )


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        time.sleep(0.2)


def test_preempted_task_is_requeued_and_succeeds_once(
    run_dag: Any,
    make_queue: Callable[..., str],
    kueue_grant: str,
    api_client: Any,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_batchjob.operators.job import BatchJobOperator

    namespace = kueue_grant
    queue = make_queue(cpu="1", preemption={"withinClusterQueue": "LowerPriority"})
    low, high = f"low-{namespace}", f"high-{namespace}"
    priority_class(api_client, low, 10)
    priority_class(api_client, high, 1000)
    started = tmp_path / "low-started"
    # The low-priority Pod says it started, then works until the high-priority Job has run once
    # (its Pod writes /out/high-done): the first run is killed by the eviction, the second finishes.
    script = 'echo "$HOSTNAME" >> /out/low-started; until [ -e /out/high-done ]; do sleep 0.2; done'
    with new_dag("kueue_preempted") as dag:
        BatchJobOperator(
            task_id="low",
            namespace=namespace,
            job_template=script_template(script, tmp_path),
            container_resources=ONE_CPU,
            queue_name=queue,
            priority_class=low,
            progress_interval=0,
        )
    batch = client.BatchV1Api(api_client)

    def preempt() -> None:
        wait_until("low running", lambda: started.exists() and started.read_text().strip() != "")
        body = script_template("touch /out/high-done", tmp_path)
        body["metadata"] = {"name": "high", "labels": {QUEUE_LABEL: queue, PRIORITY_LABEL: high}}
        body["spec"]["suspend"] = True
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = ONE_CPU
        batch.create_namespaced_job(namespace, body)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            preempt()
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result = run_dag(dag)["low"]
    thread.join(10)
    out = capfd.readouterr().out
    assert not errors, errors
    assert result["state"] == "success" and result["try_number"] == 1, out[-3000:]
    pods_started = started.read_text().split()
    assert len(pods_started) == 2 and len(set(pods_started)) == 2, "evicted, then run again in a new Pod"
    ours = [j for j in jobs_in(api_client, namespace) if j.metadata.name != "high"]
    assert len(ours) == 1, "no duplicate Job: Kueue requeued the same one"
    assert batch.read_namespaced_job("high", namespace).status.succeeded == 1
    _queued, admitted, evicted = (out.find(f"Kueue {w} Workload") for w in ("queued", "admitted", "evicted"))
    assert -1 < admitted < evicted, out[-3000:]
    assert "requeued" in out[evicted:] and out.find("Kueue admitted Workload", evicted) > evicted
    kueue = result["xcom"]["diagnostics"]["kueue"]
    assert kueue["evictions"] == 1 and kueue["queued_seconds"] > 0
    assert kueue["cluster_queue"] == f"cq-{namespace}-{queue}" and kueue["flavors"] == {
        "cpu": "batchjob-flavor",
        "memory": "batchjob-flavor",
    }
    for name in (low, high):
        client.CustomObjectsApi(api_client).delete_cluster_custom_object(
            "kueue.x-k8s.io", "v1beta2", "workloadpriorityclasses", name
        )


def test_missing_local_queue_fails_before_anything_is_created(
    run_dag: Any, kueue_grant: str, api_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_batchjob.operators.job import BatchJobOperator

    namespace = kueue_grant
    with new_dag("kueue_no_queue") as dag:
        BatchJobOperator(task_id="t", namespace=namespace, image="busybox", cmds=["true"], queue_name="nope")
    result = run_dag(dag)["t"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert f"LocalQueue {namespace}/nope (queue_name='nope') does not exist" in out
    assert jobs_in(api_client, namespace) == []


def test_queue_timeout_fails_a_job_never_admitted(
    run_dag: Any, make_queue: Callable[..., str], kueue_grant: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_batchjob.operators.job import BatchJobOperator

    namespace = kueue_grant
    queue = make_queue(cpu="0")  # never enough quota
    with new_dag("kueue_queue_timeout") as dag:
        BatchJobOperator(
            task_id="t",
            namespace=namespace,
            image="busybox",
            cmds=["true"],
            container_resources=ONE_CPU,
            queue_name=queue,
            queue_timeout=4,
            delete_on_finish="always",
        )
    result = run_dag(dag)["t"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "not admitted by Kueue after" in out and "queue_timeout is 4s" in out
    assert "insufficient" in out.lower(), out[-3000:]


def test_workload_found_by_the_jobs_uid(
    kueue: lc.State, api_client: Any, make_queue: Any, namespace: str
) -> None:
    """What the waits rely on: Kueue labels the Workload with its Job's uid."""
    queue = make_queue(cpu="1")
    body = script_template("true")
    body["metadata"] = {"name": "j", "labels": {QUEUE_LABEL: queue}}
    body["spec"]["suspend"] = True
    job = client.BatchV1Api(api_client).create_namespaced_job(namespace, body)
    api = client.CustomObjectsApi(api_client)

    def found() -> bool:
        wls = api.list_namespaced_custom_object(
            "kueue.x-k8s.io",
            "v1beta2",
            namespace,
            "workloads",
            label_selector=f"{JOB_UID_LABEL}={job.metadata.uid}",
        )["items"]
        return len(wls) == 1

    wait_until("Workload labelled with the Job's uid", found, 60)
    assert KUEUE and naming  # imported for the module's readers

"""Faults of a real node, for real (issue 34): the kubelet, containerd and etcd SIGKILLed and
restarted, a node lost long enough for its Pods to be evicted, the triggerer cut off from the
apiserver for a minute.

Destructive: the module starts a real-node cluster of its own (``localcluster/nodefaults.py``:
a private cgroup root and Pod log dir, so a real node the rest of the suite shares keeps its
Pods) with the node-lifecycle and taint-eviction controllers on and a 20 s grace, and stops it
at the end. Every Job a test must catch in flight holds until the test creates ``go`` in its
directory (a hostPath), so no machine is too slow or too fast for the fault to land mid-run.
Each test counts the damage: tasks and their tries, Jobs created (and any created twice, by
uid), items processed, processed twice, lost; pytest prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from airflow_batchjob.sensors.jobgroup import JobGroupSensor
from localcluster import cluster as lc
from localcluster import nodefaults, realnode
from localcluster.faultproxy import FaultProxy
from tests.cluster.helpers import (
    PREFILLED_QUEUE,
    jobs_in,
    new_dag,
    pods_in,
    release,
    results,
    script_template,
    worker_template,
)
from tests.faults.helpers import Tally, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]

GATE = "until [ -e /out/go ]; do sleep 0.2; done; "
GROUP_ITEMS = [f"g{i}" for i in range(20)]
QUEUE_ITEMS = [f"q{i}" for i in range(30)]
DAEMONS = ("kubelet", "containerd")


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[lc.State]:
    """This module's own real-node cluster, in ``$BATCHJOB_NODE_FAULTS_DIR`` if set (a live one
    there is reused and left running), and stopped at the end."""
    why = realnode.available(lc.CACHE, lc.BIN / "kubelet")
    if os.environ.get("BATCHJOB_NODE") == "agent":
        why = "BATCHJOB_NODE=agent"
    if why:
        pytest.skip(f"no real node here: {why}")
    given = os.environ.get("BATCHJOB_NODE_FAULTS_DIR")
    d = Path(given) if given else lc.CACHE / "clusters" / f"nodefaults-{os.getpid()}"
    existing = lc.State.load(d)
    reuse = existing is not None and existing.node == "real" and lc.alive(existing)
    t0 = time.monotonic()
    st = existing if reuse and existing else nodefaults.start_private(d)
    nodefaults.watch_nodes(st)
    print(f"\nnode fault cluster ready in {time.monotonic() - t0:.0f}s", flush=True)
    lc.airflow_identity(st)
    conns = st.connections(kubeconfig=str(Path(st.dir) / "airflow.kubeconfig"))
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    yield st
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if not reuse:
        lc.down(d)


@pytest.fixture(scope="module")
def api_client(local_cluster: lc.State) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=local_cluster.kubeconfig)


class Background:
    """Runs the fault beside the DAG (``dag.test`` wants the main thread); re-raises its error.
    Whatever happens, ``components`` run again and the gate opens after: a failed fault
    leaves neither a broken node nor a DAG waiting for ever."""

    def __init__(self, fn: Callable[[], None], st: lc.State, components: tuple[str, ...], gate: Path) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, st, components, gate), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], None], st: lc.State, components: tuple[str, ...], gate: Path) -> None:
        try:
            fn()
        except BaseException as e:  # reported by join(), in the test's thread
            self.error = e
            # and now: the DAG may wait on the broken node until the watchdog ends the run
            traceback.print_exc()
        finally:
            try:
                for component in components:
                    nodefaults.ensure(st, component)
            finally:
                release(gate)

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the fault thread did not finish"
        if self.error is not None:
            raise self.error


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def running(api_client: Any, ns: str, selector: str = "") -> int:
    return sum(1 for p in pods_in(api_client, ns, selector) if p.status.phase == "Running")


def damage(api_client: Any, ns: str, uids: dict[str, str]) -> dict[str, Any]:
    """Jobs now, Jobs made twice (a name whose uid changed since ``uids``), Pods, restarts."""
    jobs = jobs_in(api_client, ns)
    pods = pods_in(api_client, ns)
    return {
        "jobs": len(jobs),
        "twice": sum(1 for j in jobs if j.metadata.name in uids and uids[j.metadata.name] != j.metadata.uid),
        "complete": sum(
            1
            for j in jobs
            if any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])
        ),
        "pods": len(pods),
        "pods_failed": sum(1 for p in pods if p.status.phase == "Failed"),
        "restarts": sum(c.restart_count for p in pods for c in p.status.container_statuses or []),
    }


def busy_dag(dag_id: str, ns: str, out: Path) -> DAG:
    """A group of 20 Jobs (started, waited for last) and a Redis variable-count Job, all held."""
    with new_dag(dag_id) as dag:
        group = JobGroupOperator(
            task_id="group",
            namespace=ns,
            items=GROUP_ITEMS,
            job_template=script_template(
                f'echo "$ITEM" >> /out/group-started; {GATE}printf "%s\\n" "$ITEM" >> /out/group', out
            ),
            wait_until_job_complete=False,  # it runs on while the queue task below waits
        )
        prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=QUEUE_ITEMS)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=ns,
            queue_name=PREFILLED_QUEUE,
            job_template=worker_template(out),
            cmds=["sh", "-c", f'echo "$ITEM" >> /out/started; {GATE}printf "%s\\n" "$ITEM" >> /out/results'],
            mode="variable",
            parallelism=3,
        )
        group_done = JobGroupSensor(
            task_id="group_done",
            namespace=ns,
            label_selector="{{ ti.xcom_pull(task_ids='group')['selector'] }}",
            expected_jobs=len(GROUP_ITEMS),
        )
        group >> prefill >> consume >> group_done
    return dag


def test_kubelet_then_containerd_killed_mid_run(
    run_dag: Any,
    local_cluster: lc.State,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    fault_report: Any,
) -> None:
    """While 20 group Jobs and 3 queue workers hold their items: SIGKILL the kubelet, start it
    again, then the same to containerd (one workload for both: its 23 Pods take the time), release."""
    tmp_path.chmod(0o777)  # the worker image runs as a non-root user
    uids: dict[str, str] = {}
    took: dict[str, float] = {}

    def fault() -> None:
        wait_until(
            lambda: len(lines(tmp_path / "group-started")) >= 20 and len(lines(tmp_path / "started")) >= 3,
            300,
            "20 group Pods and 3 queue workers holding an item",
        )
        uids.update({j.metadata.name: j.metadata.uid for j in jobs_in(api_client, namespace)})
        for component in DAEMONS:
            nodefaults.kill(local_cluster, component)
            time.sleep(3)  # the fault's length, not a precondition
            took[component] = nodefaults.start(local_cluster, component)
            t0 = time.monotonic()
            wait_until(lambda: nodefaults.ready(local_cluster) == "True", 120, "the node Ready")
            took[f"{component} ready"] = time.monotonic() - t0

    t0 = time.monotonic()
    bg = Background(fault, local_cluster, DAEMONS, tmp_path)
    result = run_dag(busy_dag("node_daemons_killed", namespace, tmp_path))
    bg.join()
    took["run"] = time.monotonic() - t0
    group = Tally(GROUP_ITEMS, Counter(lines(tmp_path / "group")))
    queue = Tally(QUEUE_ITEMS, results(tmp_path))
    seen = damage(api_client, namespace, uids)
    fault_report(
        f"kubelet, then containerd SIGKILLed, each down 3 s, answering {took['kubelet']:.1f}s and "
        f"{took['containerd']:.1f}s after their start; "
        f"tasks {sorted((t, r['state'], r['try_number']) for t, r in result.items())}; "
        f"group: {group.line()}; queue: {queue.line()}; Jobs {seen['jobs']} ({seen['twice']} made twice, "
        f"{seen['complete']} Complete); Pods {seen['pods']} ({seen['pods_failed']} failed, "
        f"{seen['restarts']} container restarts); run {took['run']:.0f}s"
    )
    assert {t: (r["state"], r["try_number"]) for t, r in result.items()} == {
        t: ("success", 1) for t in ("group", "prefill", "consume", "group_done")
    }
    assert len(uids) == 21, uids  # 20 group Jobs and the queue's, all there before the fault
    assert group.lost == [] and group.duplicates == 0 and group.strangers == []
    # No worker died (the containers run on under their shims): nothing is delivered twice.
    assert queue.lost == [] and queue.duplicates == 0 and queue.strangers == []
    assert seen["jobs"] == 21 and seen["twice"] == 0 and seen["complete"] == 21
    assert seen["pods_failed"] == 0 and seen["restarts"] == 0, seen


def test_etcd_killed_under_a_wait_and_a_prefill(
    run_dag: Any, local_cluster: lc.State, api_client: Any, namespace: str, tmp_path: Path, fault_report: Any
) -> None:
    """etcd SIGKILLed while a deferred queue wait watches its held Job; the apiserver fails its
    requests and its watch cache rebuilds once etcd is back."""
    tmp_path.chmod(0o777)
    items = [f"e{i}" for i in range(60)]
    uids: dict[str, str] = {}
    took: dict[str, float] = {}

    def fault() -> None:
        wait_until(lambda: len(lines(tmp_path / "started")) >= 2, 300, "2 workers holding an item")
        uids.update({j.metadata.name: j.metadata.uid for j in jobs_in(api_client, namespace)})
        nodefaults.kill(local_cluster, "etcd")
        time.sleep(3)
        took["restart"] = nodefaults.start(local_cluster, "etcd")

    with new_dag("node_etcd_killed") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=items)
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            queue_name=PREFILLED_QUEUE,
            job_template=worker_template(tmp_path),
            cmds=["sh", "-c", f'echo "$ITEM" >> /out/started; {GATE}printf "%s\\n" "$ITEM" >> /out/results'],
            mode="variable",
            parallelism=2,
        )
        prefill >> consume
    t0 = time.monotonic()
    bg = Background(fault, local_cluster, ("etcd",), tmp_path)
    result = run_dag(dag)
    bg.join()
    tally = Tally(items, results(tmp_path))
    seen = damage(api_client, namespace, uids)
    fault_report(
        f"etcd SIGKILLed, down 3 s, apiserver ready {took['restart']:.1f}s after etcd's start; "
        f"{tally.line()}; Jobs {seen['jobs']} ({seen['twice']} made twice); "
        f"Pods failed {seen['pods_failed']}; run {time.monotonic() - t0:.0f}s"
    )
    assert {t: (r["state"], r["try_number"]) for t, r in result.items()} == {
        "prefill": ("success", 1),
        "consume": ("success", 1),
    }
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert {k: stats[k] for k in ("pending", "processing", "dead")} == {
        "pending": 0,
        "processing": 0,
        "dead": 0,
    }
    assert len(uids) == 1 and seen["jobs"] == 1 and seen["twice"] == 0


TOLERATE_BRIEFLY = [  # evicted 2 s after the node is marked unreachable (default: 300 s)
    {"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
    for t in ("unreachable", "not-ready")
]


def disrupted(api_client: Any, ns: str) -> list[Any]:
    return [
        p
        for p in pods_in(api_client, ns)
        if any(c.type == "DisruptionTarget" and c.status == "True" for c in p.status.conditions or [])
    ]


@pytest.mark.parametrize("ignore", [True, False], ids=["ignore_disruptions", "default"])
def test_node_lost_and_pods_evicted(
    run_dag: Any,
    local_cluster: lc.State,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    fault_report: Any,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    ignore: bool,
) -> None:
    """The kubelet stops for longer than the grace and the toleration: the node goes Unknown, its
    Pod is evicted (DisruptionTarget). With ignore_disruptions the Job replaces it without using
    its backoff (backoffLimit 0); without, that one eviction fails the Job (pod-security.rst)."""
    took: dict[str, float] = {}
    evicted: list[str] = []

    def fault() -> None:
        wait_until(lambda: len(lines(tmp_path / "started")) >= 1, 300, "the Pod to start")
        nodefaults.kill(local_cluster, "kubelet")
        t0 = time.monotonic()
        wait_until(lambda: bool(disrupted(api_client, namespace)), 180, "the Pod evicted")
        took["evicted"] = time.monotonic() - t0
        evicted.extend(p.metadata.name for p in disrupted(api_client, namespace))
        took["restart"] = nodefaults.start(local_cluster, "kubelet")
        # Only once the evicted Pod is over: it must not see the gate and finish after all.
        wait_until(
            lambda: all(
                p.status.phase == "Failed"
                for p in pods_in(api_client, namespace)
                if p.metadata.name in evicted
            ),
            120,
            "the evicted Pod to fail",
        )

    template = script_template(
        f'echo "$HOSTNAME" >> /out/started; {GATE}echo "$HOSTNAME" >> /out/done', tmp_path, backoffLimit=0
    )
    template["spec"]["template"]["spec"].update(tolerations=TOLERATE_BRIEFLY, terminationGracePeriodSeconds=1)
    with new_dag(f"node_lost_{ignore}") as dag:
        BatchJobOperator(
            task_id="job", namespace=namespace, job_template=template, ignore_disruptions=ignore, retries=0
        )
    t0 = time.monotonic()
    bg = Background(fault, local_cluster, ("kubelet",), tmp_path)
    result = run_dag(dag)["job"]
    bg.join()
    out = capfd.readouterr().out + caplog.text
    (job,) = jobs_in(api_client, namespace)
    started, done = lines(tmp_path / "started"), lines(tmp_path / "done")
    fault_report(
        f"kubelet stopped, Pod evicted {took['evicted']:.0f}s later (grace "
        f"{nodefaults.NODE_MONITOR_GRACE_SECONDS}s + toleration 2s), kubelet back in {took['restart']:.1f}s; "
        f"task {result['state']} (try {result['try_number']}); Job failed={job.status.failed or 0} "
        f"succeeded={job.status.succeeded or 0}; "
        f"Pods started {len(started)}, finished the work {len(done)}x; run {time.monotonic() - t0:.0f}s"
    )
    assert len(evicted) == 1 and evicted[0] not in done  # the evicted Pod never finished its work
    if ignore:
        assert result["state"] == "success" and result["try_number"] == 1, out[-3000:]
        assert len(started) == 2 and len(done) == 1  # the replacement did it, once
        assert not job.status.failed  # the eviction was not counted against backoffLimit 0
    else:
        assert result["state"] == "failed", out[-3000:]
        assert started == evicted and done == []  # no replacement: the Job failed
        assert job.status.failed == 1
        # FailureTarget at once; Failed once the evicted Pod is gone (the kubelet must be back).
        reasons = {c.type: c.reason for c in job.status.conditions or []}
        assert reasons.get("FailureTarget") == "BackoffLimitExceeded", reasons
        assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in out, out[-3000:]
        why = f"Pod {evicted[0]} was stopped by a disruption, not by its program: DeletionByTaintManager"
        assert why in out and "ignore_disruptions=True replaces such a Pod" in out, out[-3000:]


def test_triggerer_cut_off_from_the_apiserver(
    local_cluster: lc.State,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    fault_report: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 s of black hole between the triggers and the apiserver (connections open, nothing
    answered), then the network heals. Jobs end during the cut and after it; one wait's deadline
    falls inside it. Every wait ends with the right outcome, none later than its deadline."""
    from kubernetes import client

    from airflow_batchjob.core.group import GroupGoal
    from airflow_batchjob.triggers.job import JobTrigger
    from airflow_batchjob.triggers.jobgroup import JobGroupTrigger

    proxy = FaultProxy(local_cluster).start()
    token = lc.airflow_identity(local_cluster)
    kubeconfig = lc.write_client_kubeconfig(local_cluster, tmp_path / "cut.kubeconfig", token, proxy.url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_CUT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": kubeconfig}}),
    )
    during, after = tmp_path / "during", tmp_path / "after"
    during.mkdir()
    after.mkdir()
    batch = client.BatchV1Api(api_client)

    def job(name: str, gate: Path, exit_code: int = 0, labels: dict[str, str] | None = None) -> str:
        body = script_template(
            f"until [ -e /out/go ]; do sleep 0.2; done; exit {exit_code}", gate, backoffLimit=0
        )
        body["metadata"] = {"name": name, "labels": labels or {}}
        return str(batch.create_namespaced_job(namespace, body).metadata.uid)

    uids = {
        "ends-during": job("ends-during", during),
        "fails-during": job("fails-during", during, exit_code=3),
        "ends-after": job("ends-after", after),
        "times-out": job("times-out", tmp_path),  # never released
        **{f"member-{i}": job(f"member-{i}", during, labels={"group": "cut"}) for i in range(3)},
    }
    deadline = time.time() + 300

    def trigger(name: str, until: float) -> JobTrigger:
        return JobTrigger(
            namespace=namespace,
            job_name=name,
            job_uid=uids[name],
            kubernetes_conn_id="kubernetes_cut",
            deadline=until,
        )

    triggers: dict[str, Any] = {
        n: trigger(n, deadline) for n in ("ends-during", "fails-during", "ends-after")
    }
    triggers["group"] = JobGroupTrigger(
        namespace=namespace,
        label_selector="group=cut",
        goal=GroupGoal(expected=3).to_dict(),
        kubernetes_conn_id="kubernetes_cut",
        deadline=deadline,
    )
    events: dict[str, tuple[float, dict[str, Any]]] = {}
    marks: dict[str, float] = {}

    async def wait(name: str) -> None:
        async for ev in triggers[name].run():
            events[name] = (time.time(), dict(ev.payload))
            return

    def under_way() -> bool:
        watching = proxy.requests("GET", r"/jobs$", query=r"(?i)watch=true")
        return bool(watching) and all(j.status.ready for j in jobs_in(api_client, namespace))

    async def main() -> None:
        tasks = [asyncio.ensure_future(wait(n)) for n in triggers]
        limit = time.monotonic() + 180
        while not under_way():  # the waits watch, every Pod runs
            assert time.monotonic() < limit and not events, ("not under way", events)
            await asyncio.sleep(0.2)
        proxy.hold()
        marks["hold"] = time.time()
        # A wait that starts inside the cut (its first list unanswered), due in 30 s.
        triggers["times-out"] = trigger("times-out", marks["hold"] + 30)
        tasks.append(asyncio.ensure_future(wait("times-out")))
        await asyncio.sleep(5)
        release(during)  # these Jobs end while the triggers hear nothing
        await asyncio.sleep(55)
        proxy.restore()
        marks["restore"] = time.time()
        release(after)
        await asyncio.wait_for(asyncio.gather(*tasks), deadline - time.time() + 30)

    try:
        asyncio.run(main())
    finally:
        proxy.stop()
        release(tmp_path)
    state = {n: e["status"] for n, (_, e) in events.items()}
    jobs = {n: (e.get("job") or {}).get("state") for n, (_, e) in events.items() if n != "times-out"}
    late = {n: round(t - marks["restore"], 1) for n, (t, _) in events.items()}
    fault_report(
        f"apiserver black-holed 60 s for 5 waits ({proxy.held} requests held); outcomes {state} {jobs}; "
        f"seconds after the network healed {late}"
    )
    assert state == {
        "ends-during": "met",
        "fails-during": "met",  # the goal (the outcome decided) is met: the Job failed
        "ends-after": "met",
        "times-out": "timeout",
        "group": "met",
    }, events
    assert jobs == {
        "ends-during": "succeeded",
        "fails-during": "failed",
        "ends-after": "succeeded",
        "group": None,
    }
    assert events["group"][1]["counts"]["succeeded"] == 3, events["group"]
    # The deadline inside the cut fires on time, not when the network heals.
    assert events["times-out"][0] < triggers["times-out"].deadline + 5 < marks["restore"], (events, marks)
    assert not any(t < marks["restore"] for n, (t, _) in events.items() if n != "times-out"), events
    assert all(t <= deadline for t, _ in events.values())
    assert sorted(j.metadata.uid for j in jobs_in(api_client, namespace)) == sorted(uids.values())

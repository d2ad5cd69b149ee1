"""What only a real node shows: kubelet and containerd, images, PID 1 and SIGTERM, the kernel's
OOM killer, the kubelet's log rotation (issue 18).

Runs when the cluster's node is the real one (``python -m localcluster up --node real``; the
real-node lane of ``scripts/test.sh``); skipped on the node agent.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import localcluster.cluster as lc
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.triggers.job import wait_for_job
from localcluster import images, realnode
from tests.cluster.helpers import new_dag, pods_in

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


@pytest.fixture(autouse=True)
def _real_node_only(local_cluster: lc.State) -> None:
    if local_cluster.node != "real":
        pytest.skip("the cluster's node is the node agent, not kubelet + containerd")


def test_the_node_is_kubelet_and_containerd(api_client: Any) -> None:
    node = client.CoreV1Api(api_client).read_node(lc.NODE_NAME)
    assert node.status.node_info.kubelet_version == lc.K8S_VERSION
    assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == ["10.88.0.1"]


def test_pid_1_gets_sigterm_when_the_job_is_deleted(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """The container's own process is PID 1 in its PID namespace; deleting the Job stops it with
    SIGTERM within the grace period (the node agent only imitates this)."""
    tmp_path.chmod(0o777)
    # "$$$$": Kubernetes turns "$$" in a command into "$", so the shell sees "$$" (its own pid).
    script = "trap 'echo term > /out/signal; exit 0' TERM; echo $$$$ > /out/pid; while true; do sleep 1; done"
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "sleeper"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 20,
                        "volumes": [{"name": "out", "hostPath": {"path": str(tmp_path)}}],
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox:1.36",
                                "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                            }
                        ],
                    }
                }
            },
        },
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "pid").exists():
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.2)
    assert (tmp_path / "pid").read_text().strip() == "1"
    batch.delete_namespaced_job("sleeper", namespace, propagation_policy="Foreground")
    deadline = time.monotonic() + 30
    while not (tmp_path / "signal").exists():
        assert time.monotonic() < deadline, "no SIGTERM reached PID 1"
        time.sleep(0.2)
    assert (tmp_path / "signal").read_text().strip() == "term"


def test_worker_image_runs_the_indexed_worker(run_dag: Any, api_client: Any, namespace: str) -> None:
    """The Indexed worker runs from the worker image built here (no host Python involved)."""
    with new_dag("real_worker_image") as dag:
        IndexedJobOperator(
            task_id="squares",
            namespace=namespace,
            image=images.WORKER_NAMES[0],
            items=["2", "3"],
            cmds=["sh", "-c", 'n=$(cat); echo $((n * n)) > "$BATCHJOB_RESULT_FILE"'],
            deferrable=False,
        )
    out = run_dag(dag)["squares"]
    assert out["state"] == "success"
    assert [r["result"] for r in out["xcom"]["return_value"]["items"]] == [4, 9]
    pods = pods_in(api_client, namespace)
    assert {p.spec.containers[0].image for p in pods} == {images.WORKER_NAMES[0]}
    # By content digest: "sha256:..." when imported, "<repository>@sha256:..." when pulled.
    assert all(re.search(r"sha256:[0-9a-f]{64}$", p.status.container_statuses[0].image_id) for p in pods)


def test_untagged_images_are_pulled_from_the_local_registry(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    """``busybox`` means ``busybox:latest``, which the kubelet always pulls: from our registry."""
    with new_dag("real_latest") as dag:
        BatchJobOperator(
            task_id="latest", namespace=namespace, image="busybox", cmds=["true"], deferrable=False
        )
    assert run_dag(dag)["latest"]["state"] == "success"
    (pod,) = pods_in(api_client, namespace)
    assert pod.spec.containers[0].image_pull_policy == "Always"


def test_an_image_not_built_here_fails_with_a_real_pull_error(
    run_dag: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("real_pull_error") as dag:
        BatchJobOperator(
            task_id="pull",
            namespace=namespace,
            image="registry.example/batch/app:1",
            cmds=["true"],
            pending_timeout=15,
            diagnose_interval=3,
            deferrable=False,
        )
    assert run_dag(dag)["pull"]["state"] == "failed"
    out = capfd.readouterr().out
    assert "ErrImagePull" in out or "ImagePullBackOff" in out
    assert "not found" in out  # our registry's 404: the pull never left the machine


def test_a_container_over_its_memory_limit_is_oomkilled(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The kernel kills the container at its cgroup's limit; the task names the reason."""
    with new_dag("real_oom") as dag:
        BatchJobOperator(
            task_id="hungry",
            namespace=namespace,
            image=images.WORKER_NAMES[0],
            cmds=["python3", "-c", "print('allocating', flush=True); x = bytearray(512 * 2**20)"],
            container_resources={"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
            backoff_limit=0,
            deferrable=False,
        )
    assert run_dag(dag)["hungry"]["state"] == "failed"
    (pod,) = pods_in(api_client, namespace)
    term = pod.status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("OOMKilled", 137)
    out = capfd.readouterr().out
    assert re.search(r"container main exited 137 \(OOMKilled\)", out), out[-3000:]
    assert "allocating" in out


def test_live_logs_follow_across_the_kubelets_log_rotation(api_client: Any, namespace: str) -> None:
    """The Pod writes several times the kubelet's ``containerLogMaxSize``; the followed stream
    crosses each rotation and the task log holds every line, in order."""
    lines_per_second, seconds, width = 200, 25, 1000
    total = lines_per_second * seconds
    assert total * width > 3 * realnode.LOG_MAX_BYTES  # at least three rotations
    script = (
        f"pad=$(head -c {width - 12} /dev/zero | tr '\\0' x); i=1; "
        f"while [ $i -le {total} ]; do echo line-$i-$pad; "
        f"[ $((i % {lines_per_second // 10})) -eq 0 ] && sleep 0.1; i=$((i+1)); done"
    )
    spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
    }
    job = client.BatchV1Api(api_client).create_namespaced_job(
        namespace, {"metadata": {"name": "rotating"}, "spec": {"template": {"spec": spec}}}
    )
    lines: list[str] = []
    logs = {"containers": None, "max_streams": 1, "max_lines": total + 10, "tail_lines": 10}
    event = asyncio.run(
        asyncio.wait_for(
            wait_for_job(
                namespace=namespace,
                job_name="rotating",
                job_uid=job.metadata.uid,
                progress=lines.append,
                logs=logs,
            ),
            300,
        )
    )
    assert event["job"]["state"] == "succeeded"
    got = [int(m.group(1)) for x in lines if (m := re.search(r"\] line-(\d+)-", x))]
    missing = sorted(set(range(1, total + 1)) - set(got))
    assert not missing and got == sorted(got), (len(got), missing[:20])

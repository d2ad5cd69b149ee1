"""The worker injected into an image without Python (busybox), on the real node (issue 31).

The operators add an init container from the worker image that copies the static Go worker into
an emptyDir, and run the program under it in busybox unchanged (``core/inject.py``). The same
checks as with the worker image: results to XCom, live logs, each item once after a SIGKILL and
after a Pod deletion (SIGTERM), TLS certificates from the Job's Secret, a read-only root
filesystem under Pod Security's restricted profile.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import localcluster.cluster as lc
from airflow_batchjob.core import inject
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from tests.cluster.helpers import PREFILLED_QUEUE, new_dag, pods_in, results

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
BUSYBOX = "busybox:1.36"


@pytest.fixture(autouse=True)
def _real_node_only(local_cluster: lc.State) -> None:
    if local_cluster.node != "real":
        pytest.skip("the injected worker runs in real containers (the node agent runs host processes)")


def busybox_template(out: Path) -> dict[str, Any]:
    return {
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
                    "containers": [
                        {
                            "name": "main",
                            "image": BUSYBOX,
                            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                        }
                    ],
                }
            }
        }
    }


def assert_injected(pods: list[Any]) -> None:
    assert pods
    for p in pods:
        assert [c.name for c in p.spec.init_containers or []] == [inject.INIT_CONTAINER]
        assert p.spec.containers[0].image == BUSYBOX
        assert p.spec.containers[0].command[0] == inject.INJECTED_COMMAND[0]


def test_indexed_in_busybox_results_logs_restricted_read_only(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    """Item i reaches ``rev`` in busybox; its result reaches XCom; the Pod log is the program's
    output; a read-only root filesystem and the restricted profile hold."""
    items = ["hello", "it's $(id) `x`", '{"first-name": "Ada"}']
    result = '{\\"i\\": $ITEM_INDEX, \\"name\\": \\"${FIRST_NAME:-}\\"}'
    script = f'rev; echo; echo "{result}" > "$BATCHJOB_RESULT_FILE"'
    with new_dag("injected_indexed") as dag:
        IndexedJobOperator(
            task_id="rev",
            namespace=namespace,
            image=BUSYBOX,
            items=items,
            cmds=["sh", "-c", script],
            parallelism=3,
            pod_security="restricted",
            container_security_context={"readOnlyRootFilesystem": True},
            deferrable=False,
        )
    out = run_dag(dag)["rev"]
    assert out["state"] == "success"
    rows = out["xcom"]["return_value"]["items"]
    assert [r["result"] for r in rows] == [
        {"i": 0, "name": ""},
        {"i": 1, "name": ""},
        {"i": 2, "name": "Ada"},
    ]
    pods = pods_in(api_client, namespace)
    assert_injected(pods)
    core = client.CoreV1Api(api_client)
    logs = {p.metadata.annotations["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    for i, text in enumerate(items):
        raw = core.read_namespaced_pod_log(
            logs[str(i)].metadata.name, namespace, container="main", _preload_content=False
        )
        log = raw.data.decode()
        assert log.strip() == text[::-1], "the Pod log is the program's own output"
    for p in pods:
        assert p.spec.security_context.run_as_user == 65532
        assert p.spec.containers[0].security_context.read_only_root_filesystem is True


def test_indexed_exit_code_of_the_program(run_dag: Any, namespace: str) -> None:
    with new_dag("injected_indexed_exit") as dag:
        IndexedJobOperator(
            task_id="codes",
            namespace=namespace,
            image=BUSYBOX,
            items=["0", "3"],
            cmds=["sh", "-c", 'exit "$(cat)"'],
            backoff_limit_per_index=0,
            retries=0,
            deferrable=False,
        )
    out = run_dag(dag)["codes"]
    assert out["state"] == "failed"


def host_pid_of_worker(pod: str) -> int | None:
    """The host pid of the injected worker (PID 1 of Pod ``pod``'s container)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0] != inject.INJECTED_COMMAND[0].encode():
                continue
            if f"HOSTNAME={pod}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


def wait_file(path: Path, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.1)
    return path.read_text().strip()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_queue_in_busybox_sigkill_and_pod_deletion_lose_nothing(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, broker: str
) -> None:
    """The worker holding 'victim' is SIGKILLed (Redis: its lease expires and another worker
    takes the item; RabbitMQ: the broker requeues the unacknowledged message); the Pod holding
    'term' is deleted (SIGTERM: the item is released at once). Each item is recorded once and
    returns one result."""
    tmp_path.chmod(0o777)
    items = ["a", "victim", "b", "term", "c", "d"]
    program = (
        'if [ "$ITEM" = victim ] || [ "$ITEM" = term ]; then '
        'if mkdir "/out/$ITEM.lock" 2>/dev/null; then '
        'echo "$HOSTNAME" > "/out/$ITEM.pod"; sleep 120; fi; fi; '
        'printf "%s\\n" "$ITEM" >> /out/results; echo "\\"done $ITEM\\"" > "$BATCHJOB_RESULT_FILE"'
    )
    mode: dict[str, Any] = (
        {"mode": "variable", "lease_seconds": 3}
        if broker == "redis"
        else {"mode": "pod_per_item", "count": "6"}
    )
    with new_dag(f"injected_{broker}_kills") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker=broker, items=items)  # type: ignore[arg-type]
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            parallelism=2,
            **mode,
            queue_name=PREFILLED_QUEUE,
            job_template=busybox_template(tmp_path),
            cmds=["sh", "-c", program],
        )
        prefill >> consume
    done: dict[str, bool] = {}

    def kill() -> None:
        pod = wait_file(tmp_path / "victim.pod")
        deadline = time.monotonic() + 60
        while pod and time.monotonic() < deadline:
            pid = host_pid_of_worker(pod)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)  # the worker, mid-item: no release, the lease must expire
                done["kill"] = True
                return
            time.sleep(0.1)

    def delete() -> None:
        pod = wait_file(tmp_path / "term.pod")
        if pod:
            client.CoreV1Api(api_client).delete_namespaced_pod(pod, namespace)  # graceful: SIGTERM
            done["delete"] = True

    threads = [threading.Thread(target=kill), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    result = run_dag(dag)
    for t in threads:
        t.join()
    assert done == {"kill": True, "delete": True}, "the victims were never picked up"
    assert result["consume"]["state"] == "success"
    assert results(tmp_path) == Counter(items), "0 lost, none twice"
    returned = result["consume"]["xcom"]["return_value"]["results"]
    assert sorted(r["item"] for r in returned) == sorted(items)
    assert all(r["result"] == f"done {r['item']}" for r in returned)
    assert_injected(pods_in(api_client, namespace))


def test_redis_over_tls_from_the_jobs_secret_restricted_read_only(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    """rediss:// with the CA and client certificate from the Job's Secret (0440, fsGroup), as
    uid 65532 with a read-only root filesystem: the injected worker reads them as Python does."""
    items = ["x", "y", "z"]
    with new_dag("injected_redis_tls") as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=items, conn_id="redis_tls")
        consume = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="variable",
            parallelism=1,
            conn_id="redis_tls",
            queue_name=PREFILLED_QUEUE,
            image=BUSYBOX,
            cmds=["sh", "-c", 'echo "\\"$ITEM\\"" > "$BATCHJOB_RESULT_FILE"'],
            pod_security="restricted",
            container_security_context={"readOnlyRootFilesystem": True},
        )
        prefill >> consume
    result = run_dag(dag)
    assert result["consume"]["state"] == "success", result
    assert sorted(r["result"] for r in result["consume"]["xcom"]["return_value"]["results"]) == items
    assert_injected(pods_in(api_client, namespace))

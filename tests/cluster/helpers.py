"""Shared by the cluster and fault tests: DAGs, Job and Pod templates, and reading what Pods wrote.

Airflow and the project's operators are imported inside the DAG builders only, so the control-plane
tests, which use nothing but the plain Kubernetes client, do not depend on them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
from kubernetes import client

if TYPE_CHECKING:
    from airflow.sdk import DAG

START = pendulum.datetime(2024, 1, 1, tz="UTC")
# The queue the pre-fill task made, for a consumer given no fixed queue name.
PREFILLED_QUEUE = "{{ ti.xcom_pull(task_ids='prefill')['queue'] }}"


def new_dag(dag_id: str, **kwargs: Any) -> DAG:
    """A DAG that runs only when a test runs it (no schedule, no catch-up)."""
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def worker_template(out: Path, restart_policy: str = "Never", **spec: Any) -> dict[str, Any]:
    """A queue worker Pod writing to ``out`` (a hostPath: the node agent runs Pods on this machine)."""
    return {
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": restart_policy,
                    "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "worker",
                            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                        }
                    ],
                }
            },
        }
    }


def script_template(
    script: str, out: Path | None = None, image: str = "busybox:1.36", **spec: Any
) -> dict[str, Any]:
    """A Job template running ``script`` in container ``main``, with ``out`` (a hostPath) at ``/out``."""
    container: dict[str, Any] = {"name": "main", "image": image, "command": ["sh", "-c", script]}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if out is not None:
        container["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
        pod["volumes"] = [{"name": "out", "hostPath": {"path": str(out)}}]
    return {"spec": {"template": {"spec": pod}, **spec}}


def sleeper(name: str, seconds: int) -> dict[str, Any]:
    """A whole Job (for the plain client) whose one Pod sleeps ``seconds``."""
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", str(seconds)]}],
                }
            }
        },
    }


def held(name: str, gate: Path) -> dict[str, Any]:
    """A whole Job whose one Pod runs until the test creates ``gate/go`` (``release(gate)``).

    For a test that must catch a Job in flight: a fixed sleep is outrun by a slow machine, a held
    Job is not, and it ends as soon as the test has seen what it came for.
    """
    body = script_template("until [ -e /out/go ]; do sleep 0.2; done", out=gate, image="busybox")
    return {"metadata": {"name": name}, **body}


def release(gate: Path) -> None:
    """Let the Jobs ``held`` on ``gate`` end."""
    (gate / "go").touch()


def queue_dag(
    dag_id: str,
    namespace: str,
    broker: str,
    items: list[str],
    out: Path,
    script: str,
    queue_name: str | None = None,
    restart_policy: str = "Never",
    **consume: Any,
) -> DAG:
    """Pre-fill ``items`` on ``broker``, then consume them with ``script`` (``consume``: mode and sizing)."""
    from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator

    with new_dag(dag_id) as dag:
        prefill = QueuePrefillOperator(
            task_id="prefill",
            broker=broker,  # type: ignore[arg-type]
            items=items,
            queue_name=queue_name,
        )
        job = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            queue_name=queue_name or PREFILLED_QUEUE,
            job_template=worker_template(out, restart_policy=restart_policy),
            cmds=["sh", "-c", script],
            **consume,
        )
        prefill >> job
    return dag


def results(out: Path) -> Counter[str]:
    """Each item the workers recorded in ``out/results``, with how many times."""
    path = out / "results"
    return Counter(path.read_text().splitlines()) if path.exists() else Counter()


def span_events(*files: Path) -> list[tuple[float, int]]:
    """The ``<time> 1`` / ``<time> -1`` lines Pods wrote when they started and ended, in time order."""
    return sorted(
        (float(t), int(d)) for f in files for t, d in (line.split() for line in f.read_text().splitlines())
    )


def peak(events: list[tuple[float, int]]) -> int:
    """The most Pods running at once, from ``span_events``."""
    running = top = 0
    for _, delta in events:
        running += delta
        top = max(top, running)
    return top


def jobs_in(api_client: Any, ns: str, selector: str = "") -> list[Any]:
    return client.BatchV1Api(api_client).list_namespaced_job(ns, label_selector=selector).items


def pods_in(api_client: Any, ns: str, selector: str = "") -> list[Any]:
    return client.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=selector).items


def pods_of_job(api_client: Any, ns: str, job: str) -> list[Any]:
    return pods_in(api_client, ns, f"batch.kubernetes.io/job-name={job}")


def pod_log(api_client: Any, ns: str, pod: str) -> str:
    """The Pod's log through the apiserver (raw: kubernetes 36's client mangles non-JSON text)."""
    resp = client.CoreV1Api(api_client).read_namespaced_pod_log(pod, ns, _preload_content=False)
    return resp.data.decode()

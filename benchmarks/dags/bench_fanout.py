"""The DAGs of benchmarks/fanout.py: the same items fanned out by ours and by the peer.

Sizes and namespaces come from the environment the benchmark gives the Airflow services
(``BENCH_*``). Every Pod carries the toleration and nodeSelector of the kwok Nodes
(``localcluster/kwok.py``), so it runs no process and succeeds after kwok's fixed delay.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

ITEMS = int(os.environ.get("BENCH_ITEMS", "3"))
PEER_SIZES = [int(x) for x in os.environ.get("BENCH_PEER_SIZES", "2").split(",") if x]
LARGE_ITEMS = int(os.environ.get("BENCH_LARGE_ITEMS", "5"))
LARGE_PARALLELISM = int(os.environ.get("BENCH_LARGE_PARALLELISM", "500"))
KWOK_LABEL = "batchjob.local/kwok"  # localcluster.kwok.LABEL (not imported: keeps parsing cheap)
NODE_SELECTOR = {KWOK_LABEL: "true"}
TOLERATIONS = [{"key": KWOK_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
POD_SECONDS = os.environ.get("BENCH_POD_SECONDS", "1")
ANNOTATIONS = {"pod-complete.stage.kwok.x-k8s.io/delay": f"{POD_SECONDS}s"}  # kwok's run time per Pod
COMMAND = ["sh", "-c", "echo $ITEM"]
IMAGE = "busybox:1.36"


def items(n: int) -> list[str]:
    return [f"item-{i:05d}" for i in range(n)]


def job_template(parallelism: int | None = None) -> dict[str, object]:
    spec: dict[str, object] = {
        "template": {
            "metadata": {"annotations": ANNOTATIONS},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": NODE_SELECTOR,
                "tolerations": TOLERATIONS,
                "containers": [{"name": "main", "image": IMAGE}],
            },
        }
    }
    if parallelism:
        spec["parallelism"] = parallelism
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": spec}


NAMESPACE = "{{ dag_run.conf['namespace'] }}"  # a fresh namespace per run, made by the benchmark


if os.environ.get("BENCH_ENABLE", "") != "":
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    from airflow_batchjob.operators.indexed import IndexedJobOperator
    from airflow_batchjob.operators.jobgroup import JobGroupOperator

    with DAG(
        "bench_fanout_jobgroup", schedule=None, catchup=False, doc_md="ours: one task, one Job per item"
    ):
        JobGroupOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
        )

    with DAG(
        "bench_fanout_jobgroup_nodiag",
        schedule=None,
        catchup=False,
        doc_md="ours, without the wait diagnostics (to show their cost)",
    ):
        JobGroupOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            diagnostics=False,
        )

    with DAG("bench_fanout_indexed", schedule=None, catchup=False, doc_md="ours: one Indexed Job"):
        IndexedJobOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            parallelism=ITEMS,
        )

    for n in PEER_SIZES:
        with DAG(
            f"bench_fanout_peer{n}", schedule=None, catchup=False, doc_md="the peer: a mapped task per item"
        ):
            KubernetesJobOperator.partial(
                task_id="fanout",
                namespace=NAMESPACE,
                image=IMAGE,
                cmds=COMMAND,
                node_selector=NODE_SELECTOR,
                tolerations=TOLERATIONS,
                annotations=ANNOTATIONS,
                wait_until_job_complete=True,
                deferrable=True,
                get_logs=False,  # kwok's Nodes serve no logs; ours reads none on success either
            ).expand(env_vars=[{"ITEM": it} for it in items(n)])

    with DAG("bench_indexed_large", schedule=None, catchup=False, doc_md="ours: a large Indexed Job"):
        IndexedJobOperator(
            task_id="indexed",
            items=items(LARGE_ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            parallelism=min(LARGE_PARALLELISM, LARGE_ITEMS),
        )

"""benchmarks/fanout.py, the peer: KubernetesJobOperator.partial().expand(), one mapped task per item.

One DAG per size in BENCH_PEER_SIZES. Deferrable, wait_until_job_complete=True, its defaults
otherwise except get_logs=False: kwok's Nodes serve no logs (ours reads none on success either).
"""

from __future__ import annotations

from airflow.sdk import DAG
from bench_common import (
    ANNOTATIONS,
    COMMAND,
    ENABLED,
    IMAGE,
    NAMESPACE,
    NODE_SELECTOR,
    PEER_SIZES,
    TOLERATIONS,
    items,
)

if ENABLED:
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    for n in PEER_SIZES:
        with DAG(f"bench_fanout_peer{n}", schedule=None, catchup=False, doc_md=__doc__):
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
                get_logs=False,
            ).expand(env_vars=[{"ITEM": it} for it in items(n)])

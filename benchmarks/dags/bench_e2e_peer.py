"""benchmarks/end_to_end.py, the peer: cncf.kubernetes' ``KubernetesJobOperator``.

``deferrable=True`` and ``wait_until_job_complete=True``, its defaults otherwise (``job_poll_interval``
10 s, ``get_logs=True``, the Pods deleted once it finished). One single-task DAG per Job length
(``bench_e2e_peer_<n>s``) and one of ``BENCH_E2E_FANOUT`` mapped tasks of ``sleep 1``
(``bench_e2e_peer_fanout``). Defined only when the benchmark sets ``BENCH_E2E_NAMESPACE``.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG

NAMESPACE = os.environ.get("BENCH_E2E_NAMESPACE", "")
LENGTHS = [int(x) for x in os.environ.get("BENCH_E2E_LENGTHS", "1,8,20,45").split(",") if x]
FANOUT = int(os.environ.get("BENCH_E2E_FANOUT", "60"))
IMAGE = "busybox:1.36"

if NAMESPACE:
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    PEER: dict[str, Any] = {
        "namespace": NAMESPACE,
        "image": IMAGE,
        "wait_until_job_complete": True,
        "deferrable": True,
    }
    for seconds in LENGTHS:
        with DAG(f"bench_e2e_peer_{seconds}s", schedule=None, catchup=False, doc_md=__doc__):
            KubernetesJobOperator(task_id="job", cmds=["sleep", str(seconds)], **PEER)

    with DAG("bench_e2e_peer_fanout", schedule=None, catchup=False, doc_md=__doc__):
        KubernetesJobOperator.partial(task_id="job", cmds=["sleep", "1"], **PEER).expand(
            env_vars=[{"ITEM": str(i)} for i in range(FANOUT)]
        )

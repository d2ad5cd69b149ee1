"""benchmarks/end_to_end.py, ours: ``BatchJobOperator`` with its defaults (deferrable, ``defer_after`` 5 s).

One single-task DAG per Job length (``bench_e2e_ours_<n>s``, a busybox container sleeping n
seconds) and one DAG of ``BENCH_E2E_FANOUT`` mapped tasks, each a Job of ``sleep 1`` with
``defer_after=0`` so that every one defers (``bench_e2e_ours_fanout``). Defined only when the
benchmark sets ``BENCH_E2E_NAMESPACE`` (the namespace it made for the run).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

NAMESPACE = os.environ.get("BENCH_E2E_NAMESPACE", "")
LENGTHS = [int(x) for x in os.environ.get("BENCH_E2E_LENGTHS", "1,8,20,45").split(",") if x]
FANOUT = int(os.environ.get("BENCH_E2E_FANOUT", "60"))
IMAGE = "busybox:1.36"

if NAMESPACE:
    from airflow_batchjob.operators.job import BatchJobOperator

    for seconds in LENGTHS:
        with DAG(f"bench_e2e_ours_{seconds}s", schedule=None, catchup=False, doc_md=__doc__):
            BatchJobOperator(task_id="job", namespace=NAMESPACE, image=IMAGE, cmds=["sleep", str(seconds)])

    with DAG("bench_e2e_ours_fanout", schedule=None, catchup=False, doc_md=__doc__):
        BatchJobOperator.partial(
            task_id="job", namespace=NAMESPACE, image=IMAGE, cmds=["sleep", "1"], defer_after=0
        ).expand(env=[{"ITEM": str(i)} for i in range(FANOUT)])

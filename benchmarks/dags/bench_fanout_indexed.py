"""benchmarks/fanout.py, ours: IndexedJobOperator over the items (one Indexed Job, parallelism N)."""

from __future__ import annotations

from airflow.sdk import DAG
from bench_common import COMMAND, ENABLED, ITEMS, NAMESPACE, items, job_template

if ENABLED:
    from airflow_batchjob.operators.indexed import IndexedJobOperator

    with DAG("bench_fanout_indexed", schedule=None, catchup=False, doc_md=__doc__):
        IndexedJobOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            parallelism=ITEMS,
        )

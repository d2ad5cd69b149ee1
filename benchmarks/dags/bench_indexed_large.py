"""benchmarks/fanout.py, ours: a large Indexed Job (task start to result XCom, XCom size)."""

from __future__ import annotations

from airflow.sdk import DAG
from bench_common import COMMAND, ENABLED, LARGE_ITEMS, LARGE_PARALLELISM, NAMESPACE, items, job_template

if ENABLED:
    from airflow_batchjob.operators.indexed import IndexedJobOperator

    with DAG("bench_indexed_large", schedule=None, catchup=False, doc_md=__doc__):
        IndexedJobOperator(
            task_id="indexed",
            items=items(LARGE_ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            parallelism=min(LARGE_PARALLELISM, LARGE_ITEMS),
        )

    with DAG("bench_indexed_large_nodiag", schedule=None, catchup=False, doc_md=__doc__):
        IndexedJobOperator(
            task_id="indexed",
            items=items(LARGE_ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            parallelism=min(LARGE_PARALLELISM, LARGE_ITEMS),
            diagnostics=False,  # context: what the wait diagnostics cost
        )

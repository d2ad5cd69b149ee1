"""benchmarks/fanout.py, ours: JobGroupOperator, one task, one Job per item (kwok Pods)."""

from __future__ import annotations

from airflow.sdk import DAG
from bench_common import COMMAND, ENABLED, ITEMS, NAMESPACE, items, job_template

if ENABLED:
    from airflow_batchjob.operators.jobgroup import JobGroupOperator

    with DAG("bench_fanout_jobgroup", schedule=None, catchup=False, doc_md=__doc__):
        JobGroupOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
        )

    with DAG("bench_fanout_jobgroup_nodiag", schedule=None, catchup=False, doc_md=__doc__):
        JobGroupOperator(
            task_id="fanout",
            items=items(ITEMS),
            namespace=NAMESPACE,
            job_template=job_template(),
            cmds=COMMAND,
            diagnostics=False,  # context: what the wait diagnostics cost
        )

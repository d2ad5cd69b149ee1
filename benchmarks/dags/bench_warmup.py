"""benchmarks/fanout.py runs this first, so no contender pays Airflow's first-task warm-up."""

from __future__ import annotations

from airflow.sdk import DAG, task
from bench_common import ENABLED

if ENABLED:
    with DAG("bench_warmup", schedule=None, catchup=False, doc_md=__doc__):

        @task
        def warm() -> None:
            return None

        warm()

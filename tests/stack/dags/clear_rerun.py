"""One short Job per operator, for "a user's clear of a task that succeeded runs it again"."""

import os

import pendulum
from airflow.sdk import DAG

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator

NS = os.environ.get("BATCHJOB_TEST_NAMESPACE", "default")

with DAG(
    "clear_rerun",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    BatchJobOperator(task_id="job", namespace=NS, image="busybox", cmds=["true"])
    JobGroupOperator(task_id="group", namespace=NS, image="busybox", cmds=["true"], items=["a", "b"])
    IndexedJobOperator(task_id="indexed", namespace=NS, image="worker", cmds=["cat"], items=["x", "y"])

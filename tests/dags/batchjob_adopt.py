"""DAG used by the adoption tests through `airflow tasks test` (namespace from the environment)."""

import os

import pendulum
from airflow.sdk import DAG

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator

SETTINGS = {
    "namespace": os.environ.get("BATCHJOB_TEST_NAMESPACE", "default"),
    "image": "busybox:1.36",
    # A shell as PID 1 ignores SIGTERM unless it traps it: without the trap every deleted Pod
    # would sit out its 30 s grace period on a real node.
    "cmds": ["sh", "-c", "trap 'exit 143' TERM; echo started; sleep ${SLEEP_SECONDS:-4} & wait; echo done"],
    "env": {"SLEEP_SECONDS": os.environ.get("BATCHJOB_TEST_SLEEP", "4")},
    "deferrable": os.environ.get("BATCHJOB_TEST_DEFERRABLE", "false") == "true",
}

with DAG("batchjob_adopt", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    BatchJobOperator(task_id="sleepy", **SETTINGS)
    JobGroupOperator(task_id="sleepy_group", items=["a", "b", "c"], **SETTINGS)

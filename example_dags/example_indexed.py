"""Indexed Job with static work assignment: item i to the Pod with JOB_COMPLETION_INDEX = i."""

from _common import DEFAULT_ARGS, IMAGE, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.sensors.job import JobSensor

with DAG(
    "example_indexed",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Indexed Job** (Kubernetes' "Indexed Job for Parallel Processing with Static Work
    Assignment"): the unchanged program `rev` gets item i on stdin in Pod i. Items travel in a
    ConfigMap owned by the Job. The result maps each index back to its item; a retry runs only
    the failed or never-run items. The second half sequences an Indexed Job after a sensor.
    """,
) as dag:
    rev = IndexedJobOperator(
        task_id="rev",
        namespace=NAMESPACE,
        items=["foo", "bar", "baz", "qux", "xyz"],
        image=WORKER_IMAGE,
        cmds=["rev"],
        parallelism=3,
        backoff_limit_per_index=1,
    )
    prepare = BatchJobOperator(
        task_id="prepare", namespace=NAMESPACE, image=IMAGE, cmds=["sh", "-c", "echo preparing inputs"]
    )
    ready = JobSensor(
        task_id="inputs_ready",
        namespace=NAMESPACE,
        job_name="{{ ti.xcom_pull(task_ids='prepare', key='job_name') }}",
        condition="Complete",
        timeout=600,
    )
    after = IndexedJobOperator(
        task_id="per_item_after_sensor",
        namespace=NAMESPACE,
        items=[{"name": "north", "rows": 10}, {"name": "south", "rows": 20}],
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'echo "region $NAME has $ROWS rows"'],
    )
    prepare >> ready >> after

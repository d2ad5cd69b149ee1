"""A nightly pipeline sequencing every pattern: queue, sensor, Indexed Job, fan-out."""

from _common import DEFAULT_ARGS, IMAGE, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from airflow_batchjob.sensors.job import JobSensor

PARTITIONS = ["eu-west", "eu-north", "us-east", "us-west", "ap-south"]

with DAG(
    "example_nightly_pipeline",
    schedule="@daily",
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,  # the publish step's items render to a list, not its text
    tags=["batchjob", "example"],
    doc_md="""
    **A nightly pipeline.** Ingest: partitions are queued in Redis and drained by workers.
    Gate: a sensor waits until the ingest Job reports `Complete`. Transform: an Indexed Job
    processes partition i in Pod i. Publish: one Job per partition from one template, at most
    two at a time. Every step adopts its Jobs on retry and re-runs only what failed.
    """,
) as dag:
    queue = QueuePrefillOperator(task_id="queue_partitions", broker="redis", items=PARTITIONS)
    ingest = QueueJobOperator(
        task_id="ingest",
        namespace=NAMESPACE,
        mode="variable",
        queue_name="{{ ti.xcom_pull(task_ids='queue_partitions')['queue'] }}",
        parallelism=2,
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'echo "ingesting $ITEM for run {{ run_id }}"'],
    )
    ingested = JobSensor(
        task_id="ingest_complete",
        namespace=NAMESPACE,
        job_name="{{ ti.xcom_pull(task_ids='ingest', key='job_name') }}",
        condition="Complete",
        timeout=900,
    )
    transform = IndexedJobOperator(
        task_id="transform",
        namespace=NAMESPACE,
        items=PARTITIONS,
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'echo "transforming partition $ITEM_INDEX: $ITEM"'],
        parallelism=3,
        backoff_limit_per_index=1,
    )
    publish = JobGroupOperator(
        task_id="publish",
        namespace=NAMESPACE,
        items="{{ ti.xcom_pull(task_ids='transform')['items'] | map(attribute='item') | list }}",
        image=IMAGE,
        cmds=["sh", "-c", 'echo "publishing $ITEM"'],
        max_active_jobs=2,
    )
    queue >> ingest >> ingested >> transform >> publish

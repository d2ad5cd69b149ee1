"""Work queue, one Pod per item: pre-fill RabbitMQ, then a Job with completions = N."""

from _common import DEFAULT_ARGS, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG

from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator

with DAG(
    "example_queue_rabbitmq",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Coarse parallel processing using a work queue** (Kubernetes' RabbitMQ example): a pre-fill
    task puts the items in a durable queue unique to this run; a Job with `completions = N` and
    `parallelism = 2` runs Pods that each take one message, run the unchanged program on it
    (item on stdin and in `ITEM`) and acknowledge it only after the program succeeded. A failing
    item is retried, then dead-lettered. Broker credentials reach the Pods through a Secret.
    """,
) as dag:
    prefill = QueuePrefillOperator(
        task_id="prefill",
        broker="rabbitmq",
        items=["apple", "banana", "cherry", "date", "fig", "grape", "lemon", "melon"],
    )
    consume = QueueJobOperator(
        task_id="consume",
        namespace=NAMESPACE,
        mode="pod_per_item",
        queue_name="{{ ti.xcom_pull(task_ids='prefill')['queue'] }}",
        count="{{ ti.xcom_pull(task_ids='prefill')['count'] }}",
        parallelism=2,
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'echo "Processing $ITEM"; sleep 1'],
    )
    prefill >> consume

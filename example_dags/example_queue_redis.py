"""Work queue, variable Pod count: pre-fill Redis, then P workers drain it."""

from _common import DEFAULT_ARGS, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG

from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator

with DAG(
    "example_queue_redis",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Fine parallel processing using a work queue** (Kubernetes' Redis example): items are
    pre-filled into Redis; a Job with `parallelism = 3` and no completions runs workers that
    lease items (a lease renewed while the program runs), process them and exit once the queue
    and the in-flight list are both empty. A worker that dies mid-item loses nothing: its lease
    expires and another worker takes the item.
    """,
) as dag:
    prefill = QueuePrefillOperator(
        task_id="prefill",
        broker="redis",
        items=[
            {"id": i, "word": w}
            for i, w in enumerate(["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"])
        ],
    )
    consume = QueueJobOperator(
        task_id="consume",
        namespace=NAMESPACE,
        mode="variable",
        queue_name="{{ ti.xcom_pull(task_ids='prefill')['queue'] }}",
        parallelism=3,
        lease_seconds=15,
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'echo "word $ID is $WORD"'],
    )
    prefill >> consume

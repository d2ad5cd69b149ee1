"""Map and reduce: an Indexed Job returns one number per item, the next task sums them."""

from _common import DEFAULT_ARGS, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG, task

from airflow_batchjob.operators.indexed import IndexedJobOperator

with DAG(
    "example_map_reduce",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Results from Pods.** Each Pod of the Indexed Job squares its item and writes the number, as
    JSON, to `$BATCHJOB_RESULT_FILE` (its container's termination message: the kubelet copies it
    into the Pod status, up to 4 KiB). The operator returns one row per item with its `result`;
    the `total` task sums them. No sidecar, no shared volume, no object store.
    """,
) as dag:
    squares = IndexedJobOperator(
        task_id="squares",
        namespace=NAMESPACE,
        items=[str(n) for n in range(1, 11)],
        image=WORKER_IMAGE,
        cmds=["sh", "-c", 'n=$(cat); echo $((n * n)) > "$BATCHJOB_RESULT_FILE"'],
        parallelism=5,
    )

    @task
    def total(rows: dict) -> int:
        s = sum(r["result"] for r in rows["items"])
        print(f"sum of squares 1..10 = {s}")
        assert s == 385, s
        return s

    total(squares.output)

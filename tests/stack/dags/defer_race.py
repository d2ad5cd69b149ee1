"""Many very short Jobs through every operator and sensor, each deferring at once (``defer_after=0``).

Every trigger here decides within a second or two of the task's deferral: the window of Airflow's
defer race (see ``airflow_batchjob/triggers/base.py``). ``tests/stack/test_defer_race.py`` runs
it through the real scheduler, LocalExecutor and triggerer.
"""

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from airflow_batchjob.sensors.job import JobSensor

NS = os.environ.get("BATCHJOB_TEST_NAMESPACE", "default")
FAST = {"namespace": NS, "image": "busybox:1.36", "defer_after": 0}

with DAG(
    "defer_race",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=1)},
) as dag:
    plain = BatchJobOperator.partial(task_id="plain", cmds=["true"], **FAST).expand(
        arguments=[[] for _ in range(6)]
    )
    group = JobGroupOperator(task_id="group", items=["a", "b", "c"], cmds=["sh", "-c", "echo $ITEM"], **FAST)
    indexed = IndexedJobOperator(task_id="indexed", items=["x", "y", "z"], cmds=["cat"], **FAST)
    prefill = QueuePrefillOperator(task_id="prefill_redis", broker="redis", items=["1", "2", "3"])
    queue_redis = QueueJobOperator(
        task_id="queue_redis",
        mode="variable",
        queue_name="{{ ti.xcom_pull(task_ids='prefill_redis')['queue'] }}",
        parallelism=2,
        cmds=["cat"],
        **FAST,
    )
    prefill_rmq = QueuePrefillOperator(task_id="prefill_rabbitmq", broker="rabbitmq", items=["1", "2"])
    queue_rabbitmq = QueueJobOperator(
        task_id="queue_rabbitmq",
        mode="pod_per_item",
        queue_name="{{ ti.xcom_pull(task_ids='prefill_rabbitmq')['queue'] }}",
        count=2,
        cmds=["cat"],
        **FAST,
    )
    prefill >> queue_redis
    prefill_rmq >> queue_rabbitmq
    # A sensor that defers before its Job exists, and fires a moment after it completes.
    BatchJobOperator(
        task_id="sensed",
        job_name="sensed-{{ run_id | lower | replace('_', '-') }}",
        random_name_suffix=False,
        cmds=["sleep", "2"],
        **FAST,
    )
    sensor = JobSensor(
        task_id="sensor",
        namespace=NS,
        job_name="sensed-{{ run_id | lower | replace('_', '-') }}",
        condition="Complete",
        poke_interval=1,
        timeout=300,
    )
    # The default: a short Job finishes while the worker still watches it, and never defers.
    BatchJobOperator(task_id="in_worker", namespace=NS, image="busybox:1.36", cmds=["true"])

    @task
    def results(plain: list, group: list, indexed: dict, queues: list, sensor: dict) -> None:
        """What a downstream task reads of each return value: the same whether a worker or the
        triggerer finished the task (``triggers/completion.py``)."""
        assert [r["outcome"]["state"] for r in plain] == ["succeeded"] * 6, plain
        assert [r["state"] for r in group] == ["succeeded"] * 3, group
        rows = [(r["item"], r["state"]) for r in indexed["items"]]
        assert rows == [(i, "succeeded") for i in "xyz"], indexed
        for q in queues:
            assert q["outcome"]["state"] == "succeeded" and q["queue"], q
        assert sensor["state"] == "succeeded", sensor

    queues = [queue_redis.output, queue_rabbitmq.output]
    results(plain.output, group.output, indexed.output, queues, sensor.output)

"""Deferred work across every pattern, held until the test lets it end.

``tests/stack/test_ha_failover.py`` runs it on the production profile (PostgreSQL, Celery, two
triggerers): 30 tasks defer (24 single Jobs, a group, an Indexed Job, two queue Jobs, a Job and
the sensor waiting on it), their triggers spread over both triggerers. Every Pod waits for the
file ``<BATCHJOB_TEST_GATE>/<run_id>``, which the test creates once it has seen what it came to
see (a hostPath volume: the node and the test share this machine), so no Job can finish before
the failover however slow the machine is, and none waits longer than the test needs.
"""

import os

import pendulum
from airflow.sdk import DAG

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from airflow_batchjob.sensors.job import JobSensor

NS = os.environ.get("BATCHJOB_TEST_NAMESPACE", "default")
GATE = os.environ.get("BATCHJOB_TEST_GATE", "/tmp")
# Defer at once: every wait is a trigger, none is watched by a worker. Every Pod mounts the gate.
DEFER = {
    "namespace": NS,
    "image": "busybox:1.36",
    "defer_after": 0,
    "volumes": [{"name": "gate", "hostPath": {"path": GATE, "type": "Directory"}}],
    "volume_mounts": [{"name": "gate", "mountPath": "/gate", "readOnly": True}],
}
HOLD = "until [ -e /gate/{{ run_id }} ]; do sleep 0.5; done"
HELD = ["sh", "-c", HOLD]
# Queue workers: the item arrives on stdin.
SLOW = ["sh", "-c", f"{HOLD}; cat >/dev/null || true"]
PLAIN = 24

with DAG(
    "ha_failover",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=64,
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=1)},
):
    BatchJobOperator.partial(task_id="plain", cmds=HELD, **DEFER).expand(arguments=[[] for _ in range(PLAIN)])
    JobGroupOperator(task_id="group", items=["a", "b", "c"], cmds=SLOW, **DEFER)
    IndexedJobOperator(task_id="indexed", items=["x", "y", "z"], cmds=SLOW, **DEFER)
    prefill = QueuePrefillOperator(task_id="prefill_redis", broker="redis", items=["1", "2", "3"])
    prefill >> QueueJobOperator(
        task_id="queue_redis",
        mode="variable",
        queue_name="{{ ti.xcom_pull(task_ids='prefill_redis')['queue'] }}",
        parallelism=3,
        cmds=SLOW,
        **DEFER,
    )
    prefill_rmq = QueuePrefillOperator(task_id="prefill_rabbitmq", broker="rabbitmq", items=["1", "2"])
    prefill_rmq >> QueueJobOperator(
        task_id="queue_rabbitmq",
        mode="pod_per_item",
        queue_name="{{ ti.xcom_pull(task_ids='prefill_rabbitmq')['queue'] }}",
        count=2,
        cmds=SLOW,
        **DEFER,
    )
    BatchJobOperator(
        task_id="sensed",
        job_name="sensed-{{ run_id | lower | replace('_', '-') }}",
        random_name_suffix=False,
        cmds=HELD,
        **DEFER,
    )
    JobSensor(
        task_id="sensor",
        namespace=NS,
        job_name="sensed-{{ run_id | lower | replace('_', '-') }}",
        condition="Complete",
        poke_interval=1,
        timeout=600,
    )

with DAG(
    "ha_in_worker",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=1)},
):
    # Waits in the Celery worker (never defers): a killed worker leaves it to the retry.
    BatchJobOperator(task_id="waits", cmds=HELD, deferrable=False, **DEFER)

with DAG(
    "ha_kill",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    # Deferred until the user marks it failed: its trigger's on_kill deletes the Job.
    BatchJobOperator(task_id="killed", cmds=HELD, **DEFER)

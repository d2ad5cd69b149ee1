"""Without its extras the package runs plain Jobs, groups and Indexed Jobs; a queue pattern names its extra.

Each check runs in a fresh interpreter where ``pika`` and ``redis`` cannot be imported (a ``None``
entry in ``sys.modules`` is how Python marks a module as absent), which is what an install without
the extras looks like to the code.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

ABSENT = "import sys\nsys.modules['pika'] = None\nsys.modules['redis'] = None\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ABSENT + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_the_core_operators_sensors_and_triggers_import_without_broker_clients() -> None:
    done = run(
        """
        from airflow_batchjob.operators.job import BatchJobOperator
        from airflow_batchjob.operators.jobgroup import JobGroupOperator
        from airflow_batchjob.operators.indexed import IndexedJobOperator
        from airflow_batchjob.operators.lifecycle import DeleteJobOperator
        from airflow_batchjob.sensors.job import JobSensor
        from airflow_batchjob.triggers.job import JobTrigger
        import airflow_batchjob.operators.queue  # importable; its operators say what is missing
        BatchJobOperator(task_id="t", image="busybox", cmds=["true"])
        IndexedJobOperator(task_id="i", image="busybox", cmds=["true"], items=["a", "b"])
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.mark.parametrize(
    ("construct", "extra"),
    [
        ("QueuePrefillOperator(task_id='p', items=['a'], broker='redis')", "redis"),
        ("QueuePrefillOperator(task_id='p', items=['a'], broker='rabbitmq')", "rabbitmq"),
        (
            "QueueJobOperator(task_id='q', mode='variable', queue_name='q', image='busybox', cmds=['true'])",
            "redis",
        ),
        (
            "QueueJobOperator(task_id='q', mode='pod_per_item', queue_name='q', count=1,"
            " image='busybox', cmds=['true'])",
            "rabbitmq",
        ),
    ],
)
def test_a_queue_operator_without_its_client_fails_at_parse_naming_the_extra(
    construct: str, extra: str
) -> None:
    done = run(
        f"from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator\n{construct}\n"
    )
    assert done.returncode != 0
    assert "AirflowOptionalProviderFeatureException" in done.stderr, done.stderr[-3000:]
    assert f"pip install 'airflow-batchjob[{extra}]'" in done.stderr, done.stderr[-3000:]


def test_the_worker_without_its_client_names_the_worker_extra() -> None:
    done = run(
        """
        import os
        from airflow_batchjob.worker.cli import main
        os.environ["BATCHJOB_REDIS_URL"] = "redis://127.0.0.1:9/0"  # never reached: no client
        sys.exit(main(["redis", "--queue", "q", "--", "true"]))
        """
    )
    assert done.returncode != 0
    assert "pip install 'airflow-batchjob[worker]'" in done.stderr, done.stderr[-3000:]

"""A DAG written as a cncf.kubernetes user writes it, type-checked by tests/unit/test_typed_dag.py:
the hints accept what the operators accept (V1 objects, tuples, peer parameters)."""

from __future__ import annotations

from kubernetes.client import models as k8s

from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator

BatchJobOperator(
    task_id="ported",
    image="busybox",
    cmds=("sh", "-c"),
    arguments=["echo hi"],
    env=[k8s.V1EnvVar(name="A", value="1"), {"name": "B", "value": "2"}],
    container_resources=k8s.V1ResourceRequirements(limits={"memory": "1Gi"}),
    pod_failure_policy=k8s.V1PodFailurePolicy(rules=[]),
    success_policy={"rules": [{"succeededCount": 1}]},
    skip_on_exit_code=(99, 100),
    reattach_on_restart=False,
    delete_on_kill=False,
    on_finish_action="delete_succeeded_pod",
    startup_timeout_seconds=300,
)
BatchJobOperator(task_id="env_dict", image="busybox", env={"A": "1"}, container_resources={"limits": {}})
JobGroupOperator(task_id="group", image="busybox", items=("a", "b"), wait_until_job_complete=False)
IndexedJobOperator(task_id="indexed", image="busybox", cmds=["cat"], items=["x"])
# The Job spec parameters are templated: a Jinja string type-checks where a value does.
BatchJobOperator(
    task_id="templated",
    image="busybox",
    parallelism="{{ params.p }}",
    backoff_limit="{{ params.retries }}",
    suspend="{{ params.suspend }}",
    success_policy="{{ params.success | tojson }}",
)

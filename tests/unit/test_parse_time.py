"""Bad input fails when the DAG is parsed (the constructor), with the parameter and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import models as k8s

from airflow_batchjob.core.manifest import is_template_file
from airflow_batchjob.core.schema import nearest, schema_problems
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator


def template(**container: Any) -> dict[str, Any]:
    return {
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox", **container}]}}}
    }


@pytest.mark.parametrize("items", ["apple", 5, {"a": 1}, None, 2.5])
@pytest.mark.parametrize("cls", [JobGroupOperator, IndexedJobOperator])
def test_items_must_be_a_list_a_template_or_an_xcom(cls: type, items: Any) -> None:
    with pytest.raises(InvalidJobTemplateError, match=r"items=.*give a list or tuple"):
        cls(task_id="t", image="busybox", cmds=["true"], items=items)


def test_items_accepted_forms() -> None:
    from airflow.sdk import DAG, task

    assert JobGroupOperator(task_id="t", image="b", items=("a", "b")).items == ["a", "b"]
    JobGroupOperator(task_id="t", image="b", items="{{ params.items }}")
    with DAG("d"):

        @task
        def make() -> list[str]:
            return ["a"]

        JobGroupOperator(task_id="g", image="b", items=make())
    with pytest.raises(InvalidJobTemplateError, match="items="):
        QueuePrefillOperator(task_id="p", broker="redis", items="apple")


def test_yaml_text_is_parsed_at_parse_time_unless_a_file_or_jinja() -> None:
    with pytest.raises(InvalidJobTemplateError, match="not valid YAML"):
        BatchJobOperator(task_id="t", job_template="spec: [unclosed")
    BatchJobOperator(task_id="t", job_template="jobs/train.yaml")  # read at run time
    BatchJobOperator(task_id="t", job_template="spec: {{ var.value.spec }}")
    assert is_template_file(" a.yml ") and not is_template_file("spec:\n  x: a.yaml")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"job_template": {"spec": {"backofLimit": 2, **template()["spec"]}}},
            "spec.backofLimit: not a field of JobSpec, did you mean backoffLimit?",
        ),
        ({"job_template": template(comand=["x"])}, "comand: not a field of Container, did you mean command?"),
        ({"image": "b", "container_resources": {"limits": {"memory": "lots"}}}, "'lots' is not a quantity"),
        ({"image": "b", "container_resources": {"limit": {"memory": "1Gi"}}}, "did you mean limits?"),
        (
            {"image": "b", "tolerations": [{"key": "k", "operator": "Maybe"}]},
            "operator must be one of Exists",
        ),
        ({"image": "b", "image_pull_policy": "Sometimes"}, "imagePullPolicy must be one of Always"),
        ({"job_template": template(imagePullPolicy="Sometimes")}, "imagePullPolicy must be one of Always"),
        (
            {"image": "b", "container_resources": "cpu=1"},
            "container_resources='cpu=1': give a V1ResourceRequirements",
        ),
        ({"image": "b", "pod_failure_policy": "FailJob"}, "pod_failure_policy must be a dict or a V1"),
        ({"image": "b", "job_name": "Bad_Name", "random_name_suffix": False}, "change job_name"),
    ],
)
def test_bad_fields_are_refused_with_the_fix(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobTemplateError) as e:
        BatchJobOperator(task_id="t", **kwargs)
    assert message in str(e.value)
    assert "naming.job_name" not in str(e.value)


def test_v1_objects_are_accepted_wherever_a_dict_is() -> None:
    policy = k8s.V1PodFailurePolicy(
        rules=[
            k8s.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=k8s.V1PodFailurePolicyOnExitCodesRequirement(operator="In", values=[42]),
            )
        ]
    )
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        pod_failure_policy=policy,
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "1Gi"}),
        env=[k8s.V1EnvVar(name="A", value="1")],
    )
    assert op.overrides.pod_failure_policy == {
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
    }


def test_schema_walks_lists_dicts_and_leaves_jinja_to_the_run() -> None:
    job = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "m", "image": "b", "resources": {"limits": {"cpu": "{{ p }}"}}}],
                    "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi", "medum": "Memory"}}],
                    "nodeSelector": {"disk": "ssd"},
                }
            }
        }
    }
    assert schema_problems(job) == [
        "spec.template.spec.volumes[0].emptyDir.medum: not a field of EmptyDirVolumeSource, "
        "did you mean medium?"
    ]
    assert nearest("BACKOFFLIMIT", ["backoffLimit"]) == "backoffLimit"
    assert nearest("zzz", ["backoffLimit"]) is None


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (JobGroupOperator, {"items": ["a"], "random_name_suffix": False}, "random_name_suffix=False"),
        (IndexedJobOperator, {"items": ["a"], "random_name_suffix": False}, "random_name_suffix=False"),
        (IndexedJobOperator, {"items": ["a"], "skip_on_exit_code": 3}, "FailIndex"),
        (
            JobGroupOperator,
            {"items": ["a"], "wait_until_job_complete": False, "max_active_jobs": 2},
            "max_active_jobs",
        ),
        (
            BatchJobOperator,
            {"wait_until_job_complete": False, "delete_on_finish": "always"},
            "delete_on_finish",
        ),
        (
            BatchJobOperator,
            {"wait_until_job_complete": False, "on_finish_action": "delete_pod"},
            "delete_on_finish",
        ),
        (
            BatchJobOperator,
            {"wait_until_job_complete": False, "startup_timeout_seconds": 60},
            "pending_timeout",
        ),
    ],
)
def test_what_an_operator_cannot_honour_is_refused(cls: type, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobTemplateError) as e:
        cls(task_id="t", image="busybox", cmds=["true"], **kwargs)
    assert message in str(e.value)


def test_queue_job_always_waits() -> None:
    pytest.importorskip("redis")
    with pytest.raises(InvalidJobTemplateError, match="always waits"):
        QueueJobOperator(
            task_id="q", mode="variable", queue_name="q", image="b", cmds=["x"], wait_until_job_complete=False
        )
    with pytest.raises(InvalidJobTemplateError, match="skip_on_exit_code"):
        QueueJobOperator(
            task_id="q", mode="variable", queue_name="q", image="b", cmds=["x"], skip_on_exit_code=1
        )


def test_fire_and_forget_fan_outs_are_accepted() -> None:
    group = JobGroupOperator(task_id="g", image="b", cmds=["x"], items=["a"], wait_until_job_complete=False)
    indexed = IndexedJobOperator(
        task_id="i", image="b", cmds=["x"], items=["a"], wait_until_job_complete=False
    )
    assert not group.wait_until_job_complete and not indexed.wait_until_job_complete


def test_a_job_nobody_waits_on_gets_its_ttl_now() -> None:
    from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL

    class TI:
        dag_id, task_id, run_id, map_index, try_number = "d", "t", "r", -1, 1

    waiting = BatchJobOperator(task_id="t", image="b").build({"ti": TI()}, "ns")  # type: ignore[typeddict-item]
    fire = BatchJobOperator(
        task_id="t", image="b", wait_until_job_complete=False, ttl_seconds_after_finished=60
    )
    body = fire.build({"ti": TI()}, "ns")  # type: ignore[typeddict-item]
    assert ANNOTATION_HELD_TTL in waiting["metadata"]["annotations"]
    assert body["spec"]["ttlSecondsAfterFinished"] == 60
    assert ANNOTATION_HELD_TTL not in body["metadata"]["annotations"]

"""Job building from templates/params, and apiserver-faithful validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import (
    V1Container,
    V1EnvVar,
    V1Job,
    V1JobSpec,
    V1ObjectMeta,
    V1PodSpec,
    V1PodTemplateSpec,
)

from airflow_batchjob.core.build import ContainerParams, JobOverrides, build_job, held_ttl, hold_ttl
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.manifest import load_template
from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL, job_name, task_annotations, task_labels
from airflow_batchjob.core.validation import validate_job

TEMPLATE_YAML = """
apiVersion: batch/v1
kind: Job
metadata:
  name: ignored
  labels:
    team: data
spec:
  backoffLimit: 2
  template:
    metadata:
      labels:
        app: etl
    spec:
      containers:
        - name: worker
          image: python:3.11
          env:
            - name: MODE
              value: batch
            - name: LEVEL
              value: info
"""

# What `kubectl get job -o yaml` hands back: server fields that must not be sent on create.
LIVE_JOB_YAML = """
apiVersion: batch/v1
kind: Job
metadata:
  creationTimestamp: "2024-05-01T10:00:00Z"
  generation: 1
  labels:
    batch.kubernetes.io/controller-uid: 0b1f
    batch.kubernetes.io/job-name: old
    controller-uid: 0b1f
    job-name: old
  name: old
  namespace: prod
  resourceVersion: "1234"
  uid: 0b1f
  managedFields: []
spec:
  backoffLimit: 6
  completionMode: NonIndexed
  completions: 1
  parallelism: 1
  podReplacementPolicy: TerminatingOrFailed
  selector:
    matchLabels:
      batch.kubernetes.io/controller-uid: 0b1f
  suspend: false
  template:
    metadata:
      creationTimestamp: null
      labels:
        batch.kubernetes.io/controller-uid: 0b1f
        batch.kubernetes.io/job-name: old
        controller-uid: 0b1f
        job-name: old
    spec:
      containers:
        - name: main
          image: busybox
          command: [sh, -c, "exit 0"]
      restartPolicy: Never
status:
  succeeded: 1
"""


def minimal_job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job-abc", "namespace": "default"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
            },
            **spec,
        },
    }


# ------------------------------------------------------------------------------------------------
# load_template


def test_load_template_dict_is_deep_copied() -> None:
    src = minimal_job()
    loaded = load_template(src)
    loaded["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert src["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_load_template_yaml_string_json_string_and_file(tmp_path: Path) -> None:
    from_yaml = load_template(TEMPLATE_YAML)
    assert from_yaml["spec"]["backoffLimit"] == 2
    assert load_template(json.dumps(from_yaml)) == from_yaml
    path = tmp_path / "job.yaml"
    path.write_text(TEMPLATE_YAML)
    assert load_template(str(path)) == from_yaml
    json_path = tmp_path / "job.json"
    json_path.write_text(json.dumps(from_yaml))
    assert load_template(str(json_path)) == from_yaml


def test_load_template_v1job() -> None:
    v1 = V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=V1ObjectMeta(name="x"),
        spec=V1JobSpec(
            backoff_limit=1,
            template=V1PodTemplateSpec(
                spec=V1PodSpec(restart_policy="Never", containers=[V1Container(name="main", image="busybox")])
            ),
        ),
    )
    loaded = load_template(v1)
    assert loaded["spec"]["backoffLimit"] == 1
    assert loaded["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("- a\n- b\n", "must be a mapping"),
        ("just text", "must be a mapping"),
        ("a: [unclosed", "not valid YAML"),
        ("kind: Job\n---\nkind: Job\n", "exactly one YAML document"),
        ("apiVersion: v1\nkind: Pod\n", "apiVersion 'v1'"),
        ("apiVersion: batch/v1\nkind: CronJob\n", "jobTemplate"),
        ("/nonexistent/dir/job.yaml", "does not exist"),
    ],
)
def test_load_template_rejects(template: str, fragment: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=fragment):
        load_template(template)


def test_load_template_rejects_other_types() -> None:
    with pytest.raises(InvalidJobSpecError, match="must be a dict"):
        load_template(42)


# ------------------------------------------------------------------------------------------------
# build_job


def test_build_job_from_params_only() -> None:
    name = job_name("d", "t", "r")
    labels, annotations = task_labels("d", "t", "r", try_number=1), task_annotations("d", "t", "r")
    job = build_job(
        name=name,
        namespace="ns",
        container=ContainerParams(
            image="busybox",
            cmds=["sh", "-c"],
            arguments=["echo hi"],
            env={"A": "1"},
            resources={"limits": {"cpu": "1"}},
        ),
        labels=labels,
        annotations=annotations,
    )
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == name and job["metadata"]["namespace"] == "ns"
    assert job["metadata"]["labels"] == labels
    assert job["metadata"]["annotations"] == annotations
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == labels
    assert pod["spec"]["restartPolicy"] == "Never"
    assert "backoffLimit" not in job["spec"]
    assert pod["spec"]["containers"] == [
        {
            "name": "main",
            "image": "busybox",
            "command": ["sh", "-c"],
            "args": ["echo hi"],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"cpu": "1"}},
        }
    ]


def test_build_job_merges_params_into_template_container() -> None:
    job = build_job(
        name="j",
        namespace="ns",
        template=TEMPLATE_YAML,
        container=ContainerParams(
            image="python:3.12",
            env=[{"name": "LEVEL", "value": "debug"}, V1EnvVar(name="EXTRA", value="1")],
        ),
        labels={"batchjob.airflow.io/dag": "d"},
    )
    (c,) = job["spec"]["template"]["spec"]["containers"]
    # Template's container name is kept (podFailurePolicy may reference it), image replaced.
    assert c["name"] == "worker" and c["image"] == "python:3.12"
    assert c["env"] == [
        {"name": "MODE", "value": "batch"},
        {"name": "LEVEL", "value": "debug"},
        {"name": "EXTRA", "value": "1"},
    ]
    assert job["metadata"]["labels"] == {"team": "data", "batchjob.airflow.io/dag": "d"}
    assert job["spec"]["template"]["metadata"]["labels"] == {"app": "etl", "batchjob.airflow.io/dag": "d"}
    assert job["metadata"]["name"] == "j"
    assert job["spec"]["backoffLimit"] == 2


def test_build_job_does_not_mutate_template() -> None:
    template = load_template(TEMPLATE_YAML)
    before = copy.deepcopy(template)
    build_job(name="j", namespace="ns", template=template, container=ContainerParams(image="x"))
    assert template == before


def test_build_job_strips_server_fields_from_live_job() -> None:
    job = build_job(name="fresh", namespace="ns", template=LIVE_JOB_YAML, labels={"a": "b"})
    assert "status" not in job
    meta = job["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        assert key not in meta
    assert meta["labels"] == {"a": "b"}
    assert "selector" not in job["spec"]
    pod_meta = job["spec"]["template"]["metadata"]
    assert pod_meta["labels"] == {"a": "b"} and "creationTimestamp" not in pod_meta


def test_build_job_pod_failure_policy_override_over_live_job() -> None:
    pfp = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    job = build_job(
        name="fresh", namespace="ns", template=LIVE_JOB_YAML, overrides=JobOverrides(pod_failure_policy=pfp)
    )
    assert job["spec"]["podFailurePolicy"] == pfp
    assert "podReplacementPolicy" not in job["spec"]


def test_build_job_applies_overrides() -> None:
    overrides = JobOverrides(
        completions=5,
        parallelism=2,
        completion_mode="Indexed",
        backoff_limit_per_index=1,
        max_failed_indexes=2,
        success_policy={"rules": [{"succeededIndexes": "0-2", "succeededCount": 2}]},
        pod_replacement_policy="Failed",
        active_deadline_seconds=600,
        ttl_seconds_after_finished=60,
        suspend=True,
    )
    job = build_job(name="j", namespace="ns", template=TEMPLATE_YAML, overrides=overrides)
    spec = job["spec"]
    assert spec["completions"] == 5 and spec["parallelism"] == 2
    assert spec["completionMode"] == "Indexed"
    assert spec["backoffLimitPerIndex"] == 1 and spec["maxFailedIndexes"] == 2
    assert spec["successPolicy"]["rules"][0]["succeededCount"] == 2
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["activeDeadlineSeconds"] == 600 and spec["ttlSecondsAfterFinished"] == 60
    assert spec["suspend"] is True
    assert spec["backoffLimit"] == 2  # untouched: override was None


def test_build_job_requires_a_container() -> None:
    with pytest.raises(InvalidJobSpecError, match="no container"):
        build_job(name="j", namespace="ns")


@pytest.mark.parametrize("containers", [{"name": "main", "image": "x"}, "main", 3])
def test_template_containers_that_are_not_a_list_are_refused_not_replaced(containers: Any) -> None:
    template = {"spec": {"template": {"spec": {"containers": containers}}}}
    with pytest.raises(InvalidJobSpecError, match="containers must be a list"):
        build_job(name="j", namespace="ns", template=template, container=ContainerParams(image="busybox"))


def test_build_job_output_is_accepted_by_client_models() -> None:
    """The dict deserialises into V1Job: every key is a real API field name."""
    from kubernetes.client import ApiClient

    job = build_job(name="j", namespace="ns", template=TEMPLATE_YAML, overrides=JobOverrides(completions=3))

    class _Resp:
        data = json.dumps(job)

    v1 = ApiClient().deserialize(_Resp(), "V1Job")
    assert v1.spec.completions == 3
    assert v1.spec.template.spec.containers[0].env[0].name == "MODE"


# ------------------------------------------------------------------------------------------------
# validate_job


def test_validate_accepts_full_featured_indexed_job() -> None:
    job = minimal_job(
        completions=10,
        parallelism=3,
        completionMode="Indexed",
        backoffLimitPerIndex=1,
        maxFailedIndexes=3,
        podReplacementPolicy="Failed",
        successPolicy={"rules": [{"succeededIndexes": "0,2-4,9", "succeededCount": 3}]},
        podFailurePolicy={
            "rules": [
                {
                    "action": "FailIndex",
                    "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 2]},
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
            ]
        },
    )
    validate_job(job)


def _with_pod(job: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    job["spec"]["template"]["spec"].update(pod_spec)
    return job


_PFP_EXIT = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}

REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("name upper", {**minimal_job(), "metadata": {"name": "Bad_Name"}}, "metadata.name"),
    ("name long", {**minimal_job(), "metadata": {"name": "a" * 64}}, "metadata.name"),
    ("completions<0", minimal_job(completions=-1), "spec.completions must be a non-negative"),
    ("parallelism<0", minimal_job(parallelism=-1), "spec.parallelism must be a non-negative"),
    ("mode", minimal_job(completionMode="Sharded"), "completionMode must be NonIndexed or Indexed"),
    ("indexed no completions", minimal_job(completionMode="Indexed"), "Indexed Job needs completions"),
    (
        "per-index non-indexed",
        minimal_job(backoffLimitPerIndex=1),
        "backoff_limit_per_index requires completion_mode",
    ),
    (
        "max failed without per-index",
        minimal_job(completionMode="Indexed", completions=3, maxFailedIndexes=1),
        "max_failed_indexes requires backoff_limit_per_index: set backoff_limit_per_index or drop "
        "max_failed_indexes",
    ),
    (
        "max failed > completions",
        minimal_job(completionMode="Indexed", completions=3, backoffLimitPerIndex=1, maxFailedIndexes=4),
        r"maxFailedIndexes \(4\) must be <= completions \(3\)",
    ),
    (
        "success policy non-indexed",
        minimal_job(successPolicy={"rules": [{"succeededCount": 1}]}),
        "success_policy requires completion_mode='Indexed'",
    ),
    (
        "success policy empty",
        minimal_job(completionMode="Indexed", completions=3, successPolicy={"rules": []}),
        "at least one rule",
    ),
    (
        "success rule empty",
        minimal_job(completionMode="Indexed", completions=3, successPolicy={"rules": [{}]}),
        "needs succeededIndexes",
    ),
    (
        "success count > completions",
        minimal_job(
            completionMode="Indexed", completions=3, successPolicy={"rules": [{"succeededCount": 4}]}
        ),
        r"succeededCount 4 exceeds completions \(3\)",
    ),
    (
        "success count > indexes",
        minimal_job(
            completionMode="Indexed",
            completions=9,
            successPolicy={"rules": [{"succeededIndexes": "0,1", "succeededCount": 3}]},
        ),
        "exceeds the 2 indexes",
    ),
    *[
        (
            f"succeededIndexes {bad}",
            minimal_job(
                completionMode="Indexed", completions=5, successPolicy={"rules": [{"succeededIndexes": bad}]}
            ),
            "succeededIndexes .* is malformed",
        )
        for bad in ("a", "1-2-3", "3-1", "2,1", "0-5", "1,1", "-1", "1,")
    ],
    (
        "pfp with OnFailure",
        _with_pod(minimal_job(podFailurePolicy=_PFP_EXIT), restartPolicy="OnFailure"),
        "requires restartPolicy Never",
    ),
    (
        "pfp bad action",
        minimal_job(
            podFailurePolicy={
                "rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]
            }
        ),
        "action must be one of Count, FailIndex, FailJob, Ignore",
    ),
    (
        "FailIndex without per-index",
        minimal_job(
            podFailurePolicy={
                "rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]
            }
        ),
        "FailIndex requires backoffLimitPerIndex",
    ),
    (
        "exit op",
        minimal_job(
            podFailurePolicy={
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "Gt", "values": [1]}}]
            }
        ),
        "operator must be In or NotIn",
    ),
    (
        "In 0",
        minimal_job(
            podFailurePolicy={
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 1]}}]
            }
        ),
        "must not contain 0 with operator In",
    ),
    (
        "exit codes unordered",
        minimal_job(
            podFailurePolicy={
                "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1]}}]
            }
        ),
        "ascending order",
    ),
    (
        "exit container unknown",
        minimal_job(
            podFailurePolicy={
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "x", "operator": "In", "values": [1]},
                    }
                ]
            }
        ),
        "containerName 'x' is not a container",
    ),
    (
        "rule without requirement",
        minimal_job(podFailurePolicy={"rules": [{"action": "FailJob"}]}),
        "exactly one of onExitCodes or onPodConditions",
    ),
    (
        "replacement with pfp",
        minimal_job(podFailurePolicy=_PFP_EXIT, podReplacementPolicy="TerminatingOrFailed"),
        "pod_replacement_policy must be 'Failed' when a pod_failure_policy is set",
    ),
    (
        "replacement value",
        minimal_job(podReplacementPolicy="Always"),
        "pod_replacement_policy must be Failed or",
    ),
    ("deadline<0", minimal_job(activeDeadlineSeconds=-5), "activeDeadlineSeconds must be a non-negative"),
    ("ttl<0", minimal_job(ttlSecondsAfterFinished=-1), "ttlSecondsAfterFinished must be a non-negative"),
    ("backoff<0", minimal_job(backoffLimit=-1), "backoffLimit must be a non-negative"),
    (
        "restart Always",
        _with_pod(minimal_job(), restartPolicy="Always"),
        "restartPolicy must be Never or OnFailure",
    ),
    ("no containers", _with_pod(minimal_job(), containers=[]), "at least one container"),
    ("no image", _with_pod(minimal_job(), containers=[{"name": "main"}]), r"\(main\) needs an image"),
    (
        "no name",
        _with_pod(minimal_job(), containers=[{"image": "busybox"}]),
        r"\.name None must be a DNS-1123",
    ),
    (
        "duplicate names",
        _with_pod(minimal_job(), containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
        "names must be unique",
    ),
    (
        "indexed hostname",
        {**minimal_job(completionMode="Indexed", completions=1000), "metadata": {"name": "a" * 61}},
        "not a valid DNS label",
    ),
    (
        "label value",
        {**minimal_job(), "metadata": {"name": "j", "labels": {"run": "a:b"}}},
        "not a valid label value",
    ),
]


@pytest.mark.parametrize(
    ("job", "fragment"), [(j, f) for _, j, f in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_validate_rejects(job: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=fragment):
        validate_job(job)


def test_validate_reports_every_problem_at_once() -> None:
    job = _with_pod(minimal_job(completions=-1, backoffLimit=-1), restartPolicy="Always")
    with pytest.raises(InvalidJobSpecError) as info:
        validate_job(job)
    assert len(info.value.problems) == 3
    assert isinstance(info.value, ValueError)


def test_build_job_validates() -> None:
    with pytest.raises(InvalidJobSpecError, match="max_failed_indexes requires backoff_limit_per_index"):
        build_job(
            name="j",
            namespace="ns",
            container=ContainerParams(image="busybox"),
            overrides=JobOverrides(completion_mode="Indexed", completions=2, max_failed_indexes=1),
        )


def test_build_job_accepts_client_models_in_overrides() -> None:
    from kubernetes.client import (
        V1PodFailurePolicy,
        V1PodFailurePolicyOnExitCodesRequirement,
        V1PodFailurePolicyRule,
    )

    rule = V1PodFailurePolicyRule(
        action="FailJob", on_exit_codes=V1PodFailurePolicyOnExitCodesRequirement(operator="In", values=[3])
    )
    job = build_job(
        name="j",
        namespace="ns",
        container=ContainerParams(image="busybox", resources={"requests": {"memory": "1Gi"}}),
        template={
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "1"}}}]}
                }
            }
        },
        overrides=JobOverrides(pod_failure_policy=V1PodFailurePolicy(rules=[rule])),
    )
    assert job["spec"]["podFailurePolicy"] == {
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]
    }
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": "1Gi"}}


def test_hold_ttl_keeps_the_ttl_in_an_annotation_until_released() -> None:
    body = minimal_job(ttlSecondsAfterFinished=0)
    hold_ttl(body)
    assert "ttlSecondsAfterFinished" not in body["spec"]
    assert body["metadata"]["annotations"][ANNOTATION_HELD_TTL] == "0"
    assert held_ttl(body) == 0
    body["spec"]["ttlSecondsAfterFinished"] = 0  # released (as the apiserver then returns it)
    assert held_ttl(body) is None


def test_hold_ttl_leaves_a_job_without_ttl_alone() -> None:
    body = minimal_job()
    before = copy.deepcopy(body)
    hold_ttl(body)
    assert body == before and held_ttl(body) is None
    hold_ttl(body, -1)  # the deployment turned the default TTL off
    assert body == before and held_ttl(body) is None


def test_hold_ttl_gives_the_default_only_to_a_job_without_one() -> None:
    body = minimal_job()
    hold_ttl(body, 604800)
    assert held_ttl(body) == 604800 and "ttlSecondsAfterFinished" not in body["spec"]
    own = minimal_job(ttlSecondsAfterFinished=60)
    hold_ttl(own, 604800)
    assert held_ttl(own) == 60

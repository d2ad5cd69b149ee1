"""Pod settings: the layering order, the replaced-value report, types and Jinja inside V1 objects."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from airflow_batchjob.core.build import ContainerParams, build_job
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.podsettings import PodSettings
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.podlayers import apply_pod_layers, job_layers


def _template(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers), **pod}}}}


def _build(
    template: Any = None, pod: PodSettings | None = None, **container: Any
) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    job = build_job(
        name="j",
        namespace="ns",
        template=template,
        container=ContainerParams(**container),
        pod=pod,
        lay_pod=apply_pod_layers,
        on_override=lines.append,
        labels={"batchjob.airflow.io/task": "t"},
    )
    return job["spec"]["template"], lines


def test_parameters_go_to_the_main_container_not_the_first() -> None:
    template = _template({"name": "side", "image": "s"}, {"name": "main", "image": "m"})
    pod, lines = _build(
        template,
        PodSettings(
            volume_mounts=[{"name": "v", "mountPath": "/v"}],
            secrets=[Secret("env", "PW", "creds", "pw")],
            image_pull_policy="Never",
        ),
    )
    side, main = pod["spec"]["containers"]
    assert side == {"name": "side", "image": "s"}
    assert main["volumeMounts"] == [{"name": "v", "mountPath": "/v"}] and main["imagePullPolicy"] == "Never"
    assert main["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "pw"}
    assert lines == []


def test_order_is_job_template_then_pod_template_then_parameters_and_replacements_are_reported() -> None:
    template = _template(
        {"name": "main", "image": "m"}, nodeSelector={"from": "job"}, priorityClassName="job"
    )
    pod, lines = _build(
        template,
        PodSettings(
            pod_template_dict={
                "metadata": {"labels": {"team": "a"}},
                "spec": {
                    "priorityClassName": "pod",
                    "containers": [{"name": "main", "imagePullPolicy": "Always"}],
                },
            },
            priority_class_name="param",
            image_pull_policy="IfNotPresent",
        ),
    )
    spec = pod["spec"]
    assert spec["priorityClassName"] == "param" and spec["nodeSelector"] == {"from": "job"}
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["labels"] == {"team": "a", "batchjob.airflow.io/task": "t"}
    assert lines == [
        "spec.priorityClassName: 'job' -> 'pod' (the Pod template over the Job template)",
        "spec.containers['main'].imagePullPolicy: 'Always' -> 'IfNotPresent'"
        " (the parameters over the templates)",
        "spec.priorityClassName: 'pod' -> 'param' (the parameters over the templates)",
    ]


def test_lists_are_added_and_a_name_given_twice_is_reported() -> None:
    template = _template(
        {"name": "main", "image": "m", "env": [{"name": "A", "value": "1"}]},
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    pod, lines = _build(
        template,
        PodSettings(volumes=[k8s.V1Volume(name="w", empty_dir=k8s.V1EmptyDirVolumeSource())]),
        env={"B": "2"},
    )
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["v", "w"]
    assert [e["name"] for e in pod["spec"]["containers"][0]["env"]] == ["A", "B"]
    assert lines == []
    _, lines = _build(template, PodSettings(volumes=[{"name": "v", "hostPath": {"path": "/x"}}]))
    assert lines == ["spec.volumes['v'] given twice (the parameters over the templates)"]


def test_a_pod_template_alone_makes_the_container() -> None:
    pod, _ = _build(
        None,
        PodSettings(pod_template_dict={"spec": {"containers": [{"name": "base", "image": "b"}]}}),
        cmds=["run"],
    )
    assert pod["spec"]["containers"] == [{"name": "base", "image": "b", "command": ["run"]}]


def test_env_comes_before_runtime_info_and_secrets_as_in_cncf() -> None:
    """cncf.kubernetes' order: env_vars, pod_runtime_info_envs, the secrets; so ``$(NODE)`` in an
    env var is not expanded there, nor here (a reference resolves only to an earlier variable)."""
    node = k8s.V1EnvVar(
        name="NODE",
        value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="spec.nodeName")),
    )
    pod, lines = _build(
        _template({"name": "main", "image": "m", "env": [{"name": "T", "value": "0"}]}),
        PodSettings(pod_runtime_info_envs=[node], secrets=[Secret("env", "PW", "creds", "pw")]),
        env={"ON": "$(NODE)", "T": "1"},
    )
    env = pod["spec"]["containers"][0]["env"]
    assert [(e["name"], e.get("value")) for e in env] == [
        ("T", "1"),
        ("ON", "$(NODE)"),
        ("NODE", None),
        ("PW", None),
    ]
    assert lines == []


def test_a_pod_templates_first_container_merges_into_the_job_templates() -> None:
    """Whatever its name (cncf.kubernetes' is ``base``), as cncf.kubernetes merges them; the Job
    template's name stays (its podFailurePolicy may name it)."""
    pod, lines = _build(
        _template({"name": "job", "image": "j", "command": ["run"]}),
        PodSettings(
            pod_template_dict={"spec": {"containers": [{"name": "base", "image": "b", "workingDir": "/w"}]}}
        ),
    )
    assert pod["spec"]["containers"] == [
        {"name": "job", "image": "b", "command": ["run"], "workingDir": "/w"}
    ]
    assert lines == ["spec.containers['job'].image: 'j' -> 'b' (the Pod template over the Job template)"]


def test_a_false_or_zero_parameter_wins_over_the_template() -> None:
    pod, lines = _build(
        _template(
            {"name": "main", "image": "m"},
            automountServiceAccountToken=True,
            terminationGracePeriodSeconds=30,
        ),
        PodSettings(automount_service_account_token=False, termination_grace_period=0),
    )
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert len(lines) == 2


def test_full_job_spec_lies_over_the_job_template() -> None:
    merged = job_layers(
        _template({"name": "main", "image": "m"}) | {"metadata": {"labels": {"a": "1"}}},
        k8s.V1Job(spec=k8s.V1JobSpec(backoff_limit=1, template=k8s.V1PodTemplateSpec())),
    )
    assert merged["spec"]["backoffLimit"] == 1 and merged["metadata"]["labels"] == {"a": "1"}
    assert merged["spec"]["template"]["spec"]["containers"][0]["image"] == "m"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            PodSettings(volumes=[{"name": "v", "persistent_volume_claim": {"claim_name": "c"}}]),
            "volumes[0].persistent_volume_claim",
        ),
        (PodSettings(volumes={"name": "v"}), "volumes must be a list"),
        (PodSettings(tolerations=["x"]), "tolerations[0] must be a V1Toleration"),
        (
            PodSettings(secrets=[{"secret": "x"}]),
            "secrets[0] must be an airflow.providers.cncf.kubernetes.secret.Secret",
        ),
        (PodSettings(volumes=[{"emptyDir": {}}]), "volumes[0] is not a valid V1Volume"),
        (PodSettings(pod_template_dict={"kind": "Deployment"}), "it must be a Pod manifest"),
    ],
)
def test_wrong_settings_fail_with_the_field(settings: PodSettings, message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _build(_template({"name": "main", "image": "m"}), settings)


def test_wrong_settings_fail_when_the_dag_is_parsed() -> None:
    with pytest.raises(InvalidJobTemplateError, match="node_selector must be a mapping"):
        BatchJobOperator(task_id="t", image="busybox", node_selector=["disk=ssd"])


def test_container_resources_as_a_v1_object() -> None:
    op = BatchJobOperator(
        task_id="t", image="busybox", container_resources=k8s.V1ResourceRequirements(limits={"cpu": "1"})
    )
    pod, _ = _build(None, op.pod_settings(), image="busybox", resources=op.container_resources)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}}


def test_jinja_is_rendered_inside_v1_objects_but_data_is_not_loaded_as_a_template() -> None:
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        env_vars=[k8s.V1EnvVar(name="RUN", value="{{ run_id }}")],
        volumes=[
            k8s.V1Volume(
                name="cfg",
                config_map=k8s.V1ConfigMapVolumeSource(
                    name="{{ params.cm }}", items=[k8s.V1KeyToPath(key="config.yaml", path="config.yaml")]
                ),
            )
        ],
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "{{ params.mem }}"}),
        node_selector={"pool": "{{ params.pool }}"},
    )
    op.render_template_fields({"run_id": "r1", "params": {"cm": "settings", "mem": "1Gi", "pool": "batch"}})
    assert op.env[0].value == "r1"
    assert op.volumes[0].config_map.name == "settings"
    assert op.volumes[0].config_map.items[0].path == "config.yaml"
    assert op.container_resources.limits == {"memory": "1Gi"}
    assert op.node_selector == {"pool": "batch"}

"""The cncf.kubernetes Pod parameters on the real local cluster, one test per group.

Volumes and mounts; scheduling; identity and secrets; templates (Job and Pod template files,
``full_job_spec``/``full_pod_spec``); cluster settings (``config_file``, ``cluster_context``).
Each Pod reports what it saw through ``$BATCHJOB_RESULT_FILE``; the Job and Pod the apiserver
holds are read back to check what was sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes import client
from kubernetes.client import models as k8s
from kubernetes.client.rest import ApiException

from airflow_batchjob.operators.job import BatchJobOperator
from localcluster.cluster import NODE_NAME
from localcluster.images import WORKER_NAMES
from tests.cluster.helpers import jobs_in, new_dag, pods_in

WORKER_IMAGE = WORKER_NAMES[0]

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def _report(**values: str) -> str:
    """A shell line writing the named shell values as a JSON object where the Pod's result goes."""
    fmt = ", ".join('"%s": "%s"' for _ in values)
    pairs = " ".join(f'"{part}"' for item in values.items() for part in item)
    return f"printf '{{{fmt}}}' {pairs} > \"$BATCHJOB_RESULT_FILE\""


def _one(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_volumes_mounts_and_init_containers_with_jinja_inside(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "fast", "config.yaml": "a"}}
    )
    work = k8s.V1VolumeMount(name="work", mount_path="/work")
    with new_dag(f"vols_{deferrable}", params={"cm": "settings"}) as dag:
        BatchJobOperator(
            task_id="vols",
            namespace=namespace,
            image="busybox:1.36",
            cmds=[
                "sh",
                "-c",
                _report(
                    mode="$(cat /cfg/mode)",
                    seed="$(cat /work/seed)",
                    run="$RUN",
                    conf="$(cat /cfg/config.yaml)",
                ),
            ],
            volumes=[
                k8s.V1Volume(name="work", empty_dir=k8s.V1EmptyDirVolumeSource()),
                {"name": "cfg", "configMap": {"name": "{{ params.cm }}"}},
            ],
            volume_mounts=[work, {"name": "cfg", "mountPath": "/cfg", "readOnly": True}],
            init_containers=[
                k8s.V1Container(
                    name="seed",
                    image="busybox:1.36",
                    command=["sh", "-c", "echo {{ dag.dag_id }} > /work/seed"],
                    volume_mounts=[work],
                )
            ],
            env_vars=[k8s.V1EnvVar(name="RUN", value="{{ run_id }}")],
            container_resources=k8s.V1ResourceRequirements(limits={"memory": "{{ '64Mi' }}"}),
            deferrable=deferrable,
            defer_after=0,
        )
    out = run_dag(dag)["vols"]
    assert out["state"] == "success"
    seen = out["xcom"]["return_value"]["result"]
    assert seen["mode"] == "fast" and seen["conf"] == "a"  # "config.yaml" is data, not a template file
    assert seen["seed"] == f"vols_{deferrable}" and seen["run"].startswith("manual__")
    pod = _one(pods_in(api_client, namespace))
    main = _one([c for c in pod.spec.containers if c.name == "main"])
    assert main.resources.limits == {"memory": "64Mi"}
    assert [v.name for v in pod.spec.volumes][:2] == ["work", "cfg"]  # then the token's, by admission
    assert [c.name for c in pod.spec.init_containers] == ["seed"]


def test_scheduling_settings_reach_the_scheduler(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    sched = client.SchedulingV1Api(api_client)
    try:
        sched.create_priority_class({"metadata": {"name": "batchjob-test-low"}, "value": 10})
    except ApiException as e:
        if e.status != 409:
            raise
    near_node = k8s.V1NodeSelectorTerm(
        match_expressions=[
            k8s.V1NodeSelectorRequirement(key="kubernetes.io/hostname", operator="In", values=[NODE_NAME])
        ]
    )
    with new_dag("sched") as dag:
        BatchJobOperator(
            task_id="placed",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            node_selector={"kubernetes.io/os": "linux"},
            tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            affinity=k8s.V1Affinity(
                node_affinity=k8s.V1NodeAffinity(
                    required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                        node_selector_terms=[near_node]
                    )
                )
            ),
            priority_class_name="batchjob-test-low",
            termination_grace_period=3,
            deferrable=False,
        )
        BatchJobOperator(
            task_id="nowhere",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            node_selector={"disktype": "ssd"},
            pending_timeout=8,
            diagnose_interval=2,
            deferrable=False,
        )
    out = run_dag(dag)
    assert out["placed"]["state"] == "success"
    assert out["nowhere"]["state"] == "failed"
    placed = _one(pods_in(api_client, namespace, "batchjob.airflow.io/task=placed"))
    assert placed.spec.node_name == NODE_NAME and placed.spec.priority == 10
    assert placed.spec.termination_grace_period_seconds == 3
    assert any(t.key == "dedicated" for t in placed.spec.tolerations)
    assert "didn't match Pod's node affinity/selector" in capfd.readouterr().out


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_identity_and_secrets(run_dag: Any, api_client: Any, namespace: str, deferrable: bool) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "runner"}})
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "user": "bob"}}
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "colors"}, "data": {"COLOR": "blue"}})
    with new_dag(f"ident_{deferrable}") as dag:
        BatchJobOperator(
            task_id="ident",
            namespace=namespace,
            image="busybox:1.36",
            cmds=[
                "sh",
                "-c",
                _report(
                    pw="$PASSWORD", file="$(cat /etc/creds/user)", all="$user", color="$COLOR", pod="$MY_POD"
                ),
            ],
            service_account_name="runner",
            automount_service_account_token=False,
            image_pull_secrets="regcred,other",
            secrets=[
                Secret("env", "PASSWORD", "creds", "password"),
                Secret("volume", "/etc/creds", "creds"),
                Secret("env", None, "creds"),
            ],
            configmaps=["colors"],
            pod_runtime_info_envs=[
                k8s.V1EnvVar(
                    name="MY_POD",
                    value_from=k8s.V1EnvVarSource(
                        field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.name")
                    ),
                )
            ],
            security_context={"runAsNonRoot": False},
            container_security_context=k8s.V1SecurityContext(allow_privilege_escalation=False),
            deferrable=deferrable,
            defer_after=0,
        )
    out = run_dag(dag)["ident"]
    assert out["state"] == "success"
    seen = out["xcom"]["return_value"]["result"]
    pod = _one(pods_in(api_client, namespace))
    assert seen == {"pw": "s3cret", "file": "bob", "all": "bob", "color": "blue", "pod": pod.metadata.name}
    assert pod.spec.service_account_name == "runner" and pod.spec.automount_service_account_token is False
    assert [s.name for s in pod.spec.image_pull_secrets] == ["regcred", "other"]
    assert pod.spec.containers[0].security_context.allow_privilege_escalation is False
    job = _one(jobs_in(api_client, namespace))
    assert "s3cret" not in json.dumps(client.ApiClient().sanitize_for_serialization(job))


def test_templates_layer_job_pod_and_parameters(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "busybox:1.36",
                                    "command": [
                                        "sh",
                                        "-c",
                                        _report(job="$FROM_JOB", pod="$FROM_POD", full="$FULL"),
                                    ],
                                    "env": [{"name": "FROM_JOB", "value": "1"}],
                                }
                            ]
                        }
                    },
                },
            }
        )
    )
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"labels": {"team": "data"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/arch": "amd64"},
                    "containers": [{"name": "main", "env": [{"name": "FROM_POD", "value": "{{ 1 + 1 }}"}]}],
                },
            }
        )
    )
    with new_dag("layers", template_searchpath=[str(tmp_path)]) as dag:
        BatchJobOperator(
            task_id="layers",
            namespace=namespace,
            job_template_file="job.yaml",
            full_job_spec=k8s.V1Job(
                spec=k8s.V1JobSpec(active_deadline_seconds=300, template=k8s.V1PodTemplateSpec())
            ),
            pod_template_file="pod.yaml",
            full_pod_spec=k8s.V1Pod(
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="main", env=[k8s.V1EnvVar(name="FULL", value="3")])]
                )
            ),
            node_selector={"kubernetes.io/os": "linux"},
            deferrable=False,
        )
    out = run_dag(dag)["layers"]
    assert out["state"] == "success"
    assert out["xcom"]["return_value"]["result"] == {"job": "1", "pod": "2", "full": "3"}
    job = _one(jobs_in(api_client, namespace))
    assert job.spec.backoff_limit == 2 and job.spec.active_deadline_seconds == 300
    assert job.spec.template.metadata.labels["team"] == "data"
    assert job.spec.template.spec.node_selector == {"kubernetes.io/os": "linux"}
    log = capfd.readouterr().out
    assert "Pod setting replaced: spec.nodeSelector: {'kubernetes.io/arch': 'amd64'} -> " in log


def _two_context_kubeconfig(source: str, target: Path) -> str:
    """A kubeconfig whose current context points nowhere; the good one is named "local"."""
    cfg = yaml.safe_load(Path(source).read_text())
    good = cfg["contexts"][0]
    cfg["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}})
    cfg["contexts"] = [
        {"name": "local", "context": good["context"]},
        {"name": "broken", "context": {**good["context"], "cluster": "nowhere"}},
    ]
    cfg["current-context"] = "broken"
    target.write_text(yaml.safe_dump(cfg))
    return str(target)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_config_file_and_cluster_context_reach_worker_and_trigger(
    run_dag: Any, api_client: Any, namespace: str, local_cluster: Any, tmp_path: Path, deferrable: bool
) -> None:
    config = _two_context_kubeconfig(local_cluster.kubeconfig, tmp_path / "kubeconfig")
    with new_dag(f"ctx_{deferrable}") as dag:
        BatchJobOperator(
            task_id="ctx",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "sleep 2"],
            config_file=config,
            cluster_context="{{ 'local' }}",
            defer_after=0,
            deferrable=deferrable,
        )
        BatchJobOperator(
            task_id="default_context",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            config_file=config,
            deferrable=False,
            retries=0,
        )
    out = run_dag(dag)
    assert out["ctx"]["state"] == "success"
    assert out["ctx"]["xcom"]["return_value"]["outcome"]["state"] == "succeeded"
    assert out["default_context"]["state"] == "failed"  # the file's current context points nowhere


def test_group_and_indexed_operators_take_the_same_pod_settings(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    from airflow_batchjob.operators.indexed import IndexedJobOperator
    from airflow_batchjob.operators.jobgroup import JobGroupOperator

    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "t0k"}}
    )
    shared: dict[str, Any] = {
        "namespace": namespace,
        "image": "busybox:1.36",
        "secrets": [Secret("env", "TOKEN", "creds", "token")],
        "volumes": [k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())],
        "volume_mounts": [k8s.V1VolumeMount(name="scratch", mount_path="/scratch")],
        "node_selector": {"kubernetes.io/os": "linux"},
        "deferrable": False,
    }
    script = 'echo "$ITEM" > /scratch/x && ' + _report(token="$TOKEN", item="$(cat /scratch/x)")
    with new_dag("pod_settings_everywhere") as dag:
        JobGroupOperator(task_id="group", items=["a", "b"], cmds=["sh", "-c", script], **shared)
        # The Indexed worker runs Python: the worker image (on the node agent, the host's Python).
        IndexedJobOperator(
            task_id="indexed",
            items=["c", "d"],
            cmds=["sh", "-c", script],
            **{**shared, "image": WORKER_IMAGE},
        )
    out = run_dag(dag)
    assert [r["result"] for r in out["group"]["xcom"]["return_value"]] == [
        {"token": "t0k", "item": "a"},
        {"token": "t0k", "item": "b"},
    ]
    assert [r["result"] for r in out["indexed"]["xcom"]["return_value"]["items"]] == [
        {"token": "t0k", "item": "c"},
        {"token": "t0k", "item": "d"},
    ]

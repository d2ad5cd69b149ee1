"""Least privilege and secret hygiene, on the real cluster and brokers.

The whole suite already runs Airflow as a ServiceAccount bound only to deploy/rbac/role.yaml
(tests/conftest.py); here: the Role is exactly what README documents, a namespace without the
grant fails with a message that says what to do, and after real queue runs no broker password or
Kubernetes token shows up in Job specs, Pods, Pod logs, XCom or task logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from localcluster import cluster as lc
from tests.cluster.helpers import new_dag, worker_template
from tests.conftest import AIRFLOW_HOME

pytestmark = pytest.mark.cluster
ROLE = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "role.yaml"


def test_role_grants_exactly_the_documented_verbs() -> None:
    role = yaml.safe_load(ROLE.read_text())
    assert role["kind"] == "Role" and "namespace" not in role["metadata"]  # namespaced, applied per namespace
    grants = {
        (group, resource): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert grants == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "patch", "delete", "deletecollection"]),
        ("", "pods"): ["create", "get", "list", "watch"],  # create: Pod Security dry runs only
        ("", "pods/log"): ["get"],
        ("", "events"): ["list", "watch"],
        ("", "configmaps"): ["create", "get", "patch", "update"],
        ("", "secrets"): ["create", "get", "patch", "update"],
    }


def test_the_suite_runs_as_the_least_privileged_identity(local_cluster: lc.State, namespace: str) -> None:
    """``kubernetes_default`` is the ServiceAccount: allowed in a granted namespace, nowhere else."""
    from airflow_batchjob.hooks.batchjob import BatchJobHook

    hook = BatchJobHook()
    assert hook.list_jobs(namespace, "") == []
    auth = client.AuthorizationV1Api(hook.api)
    review = client.AuthenticationV1Api(hook.api).create_self_subject_review({})  # who am I
    assert review.status.user_info.username == "system:serviceaccount:batchjob-airflow:airflow"
    for ns, verb, group, resource in [
        (namespace, "create", "batch", "jobs"),
        ("kube-system", "list", "batch", "jobs"),
        (namespace, "list", "", "nodes"),
        (namespace, "delete", "", "secrets"),
        (namespace, "list", "", "secrets"),
    ]:
        attrs = {"namespace": ns, "verb": verb, "group": group, "resource": resource}
        sar = auth.create_self_subject_access_review({"spec": {"resourceAttributes": attrs}})
        assert sar.status.allowed == (ns == namespace and verb == "create"), attrs


@pytest.fixture
def forbidden_namespace(api_client: Any) -> Iterator[str]:
    """A namespace that exists but where the Airflow identity has no grant."""
    core = client.CoreV1Api(api_client)
    name = f"nogrant-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize("kind", ["job", "queue"])
def test_a_namespace_it_may_not_use_fails_clearly(
    run_dag: Any, api_client: Any, forbidden_namespace: str, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag(f"forbidden_{kind}") as dag:
        if kind == "job":
            BatchJobOperator(
                task_id="t", namespace=forbidden_namespace, image="busybox", cmds=["true"], retries=0
            )
        else:
            QueueJobOperator(
                task_id="t",
                namespace=forbidden_namespace,
                mode="variable",
                queue_name="q",
                image="worker",
                cmds=["true"],
                retries=0,
            )
    result = run_dag(dag)["t"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "KubernetesApiError: forbidden:" in out, out[-3000:]
    assert "system:serviceaccount:batchjob-airflow:airflow" in out
    assert f'in the namespace "{forbidden_namespace}"' in out
    assert "deploy/rbac/role.yaml" in out
    assert client.BatchV1Api(api_client).list_namespaced_job(forbidden_namespace).items == []


def test_no_secret_in_specs_pods_logs_or_xcom(
    run_dag: Any,
    api_client: Any,
    local_cluster: lc.State,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Both queue patterns for real; the program dumps its environment into its log on purpose."""
    secrets = {
        "redis password": local_cluster.redis_password,
        "rabbitmq password": local_cluster.rabbitmq_password,
        "admin token": local_cluster.token,
        "airflow token": lc.airflow_identity(local_cluster),
    }
    dump = 'env; printf "%s\\n" "$ITEM" >> /out/results'
    with new_dag("no_leaks") as dag:
        for broker, mode in (("redis", "variable"), ("rabbitmq", "pod_per_item")):
            prefill = QueuePrefillOperator(task_id=f"prefill_{broker}", broker=broker, items=["a", "b", "c"])
            consume = QueueJobOperator(
                task_id=f"consume_{broker}",
                namespace=namespace,
                mode=mode,  # type: ignore[arg-type]
                parallelism=2,
                queue_name=f"{{{{ ti.xcom_pull(task_ids='prefill_{broker}')['queue'] }}}}",
                count="3" if mode == "pod_per_item" else None,
                job_template=worker_template(tmp_path),
                cmds=["sh", "-c", dump],
            )
            prefill >> consume
    result = run_dag(dag)
    task_logs = capfd.readouterr()
    assert {t: r["state"] for t, r in result.items()} == {t: "success" for t in result}
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    artefacts: dict[str, str] = {
        "task logs (stdout)": task_logs.out,
        "task logs (stderr)": task_logs.err,
        "xcom": json.dumps({t: r["xcom"] for t, r in result.items()}, default=str),
        "jobs": batch.list_namespaced_job(namespace, _preload_content=False).data.decode(),
        "pods": core.list_namespaced_pod(namespace, _preload_content=False).data.decode(),
    }
    pods = json.loads(artefacts["pods"])["items"]
    assert len(pods) >= 4
    for pod in pods:
        name = pod["metadata"]["name"]
        log = core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
        # The program dumped its environment: the worker kept the broker URL out of it.
        assert "BATCHJOB_REDIS_URL" not in log and "BATCHJOB_AMQP_URL" not in log, log
        artefacts[f"log of pod {name}"] = log
    for f in (Path(AIRFLOW_HOME) / "logs").rglob("*"):
        if f.is_file():
            artefacts[f"airflow log {f}"] = f.read_text(errors="replace")
    assert any("ITEM=a" in text for name, text in artefacts.items() if name.startswith("log of pod"))
    leaks = [
        f"{secret} in {where}"
        for where, text in artefacts.items()
        for secret, value in secrets.items()
        if value in text
    ]
    assert leaks == []
    # The broker URLs reach Pods only by reference to a Secret owned by the Job.
    for pod in pods:
        for c in pod["spec"]["containers"]:
            for e in c.get("env") or []:
                if e["name"].startswith("BATCHJOB_") and e["name"].endswith("_URL"):
                    assert "value" not in e and e["valueFrom"]["secretKeyRef"]["key"] == "url"


def test_a_wait_where_watching_is_forbidden_fails_with_the_reason(forbidden_namespace: str) -> None:
    import asyncio
    import time

    from airflow_batchjob.triggers.job import wait_for_job

    event = asyncio.run(
        wait_for_job(namespace=forbidden_namespace, job_name="any", deadline=time.time() + 15)
    )
    assert event["status"] == "error" and "forbidden" in event["message"], event

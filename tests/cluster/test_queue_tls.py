"""Queue-backed Jobs over TLS, end to end through Airflow, on the real cluster and TLS brokers.

The ``rabbitmq_tls`` / ``redis_tls`` connections (``localcluster/brokers.py``) name a CA and a
client certificate; the brokers refuse clients without one (``tests/brokers/test_tls.py``). The
pre-fill connects with them directly; the Pods get them only through the Job's Secret, mounted
read-only, while the Job spec and the Pod spec carry neither PEM nor password.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.core.brokerconn import TLS_MOUNT_PATH
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from localcluster import brokers
from tests.cluster.helpers import PREFILLED_QUEUE, new_dag, pods_of_job, results, worker_template

pytestmark = pytest.mark.cluster
# The item, the mode of the mounted key and the program's environment (the worker keeps the
# broker URL out of it; the PEM must not be in it either).
RECORD = (
    'printf "%s\\n" "$ITEM" >> /out/results; '
    f'stat -c %a {TLS_MOUNT_PATH}/tls.key > /out/key-mode; env > "/out/env.$$"; '
    'echo "\\"ok $ITEM\\"" > "$BATCHJOB_RESULT_FILE"'
)


def never_shown(local_cluster: Any) -> list[str]:
    """The passwords and the body lines of the client's private key and certificate."""
    tls = Path(local_cluster.dir) / "broker-tls"
    lines = [line for f in ("client.key", "client.crt") for line in (tls / f).read_text().splitlines()]
    return [local_cluster.redis_password, local_cluster.rabbitmq_password] + [
        line for line in lines if not line.startswith("-----")
    ]


@pytest.fixture
def tls_cluster(local_cluster: Any) -> Any:
    if not brokers.has_tls(local_cluster):
        pytest.fail(f"the cluster in {local_cluster.dir} predates the brokers' TLS listeners: restart it")
    return local_cluster


def tls_dag(dag_id: str, namespace: str, broker: str, items: list[str], out: Path, **consume: Any) -> Any:
    conn_id = f"{broker}_tls"
    with new_dag(dag_id) as dag:
        prefill = QueuePrefillOperator(task_id="prefill", broker=broker, items=items, conn_id=conn_id)  # type: ignore[arg-type]
        job = QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            queue_name=PREFILLED_QUEUE,
            conn_id=conn_id,
            job_template=worker_template(out),
            cmds=["sh", "-c", RECORD],
            **consume,
        )
        prefill >> job
    return dag


def check_secret_and_specs(
    api_client: Any, namespace: str, job_name: str, local_cluster: Any, url_scheme: str
) -> None:
    """The Secret holds the URL and the PEM; the Job and its Pods refer to it and hold neither."""
    core = client.CoreV1Api(api_client)
    secret = core.read_namespaced_secret(QueueJobOperator.secret_name(job_name), namespace)
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    tls = Path(local_cluster.dir) / "broker-tls"
    assert set(data) == {"url", "ca.crt", "tls.crt", "tls.key"}
    assert data["tls.key"] == (tls / "client.key").read_text()
    assert data["ca.crt"] == (tls / "ca.crt").read_text()
    assert (
        data["url"].startswith(f"{url_scheme}://")
        and f"{TLS_MOUNT_PATH}/tls.key".replace("/", "%2F") in data["url"]
    )
    assert [o.kind for o in secret.metadata.owner_references] == ["Job"], "garbage-collected with the Job"
    job = (
        client.BatchV1Api(api_client)
        .read_namespaced_job(job_name, namespace, _preload_content=False)
        .data.decode()
    )
    pods = pods_of_job(api_client, namespace, job_name)
    assert pods
    pod_specs = [
        core.read_namespaced_pod(p.metadata.name, namespace, _preload_content=False).data.decode()
        for p in pods
    ]
    for text in [job, *pod_specs]:
        assert "BEGIN" not in text
        for secret_text in never_shown(local_cluster):
            assert secret_text not in text, "a credential or PEM line in a Job or Pod spec"
    spec = json.loads(pod_specs[0])["spec"]
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    assert volume["secret"]["defaultMode"] == 0o440
    assert {i["key"] for i in volume["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}, "not the url"
    (main,) = spec["containers"]
    assert {"name": volume["name"], "mountPath": TLS_MOUNT_PATH, "readOnly": True} in main["volumeMounts"]
    envs = main.get("env") or []
    assert all(
        "value" not in e for e in envs if e["name"].startswith("BATCHJOB_") and e["name"].endswith("_URL")
    )


def check_pod_side(out: Path, local_cluster: Any) -> None:
    assert (out / "key-mode").read_text().strip() == "440", "the key is mounted read-only, mode 0440"
    envs = [f.read_text() for f in out.glob("env.*")]
    assert envs
    for text in envs:
        assert "BEGIN" not in text
        for secret_text in never_shown(local_cluster):
            assert secret_text not in text, "a credential in the program's environment"


def test_rabbitmq_pod_per_item_over_tls(
    run_dag: Any,
    api_client: Any,
    tls_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    items = ["apple", "banana", "cherry", "date"]
    dag = tls_dag(
        "rabbit_tls",
        namespace,
        "rabbitmq",
        items,
        tmp_path,
        mode="pod_per_item",
        parallelism=2,
        count="{{ ti.xcom_pull(task_ids='prefill')['count'] }}",
    )
    result = run_dag(dag)
    out = "".join(capfd.readouterr())
    assert result["prefill"]["state"] == "success" and result["consume"]["state"] == "success", out[-3000:]
    assert results(tmp_path) == Counter(items), "each item exactly once"
    ret = result["consume"]["xcom"]["return_value"]
    assert ret["queue"]["pending"] == 0 and ret["queue"]["dead"] == 0
    assert "over TLS" in out
    check_tls_run(ret, out, items, api_client, namespace, tls_cluster, tmp_path, "amqps")


def check_tls_run(
    ret: dict[str, Any],
    out: str,
    items: list[str],
    api_client: Any,
    namespace: str,
    tls_cluster: Any,
    tmp_path: Path,
    scheme: str,
) -> None:
    """What both modes share: every item's result, the Secret and specs, the Pod side, no credential shown."""
    assert sorted(r["result"] for r in ret["results"]) == sorted(f"ok {i}" for i in items)
    check_secret_and_specs(api_client, namespace, ret["name"], tls_cluster, scheme)
    check_pod_side(tmp_path, tls_cluster)
    for secret_text in never_shown(tls_cluster):
        assert secret_text not in out, "a credential in the task log"


def test_redis_variable_over_tls(
    run_dag: Any,
    api_client: Any,
    tls_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    items = [f"item-{i}" for i in range(6)]
    dag = tls_dag("redis_tls", namespace, "redis", items, tmp_path, mode="variable", parallelism=2)
    result = run_dag(dag)
    out = "".join(capfd.readouterr())
    assert result["consume"]["state"] == "success", out[-3000:]
    assert results(tmp_path) == Counter(items)
    ret = result["consume"]["xcom"]["return_value"]
    assert ret["queue"]["done"] == 6 and ret["queue"]["pending"] == 0 and ret["queue"]["processing"] == 0
    check_tls_run(ret, out, items, api_client, namespace, tls_cluster, tmp_path, "rediss")


def test_missing_certificate_fails_before_anything_is_created(
    run_dag: Any,
    api_client: Any,
    tls_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = json.loads(os.environ["AIRFLOW_CONN_RABBITMQ_TLS"])
    doc["extra"]["ssl_ca_certs"] = str(tmp_path / "missing-ca.pem")
    monkeypatch.setenv("AIRFLOW_CONN_RABBITMQ_BADTLS", json.dumps(doc))
    with new_dag("rabbit_tls_bad") as dag:
        QueueJobOperator(
            task_id="consume",
            namespace=namespace,
            mode="pod_per_item",
            count=1,
            queue_name="never-filled",
            conn_id="rabbitmq_badtls",
            job_template=worker_template(tmp_path),
            cmds=["true"],
        )
    result = run_dag(dag)
    out = "".join(capfd.readouterr())
    assert result["consume"]["state"] == "failed"
    assert f"extra ssl_ca_certs: {tmp_path / 'missing-ca.pem'} is not a file on this Airflow worker" in out
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []
    secrets = client.CoreV1Api(api_client).list_namespaced_secret(namespace).items
    assert not [s.metadata.name for s in secrets if s.metadata.name.endswith("-broker")]

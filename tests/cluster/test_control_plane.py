"""The local control plane is real: the real Job controller counts Pods that really run.

These use only the plain ``kubernetes`` client (no project operators), so they prove the
foundation everything else is tested on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from tests.cluster.helpers import peak, pod_log, pods_of_job, span_events

pytestmark = pytest.mark.cluster


def job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    pod_spec = spec.pop("pod_spec", {})
    container = {
        "name": "main",
        "image": "busybox:1.36",
        "command": ["sh", "-c", script],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [container], **pod_spec}},
            **spec,
        },
    }


def wait_job(
    api_client: Any, ns: str, name: str, until: set[str], timeout: float = 120
) -> tuple[dict, list[str]]:
    """Watch the Job until one of ``until`` conditions is True; return it and the conditions seen."""
    batch = client.BatchV1Api(api_client)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    w = watch.Watch()
    for ev in w.stream(
        batch.list_namespaced_job, ns, field_selector=f"metadata.name={name}", timeout_seconds=int(timeout)
    ):
        j = api_client.sanitize_for_serialization(ev["object"])
        for c in (j.get("status") or {}).get("conditions") or []:
            if c["status"] == "True" and c["type"] not in seen:
                seen.append(c["type"])
        if until & set(seen):
            w.stop()
            return j, seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"job {ns}/{name}: none of {until} within {timeout}s; saw {seen}")


def test_completions_with_parallelism_never_exceed_it(
    api_client: Any, namespace: str, tmp_path: Path
) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    script = (  # /proc/uptime: busybox's date has no %N
        'read t _ < /proc/uptime; echo "$t 1" >> /spans/$HOSTNAME; sleep 1.5; '
        'read t _ < /proc/uptime; echo "$t -1" >> /spans/$HOSTNAME'
    )
    body = job(
        "three",
        script,
        completions=3,
        parallelism=2,
        pod_spec={"volumes": [{"name": "spans", "hostPath": {"path": str(spans)}}]},
        container={"volumeMounts": [{"name": "spans", "mountPath": "/spans"}]},
    )
    client.BatchV1Api(api_client).create_namespaced_job(namespace, body)
    j, seen = wait_job(api_client, namespace, "three", {"Complete", "Failed"})
    assert "Complete" in seen and "Failed" not in seen
    assert j["status"]["succeeded"] == 3
    pods = pods_of_job(api_client, namespace, "three")
    assert sorted(p.status.phase for p in pods) == ["Succeeded"] * 3
    events = span_events(*spans.iterdir())
    assert len(events) == 6
    most = peak(events)
    assert most == 2, f"expected 2 Pods at once at most and at some point, saw {most}"


def test_indexed_job_reports_indexes_and_pod_logs(api_client: Any, namespace: str) -> None:
    body = job("idx", "echo $JOB_COMPLETION_INDEX", completions=5, parallelism=5, completionMode="Indexed")
    client.BatchV1Api(api_client).create_namespaced_job(namespace, body)
    j, seen = wait_job(api_client, namespace, "idx", {"Complete", "Failed"})
    assert "Complete" in seen
    assert j["status"]["completedIndexes"] == "0-4"
    by_index = {}
    for p in pods_of_job(api_client, namespace, "idx"):
        index = p.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        by_index[index] = pod_log(api_client, namespace, p.metadata.name).strip()
    assert by_index == {str(i): str(i) for i in range(5)}


def test_backoff_limit_exceeded(api_client: Any, namespace: str) -> None:
    client.BatchV1Api(api_client).create_namespaced_job(namespace, job("fails", "exit 3", backoffLimit=1))
    j, _ = wait_job(api_client, namespace, "fails", {"Failed", "Complete"})
    failed = next(c for c in j["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2
    codes = {
        p.status.container_statuses[0].state.terminated.exit_code
        for p in pods_of_job(api_client, namespace, "fails")
    }
    assert codes == {3}


def test_pod_failure_policy_fail_job_on_exit_code(api_client: Any, namespace: str) -> None:
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}
        ]
    }
    client.BatchV1Api(api_client).create_namespaced_job(
        namespace, job("pfp", "exit 42", backoffLimit=6, podFailurePolicy=policy)
    )
    j, seen = wait_job(api_client, namespace, "pfp", {"Failed"})
    assert seen.index("FailureTarget") < seen.index("Failed")
    failed = next(c for c in j["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert j["status"]["failed"] == 1


def test_secret_env_and_config_map_volume(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "s"}, "stringData": {"password": "s3cr3t"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"greeting.txt": "hello"}}
    )
    body = job(
        "cfg",
        'echo "$PASSWORD"; cat /etc/cfg/greeting.txt',
        pod_spec={"volumes": [{"name": "cfg", "configMap": {"name": "cm"}}]},
        container={
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
        },
    )
    client.BatchV1Api(api_client).create_namespaced_job(namespace, body)
    _, seen = wait_job(api_client, namespace, "cfg", {"Complete", "Failed"})
    assert "Complete" in seen
    (pod,) = pods_of_job(api_client, namespace, "cfg")
    assert pod_log(api_client, namespace, pod.metadata.name).split() == ["s3cr3t", "hello"]


def test_foreground_delete_ends_the_process(api_client: Any, namespace: str, tmp_path: Path) -> None:
    batch = client.BatchV1Api(api_client)
    # "$$" is Kubernetes' escape for "$": the shell sees "echo $$".
    body = job(
        "sleeper",
        "echo $$$$ > /out/pid; exec sleep 300",
        pod_spec={"volumes": [{"name": "out", "hostPath": {"path": str(tmp_path)}}]},
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]},
    )
    batch.create_namespaced_job(namespace, body)
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the Pod's process never started"
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # running
    batch.delete_namespaced_job("sleeper", namespace, propagation_policy="Foreground")
    deadline = time.monotonic() + 60
    while True:
        try:
            batch.read_namespaced_job("sleeper", namespace)
        except client.ApiException as e:
            assert e.status == 404
            break
        assert time.monotonic() < deadline, "the Job was not deleted"
        time.sleep(0.2)
    assert not pods_of_job(api_client, namespace, "sleeper")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

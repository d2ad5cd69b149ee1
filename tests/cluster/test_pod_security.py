"""``pod_security="restricted"`` in a namespace that enforces Pod Security Admission's restricted
profile (the apiserver's own admission, so the node agent's cluster enforces it as a real one).

With the parameter every pattern runs (a Job, a group, an Indexed Job under the worker, a Redis
queue), each Pod as uid 65532 on the real node. Without it the Job would be admitted and each of
its Pods refused; the task fails before creating anything, with the admission's message, from a
dry run of one Pod. A namespace that only warns is not refused. And ``ignore_disruptions``: an
evicted Pod (as ``kubectl drain`` evicts it) fails a Job with ``backoff_limit=0`` without it, and
is replaced without counting with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from airflow_batchjob.core.naming import LABEL_TASK
from airflow_batchjob.core.podsecurity import NON_ROOT_ID
from airflow_batchjob.core.skipcodes import DISRUPTION_RULE
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator, QueuePrefillOperator
from localcluster import cluster as lc
from tests.cluster.helpers import jobs_in, new_dag

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
# Each program returns its uid, so the test sees who ran it.
UID = 'echo "{\\"uid\\": $(id -u)}" > "$BATCHJOB_RESULT_FILE"'
LABEL = "pod-security.kubernetes.io/"


def label(api_client: Any, namespace: str, **levels: str) -> None:
    """Set the namespace's Pod Security levels (``enforce="restricted"``, ``warn=...``), and wait
    until the admission (which reads namespaces from its cache) answers for a root Pod by them."""
    core = client.CoreV1Api(api_client)
    labels = {f"{LABEL}{mode}": level for mode, level in levels.items()}
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    pod = {"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    deadline = time.monotonic() + 30
    while True:
        try:
            resp = core.create_namespaced_pod(namespace, pod, dry_run="All", _preload_content=False)
            if "PodSecurity" in str(resp.headers.get("Warning")):
                return
        except ApiException as e:
            if "violates PodSecurity" in str(e.body):
                return
        assert time.monotonic() < deadline, f"the admission never applied {labels} to {namespace}"
        time.sleep(0.2)


@pytest.fixture
def restricted(api_client: Any, namespace: str) -> Iterator[str]:
    label(api_client, namespace, enforce="restricted")
    yield namespace


def patterns(namespace: str, queue: str, **given: Any) -> None:
    """The four patterns, each task with ``given`` (inside a DAG context)."""
    common = {"namespace": namespace, "retries": 0, **given}
    BatchJobOperator(
        task_id="job",
        image="busybox:1.36",
        cmds=["sh", "-c", UID],
        skip_on_exit_code=3,
        pod_failure_policy={
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
        },
        **common,
    )
    JobGroupOperator(
        task_id="group", items=["a", "b"], image="busybox:1.36", cmds=["sh", "-c", UID], **common
    )
    IndexedJobOperator(
        task_id="indexed",
        items=["foo", "bar"],
        image="worker",
        cmds=["sh", "-c", f"rev; {UID}"],
        **common,
    )
    prefill = QueuePrefillOperator(task_id="prefill", broker="redis", items=["x", "y", "z"], queue_name=queue)
    consume = QueueJobOperator(
        task_id="queue",
        mode="variable",
        parallelism=2,
        queue_name=queue,
        image="worker",
        cmds=["sh", "-c", f"cat >/dev/null; {UID}"],
        **common,
    )
    prefill >> consume


def test_every_pattern_runs_with_pod_security(
    run_dag: Any, api_client: Any, local_cluster: lc.State, restricted: str
) -> None:
    with new_dag("psa_restricted") as dag:
        patterns(restricted, f"psa-{restricted}", pod_security="restricted", ignore_disruptions=True)
    result = run_dag(dag)
    assert {t: r["state"] for t, r in result.items()} == dict.fromkeys(
        ("job", "group", "indexed", "prefill", "queue"), "success"
    )
    uids = [
        result["job"]["xcom"]["return_value"]["result"],
        *(row["result"] for row in result["group"]["xcom"]["return_value"]),
        *(row["result"] for row in result["indexed"]["xcom"]["return_value"]["items"]),
        *(row["result"] for row in result["queue"]["xcom"]["return_value"]["results"]),
    ]
    assert len(uids) == 8 and all(isinstance(u, dict) and "uid" in u for u in uids), uids
    if local_cluster.node == "real":  # the node agent runs Pods as host processes, without users
        assert {u["uid"] for u in uids} == {NON_ROOT_ID}
    for job in jobs_in(api_client, restricted):
        pod = job.spec.template.spec
        assert pod.security_context.run_as_non_root and pod.security_context.run_as_user == NON_ROOT_ID
        for c in pod.containers:
            assert c.security_context.allow_privilege_escalation is False
            assert c.security_context.capabilities.drop == ["ALL"]
        rules = client.ApiClient().sanitize_for_serialization(job.spec.pod_failure_policy)["rules"]
        assert rules[0] == DISRUPTION_RULE, rules  # merged first, and the apiserver took it
        if job.metadata.labels[LABEL_TASK] == "job":  # then skip_on_exit_code's, then the user's
            assert [r["action"] for r in rules] == ["Ignore", "FailJob", "FailJob"], rules


def test_without_it_the_task_fails_before_creating_anything(
    run_dag: Any, api_client: Any, restricted: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("psa_refused") as dag:
        patterns(restricted, f"psa-{restricted}")
    result = run_dag(dag)
    out = capfd.readouterr().out
    for task in ("job", "group", "indexed", "queue"):
        assert result[task]["state"] == "failed", task
    refusal = f"namespace {restricted} enforces Pod Security and refuses the Pods of Job psa-refused-"
    for task in ("job", "group", "indexed", "queue"):  # each task's own Job (a group's: its items')
        assert f"{refusal}{task}-" in out, (task, out[-3000:])
    assert 'violates PodSecurity "restricted:latest"' in out
    assert "(dry run, nothing was created)" in out and "pod_security='restricted'" in out
    core = client.CoreV1Api(api_client)
    assert not jobs_in(api_client, restricted)
    assert not core.list_namespaced_pod(restricted).items
    assert not core.list_namespaced_config_map(restricted, label_selector=LABEL_TASK).items
    assert not core.list_namespaced_secret(restricted, label_selector=LABEL_TASK).items


def test_a_namespace_that_only_warns_is_not_refused(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """enforce baseline, warn restricted (Kubernetes' advice while moving to restricted): the Job
    runs, and the task log carries the apiserver's warning."""
    label(api_client, namespace, enforce="baseline", warn="restricted")
    with new_dag("psa_warned") as dag:
        BatchJobOperator(task_id="job", namespace=namespace, image="busybox:1.36", cmds=["true"], retries=0)
    result = run_dag(dag)
    assert result["job"]["state"] == "success"
    assert (
        "the apiserver warns (its Pods are admitted now): would violate PodSecurity" in capfd.readouterr().out
    )


def evict_first_pod_of(api_client: Any, namespace: str, left: list[str], stop: threading.Event) -> None:
    """As ``kubectl drain`` does: evict (Eviction API) the first running Pod of each task, once;
    each task evicted leaves ``left``."""
    core = client.CoreV1Api(api_client)
    while left and not stop.is_set():
        for pod in core.list_namespaced_pod(namespace, label_selector=LABEL_TASK).items:
            task = pod.metadata.labels[LABEL_TASK]
            if task in left and pod.status.phase == "Running":
                body = {"metadata": {"name": pod.metadata.name, "namespace": namespace}}
                core.create_namespaced_pod_eviction(pod.metadata.name, namespace, body)
                left.remove(task)
        stop.wait(0.2)


def test_a_drained_pod_does_not_fail_the_job_with_ignore_disruptions(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    """backoff_limit 0: the evicted Pod (condition DisruptionTarget) fails the plain Job, and is
    replaced without counting under ignore_disruptions."""
    common = {"namespace": namespace, "image": "busybox:1.36", "cmds": ["sleep", "6"], "retries": 0}
    with new_dag("psa_disrupted") as dag:
        BatchJobOperator(task_id="plain", backoff_limit=0, **common)
        BatchJobOperator(task_id="ignored", backoff_limit=0, ignore_disruptions=True, **common)
    left, stop = ["plain", "ignored"], threading.Event()
    evictor = threading.Thread(target=evict_first_pod_of, args=(api_client, namespace, left, stop))
    evictor.start()
    try:
        result = run_dag(dag)
    finally:
        stop.set()
        evictor.join()
    assert left == []  # both tasks' first Pods were evicted
    assert result["plain"]["state"] == "failed"
    assert result["ignored"]["state"] == "success"
    (plain,) = jobs_in(api_client, namespace, f"{LABEL_TASK}=plain")
    (ignored,) = jobs_in(api_client, namespace, f"{LABEL_TASK}=ignored")
    assert plain.status.failed == 1 and any(
        c.reason == "BackoffLimitExceeded" for c in plain.status.conditions
    )
    assert ignored.status.succeeded == 1 and not ignored.status.failed  # the evicted Pod did not count

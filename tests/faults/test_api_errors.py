"""API errors for real: a proxy in front of the real apiserver answers 429 / 5xx to chosen requests.

The operators talk to the proxy through their own connection (the least-privilege
ServiceAccount token, like the rest of the suite); assertions use admin directly. Each test counts
the Jobs that exist afterwards: retries must never create a second one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_batchjob.hooks.batchjob import API_RETRIES
from airflow_batchjob.operators.job import BatchJobOperator
from localcluster import cluster as lc
from localcluster.faultproxy import FaultProxy, Rule
from tests.cluster.helpers import jobs_in, new_dag

pytestmark = pytest.mark.cluster
JOBS = r"^/apis/batch/v1/namespaces/[^/]+/jobs$"  # the collection: create, list, watch
# The real create, not the server-side dry run (dryRun=All) every operator sends first.
CREATE = r"^(?!.*dryRun=)"
DRY_RUN = r"dryRun=All"
CONN = "kubernetes_faulty"


@pytest.fixture
def proxy(local_cluster: lc.State, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FaultProxy]:
    p = FaultProxy(local_cluster).start()
    token = lc.airflow_identity(local_cluster)
    kubeconfig = lc.write_client_kubeconfig(local_cluster, tmp_path / "faulty.kubeconfig", token, p.url)
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": kubeconfig}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(conn))
    yield p
    p.stop()


def one_job_dag(dag_id: str, namespace: str, deferrable: bool = True, seconds: int = 1) -> DAG:
    with new_dag(dag_id) as dag:
        BatchJobOperator(
            task_id="job",
            namespace=namespace,
            kubernetes_conn_id=CONN,
            image="busybox:1.36",
            cmds=["sh", "-c", f"sleep {seconds}"],
            deferrable=deferrable,
            defer_after=0,  # deferrable: the whole wait runs in the trigger
        )
    return dag


def assert_one_job(api_client: Any, namespace: str, result: dict[str, Any]) -> None:
    """Exactly one Job exists, the one the task reported: no retry created a second."""
    (job,) = jobs_in(api_client, namespace)
    assert job.metadata.uid == result["xcom"]["job_uid"]


def test_create_throttled_429_is_retried_after_retry_after(
    run_dag: Any,
    api_client: Any,
    namespace: str,
    proxy: FaultProxy,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rule = proxy.add(Rule("POST", JOBS, status=429, times=3, retry_after=1, query=CREATE))
    result = run_dag(one_job_dag("api_429_create", namespace))["job"]
    out = capfd.readouterr().out + caplog.text
    assert result["state"] == "success", out[-3000:]
    assert rule.used == 3
    # the 4th attempt reached the apiserver, after the one dry run
    assert len(proxy.requests("POST", JOBS, injected=False, query=CREATE)) == 1
    assert [s.status for s in proxy.requests("POST", JOBS, query=DRY_RUN)] == [201]
    # Retry-After (1 s) is what it waited, not its own backoff (which would be 3-4 s by the third retry)
    assert f"429 Too Many Requests; retry 3 of {API_RETRIES - 1} in 1.0s" in out, out[-3000:]
    assert_one_job(api_client, namespace, result)


def test_create_answered_503_after_the_apiserver_created_it_makes_no_duplicate(
    run_dag: Any,
    api_client: Any,
    namespace: str,
    proxy: FaultProxy,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first create really happens but its answer is a 503: the retry meets 409 and adopts."""
    rule = proxy.add(Rule("POST", JOBS, status=503, times=1, after_forward=True, query=CREATE))
    result = run_dag(one_job_dag("api_503_lost_create", namespace))["job"]
    out = capfd.readouterr().out + caplog.text
    assert result["state"] == "success", out[-3000:]
    assert rule.used == 1
    statuses = [s.status for s in proxy.requests("POST", JOBS, query=CREATE)]
    assert statuses == [503, 409], statuses  # created (answer lost), then AlreadyExists: adopted
    assert "adopting Job" in out
    assert_one_job(api_client, namespace, result)


@pytest.mark.parametrize(
    ("dag_id", "times", "after_forward", "statuses"),
    [
        # The apiserver creates the Job, then the connection drops before the answer: retried, adopted.
        pytest.param("api_drop_create", 1, True, [0, 409], id="after-the-create-makes-no-duplicate"),
        # Two creates die with their connection before reaching the apiserver (as while it restarts).
        pytest.param("api_drop_before", 2, False, [0, 0, 201], id="before-the-apiserver-saw-it-is-retried"),
    ],
)
def test_connection_dropped_during_the_create(
    run_dag: Any,
    api_client: Any,
    namespace: str,
    proxy: FaultProxy,
    capfd: pytest.CaptureFixture[str],
    dag_id: str,
    times: int,
    after_forward: bool,
    statuses: list[int],
) -> None:
    rule = proxy.add(Rule("POST", JOBS, status=0, times=times, after_forward=after_forward, query=CREATE))
    result = run_dag(one_job_dag(dag_id, namespace, deferrable=False))["job"]
    out = capfd.readouterr().out
    assert result["state"] == "success", out[-3000:]
    assert rule.used == times
    assert [s.status for s in proxy.requests("POST", JOBS, query=CREATE)] == statuses
    assert_one_job(api_client, namespace, result)


def test_create_gives_up_with_a_clear_error(
    run_dag: Any,
    api_client: Any,
    namespace: str,
    proxy: FaultProxy,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.add(Rule("POST", JOBS, status=503, times=1000))
    result = run_dag(one_job_dag("api_503_forever", namespace))["job"]
    out = capfd.readouterr().out + caplog.text
    assert result["state"] == "failed"
    assert len(proxy.requests("POST", JOBS)) == API_RETRIES
    expected = (
        f"the Kubernetes API kept failing: POST /apis/batch/v1/namespaces/{namespace}/jobs answered 503 "
        f"Service Unavailable {API_RETRIES} times"
    )
    assert expected in out, out[-3000:]
    assert jobs_in(api_client, namespace) == []


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_errors_during_the_wait_are_retried(
    run_dag: Any,
    api_client: Any,
    namespace: str,
    proxy: FaultProxy,
    deferrable: bool,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch's list answers 500 twice, then the watch itself 429 twice and 503 once."""
    rules = [
        proxy.add(Rule("GET", JOBS, status=500, times=2, query=r"^(?!.*watch=)")),
        proxy.add(Rule("GET", JOBS, status=429, times=2, query=r"(?i)watch=true", retry_after=1)),
        proxy.add(Rule("GET", JOBS, status=503, times=1, query=r"(?i)watch=true")),
    ]
    result = run_dag(one_job_dag(f"api_wait_{deferrable}", namespace, deferrable, seconds=3))["job"]
    out = capfd.readouterr().out + caplog.text
    assert result["state"] == "success", out[-3000:]
    assert [r.used for r in rules] == [2, 2, 1], proxy.requests("GET", JOBS)
    assert result["xcom"]["return_value"]["outcome"]["state"] == "succeeded"
    assert_one_job(api_client, namespace, result)

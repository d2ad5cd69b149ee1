"""BatchJobOperator, JobTrigger and JobSensor on the real local cluster, through Airflow.

DAGs run with ``dag.test()``, which runs deferred tasks' triggers in line (so deferral really
happens); adoption runs the same task instance twice with ``airflow tasks test <run_id>``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pendulum
import pytest
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.hooks import watch as shared_watch
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.sensors.job import JobSensor
from airflow_batchjob.triggers.job import JobTrigger
from tests.cluster.helpers import jobs_in, new_dag, pods_in, script_template, sleeper

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_job_succeeds(run_dag: Any, namespace: str, deferrable: bool) -> None:
    with new_dag(f"ok_{deferrable}") as dag:
        BatchJobOperator(
            task_id="hello",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "echo hello $GREETING"],
            env={"GREETING": "{{ dag.dag_id }}"},
            deferrable=deferrable,
        )
    result = run_dag(dag)["hello"]
    assert result["state"] == "success"
    ret = result["xcom"]["return_value"]
    assert ret["namespace"] == namespace and ret["outcome"]["state"] == "succeeded"
    assert ret["outcome"]["reason"] == "CompletionsReached"
    assert result["xcom"]["job_name"] == ret["name"] and result["xcom"]["job_uid"] == ret["uid"]
    assert naming.is_dns1123_label(ret["name"]) and ret["name"].startswith(
        f"ok-{str(deferrable).lower()}-hello-"
    )


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_job_fails_with_every_failed_pod_log(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag(f"fails_{deferrable}") as dag:
        BatchJobOperator(
            task_id="boom",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "echo about to fail on $HOSTNAME; exit 4"],
            backoff_limit=2,
            deferrable=deferrable,
        )
    result = run_dag(dag)["boom"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    pods = pods_in(api_client, namespace)
    assert len(pods) == 3  # the first Pod and two replacements the controller created later
    for pod in pods:
        assert f"Pod {namespace}/{pod.metadata.name} container main exited 4 (Error)" in out
        assert f"about to fail on {pod.metadata.name}" in out
    assert "BackoffLimitExceeded" in out


def test_completions_and_parallelism(run_dag: Any, api_client: Any, namespace: str) -> None:
    with new_dag("counts") as dag:
        BatchJobOperator(
            task_id="three_by_two",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["sh", "-c", "sleep 0.5"],
            completions=3,
            parallelism=2,
        )
        # The peer hangs here (apache/airflow#64867): more parallelism than completions.
        BatchJobOperator(
            task_id="wide",
            namespace=namespace,
            image="busybox:1.36",
            cmds=["true"],
            completions=2,
            parallelism=5,
        )
    result = run_dag(dag)
    assert result["three_by_two"]["state"] == "success" and result["wide"]["state"] == "success"
    for task in ("three_by_two", "wide"):
        job = client.BatchV1Api(api_client).read_namespaced_job(result[task]["xcom"]["job_name"], namespace)
        assert job.status.succeeded == job.spec.completions


def test_waits_for_pods_not_created_yet(run_dag: Any, api_client: Any, namespace: str) -> None:
    """A quota stops the controller from creating Pods for a while: the task waits, then succeeds.

    The peer fails at once with "No pods running" (apache/airflow#70585).
    """
    core = client.CoreV1Api(api_client)
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    time.sleep(1)  # let the quota controller publish usage

    def lift() -> None:
        time.sleep(4)
        core.delete_namespaced_resource_quota("no-pods", namespace)

    with new_dag("late_pods") as dag:
        BatchJobOperator(task_id="late", namespace=namespace, image="busybox:1.36", cmds=["true"])
    t = threading.Thread(target=lift)
    t.start()
    result = run_dag(dag)["late"]
    t.join()
    assert result["state"] == "success"
    events = core.list_namespaced_event(namespace, field_selector="reason=FailedCreate").items
    assert events, "the quota should have stopped Pod creation at first"


def test_failed_job_is_replaced_on_retry(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    script = "if [ -e /out/once ]; then echo second; else touch /out/once; echo first; exit 1; fi"
    template = script_template(script, tmp_path, backoffLimit=0)
    with new_dag("retry") as dag:
        BatchJobOperator(
            task_id="flaky",
            namespace=namespace,
            job_template=template,
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
        )
    result = run_dag(dag)["flaky"]
    assert result["state"] == "success" and result["try_number"] == 2
    jobs = jobs_in(api_client, namespace)
    assert len(jobs) == 1, "the failed Job must be replaced, not kept beside the new one"
    assert jobs[0].metadata.uid == result["xcom"]["return_value"]["uid"]
    assert jobs[0].metadata.labels[naming.LABEL_TRY] == "2"


def _airflow(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    return subprocess.Popen(
        [airflow, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


# The subject is what Airflow and the API do (adoption, on_kill's deletes, one watch for many
# triggers), not what a container does: the node agent's lane, where Pods start several times
# faster; 388 s of the real-node lane, the suite's long pole, in CI run ci10.
@pytest.mark.agent_node
@pytest.mark.parametrize("deferrable", [False, True], ids=["in-worker", "deferrable"])
def test_same_task_instance_twice_adopts_the_job(
    airflow_db: Path, api_client: Any, namespace: str, deferrable: bool
) -> None:
    """Run a task instance, SIGKILL it mid-wait, run it again: one Job, adopted, right outcome."""
    env = {
        **os.environ,
        "BATCHJOB_TEST_NAMESPACE": namespace,
        "BATCHJOB_TEST_SLEEP": "25",
        "BATCHJOB_TEST_DEFERRABLE": str(deferrable).lower(),
    }
    run_id = f"adopt-{namespace}"
    trig = _airflow("dags", "trigger", "batchjob_adopt", "-r", run_id, env=env)
    assert trig.wait(120) == 0, trig.stdout.read() if trig.stdout else ""
    first = _airflow("tasks", "test", "batchjob_adopt", "sleepy", run_id, env=env)
    selector = naming.task_selector("batchjob_adopt", "sleepy", run_id)
    deadline = time.monotonic() + 120
    while not [j for j in jobs_in(api_client, namespace, selector) if (j.status.active or 0) > 0]:
        assert time.monotonic() < deadline and first.poll() is None, "the first run never started its Job"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    (job,) = jobs_in(api_client, namespace, selector)
    second = _airflow("tasks", "test", "batchjob_adopt", "sleepy", run_id, env=env)
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out[-3000:]
    assert "created Job" not in out
    if not deferrable:  # a deferred task may instead resume its trigger, which waits on the same uid
        assert f"adopting Job {namespace}/{job.metadata.name} (uid {job.metadata.uid})" in out
    assert re.search(rf"Job {namespace}/{job.metadata.name} succeeded", out), out[-4000:]
    (after,) = jobs_in(api_client, namespace, selector)
    assert after.metadata.uid == job.metadata.uid


@pytest.mark.agent_node  # see test_same_task_instance_twice_adopts_the_job
def test_fifty_triggers_share_one_watch(local_cluster: Any, api_client: Any, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    names = [f"many-{i}" for i in range(50)]
    for name in names:
        batch.create_namespaced_job(namespace, sleeper(name, 2))

    async def main() -> tuple[list[Any], int, int]:
        triggers = [JobTrigger(namespace=namespace, job_name=n) for n in names]
        gens = [t.run() for t in triggers]
        tasks = [asyncio.create_task(anext(g)) for g in gens]  # type: ignore[arg-type]
        await asyncio.sleep(1.0)
        reg = shared_watch.registry()
        watches, clients = len(reg.watches), len(reg.clients)
        events = await asyncio.gather(*tasks)
        for g in gens:
            await g.aclose()
        return events, watches, clients

    events, watches, clients = asyncio.run(main())
    assert watches == 1 and clients == 1
    assert sorted(e.payload["job"]["name"] for e in events) == sorted(names)
    assert {e.payload["job"]["state"] for e in events} == {"succeeded"}


@pytest.mark.agent_node  # see test_same_task_instance_twice_adopts_the_job
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("task", "pods"), [("sleepy", 1), ("sleepy_group", 3)])
def test_on_kill_deletes_the_job_and_pods(
    airflow_db: Path, api_client: Any, namespace: str, task: str, pods: int
) -> None:
    """SIGTERM to a task waiting in the worker: Airflow calls on_kill, which deletes its Job(s) and Pods."""
    env = {
        **os.environ,
        "BATCHJOB_TEST_NAMESPACE": namespace,
        "BATCHJOB_TEST_SLEEP": "300",
        "PYTHONFAULTHANDLER": "1",
    }
    run_id = f"kill-{namespace}"
    assert _airflow("dags", "trigger", "batchjob_adopt", "-r", run_id, env=env).wait(120) == 0
    proc = _airflow("tasks", "test", "batchjob_adopt", task, run_id, env=env)
    # Bounds, not preconditions: the Pods run 300 s, so a slow start only makes the wait longer
    # (both cases failed once on a real node at load 48, beside another cluster's 1,000-Pod test).
    deadline = time.monotonic() + 300
    while len([p for p in pods_in(api_client, namespace) if p.status.phase == "Running"]) < pods:
        assert time.monotonic() < deadline and proc.poll() is None, "the task never started its Pod"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=180)  # generous: under a loaded CI machine Airflow exits slowly
    except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
        os.kill(proc.pid, signal.SIGABRT)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the killed task did not exit within 180 s; its output and stacks:\n{out[-12000:]}")
    assert "because the task was killed" in out, out[-3000:]
    deadline = time.monotonic() + 120
    while jobs_in(api_client, namespace) or pods_in(api_client, namespace):
        assert time.monotonic() < deadline, "Job or Pods left behind after on_kill"
        time.sleep(0.2)


def test_trigger_on_kill_deletes_the_job(local_cluster: Any, api_client: Any, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job(namespace, sleeper("killme", 300))
    asyncio.run(
        JobTrigger(
            namespace=namespace, job_name="killme", job_uid=job.metadata.uid, delete_on_kill=True
        ).on_kill()
    )
    deadline = time.monotonic() + 60
    while jobs_in(api_client, namespace) or pods_in(api_client, namespace):
        assert time.monotonic() < deadline, "Job or Pods left behind after the trigger's on_kill"
        time.sleep(0.2)
    # Without delete_on_kill (sensors, or a triggerer restart path) nothing is deleted.
    batch.create_namespaced_job(namespace, sleeper("keepme", 300))
    asyncio.run(JobTrigger(namespace=namespace, job_name="keepme").on_kill())
    asyncio.run(JobTrigger(namespace=namespace, job_name="keepme", delete_on_kill=True).cleanup())
    assert [j.metadata.name for j in jobs_in(api_client, namespace)] == ["keepme"]


def test_success_policy_reports_success_before_pods_end(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    # Index 0 succeeds at once; the others take 5 s to stop after SIGTERM, so Complete comes later.
    script = (
        'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 0; fi; '
        "trap 'sleep 5; exit 0' TERM; sleep 300 & wait $!; sleep 5"
    )
    with new_dag("success_policy") as dag:
        BatchJobOperator(
            task_id="first_wins",
            namespace=namespace,
            image="busybox",
            cmds=["sh", "-c", script],
            completions=3,
            parallelism=3,
            completion_mode="Indexed",
            success_policy={"rules": [{"succeededIndexes": "0"}]},
        )
    result = run_dag(dag)["first_wins"]
    assert result["state"] == "success"
    outcome = result["xcom"]["return_value"]["outcome"]
    assert outcome["reason"] == "SuccessPolicy" and outcome["final"] is False
    assert outcome["completed_indexes"] == [0]


def test_bad_parameters_fail_before_anything_is_created(
    run_dag: Any, api_client: Any, namespace: str
) -> None:
    with pytest.raises(InvalidJobTemplateError, match="backoff_limit_per_index"):
        BatchJobOperator(task_id="x", image="busybox", max_failed_indexes=1)
    with pytest.raises(InvalidJobTemplateError, match="needs an image, a job_template"):
        BatchJobOperator(task_id="y")
    # Rendered by Jinja at run time, so checked then: still before anything is created.
    with new_dag("bad_template") as dag:
        BatchJobOperator(
            task_id="bad",
            namespace=namespace,
            image="busybox",
            cmds=["true"],
            job_template="{{ 'spec: {completions: -1}' }}",
            retries=3,
        )
    result = run_dag(dag)["bad"]
    assert result["state"] == "failed" and result["try_number"] == 1  # not retried: a retry cannot fix it
    assert not jobs_in(api_client, namespace)


def _create_later(api_client: Any, ns: str, name: str, delay: float, **spec: Any) -> threading.Thread:
    def create() -> None:
        time.sleep(delay)
        pod = {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", spec.pop("script", "true")]}
            ],
        }
        client.BatchV1Api(api_client).create_namespaced_job(
            ns,
            {
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"template": {"spec": pod}, **spec},
            },
        )

    t = threading.Thread(target=create)
    t.start()
    return t


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "poke"])
def test_sensor_waits_for_a_job_created_later(
    run_dag: Any, api_client: Any, namespace: str, deferrable: bool
) -> None:
    t = _create_later(api_client, namespace, "external", 3, script="sleep 1")
    with new_dag(f"sensor_later_{deferrable}") as dag:
        JobSensor(
            task_id="wait",
            namespace=namespace,
            label_selector="app=external",
            condition="Complete",
            deferrable=deferrable,
            poke_interval=1,
            timeout=120,
        )
    result = run_dag(dag)["wait"]
    t.join()
    assert result["state"] == "success"
    assert result["xcom"]["return_value"]["name"] == "external"
    assert result["xcom"]["return_value"]["final"] is True


def test_sensor_waits_for_suspended(run_dag: Any, api_client: Any, namespace: str) -> None:
    t = _create_later(api_client, namespace, "paused", 2, suspend=True)
    with new_dag("sensor_suspended") as dag:
        JobSensor(task_id="wait", namespace=namespace, job_name="paused", condition="Suspended", timeout=120)
    result = run_dag(dag)["wait"]
    t.join()
    assert result["state"] == "success" and result["xcom"]["return_value"]["state"] == "suspended"


def test_sensor_fails_fast_on_failure_target(run_dag: Any, api_client: Any, namespace: str) -> None:
    # The failing Pod's exit ends the Job through podFailurePolicy (FailureTarget) while another
    # Pod keeps running for minutes, so Failed (the terminal condition) comes only much later.
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    script = (
        'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 42; fi; '
        "trap 'sleep 20; exit 0' TERM; sleep 300 & wait $!; sleep 20"
    )
    t = _create_later(
        api_client,
        namespace,
        "doomed",
        0,
        script=script,
        completions=2,
        parallelism=2,
        completionMode="Indexed",
        podFailurePolicy=policy,
    )
    with new_dag("sensor_fail_fast") as dag:
        JobSensor(task_id="wait", namespace=namespace, job_name="doomed", condition="Complete", timeout=120)
    result = run_dag(dag)["wait"]
    t.join()
    assert result["state"] == "failed"
    job = client.BatchV1Api(api_client).read_namespaced_job("doomed", namespace)
    types = {c.type for c in job.status.conditions or [] if c.status == "True"}
    assert "FailureTarget" in types and "Failed" not in types, "the sensor must fail before the Job's Failed"

"""Live Pod logs in the task log (``triggers/podlogs.py``) on the real cluster, through the apiserver.

The node agent keeps container output as CRI records and serves the kubelet's log query
(``timestamps``, ``sinceTime``, ``follow``), so streams and resumption run as on a real node.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.triggers.job import wait_for_job
from localcluster import cluster as lc
from tests.cluster.helpers import jobs_in, pods_in
from tests.cluster.test_batchjob import _airflow

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]
LOGS = {"containers": None, "max_streams": 5, "max_lines": 1000, "tail_lines": 50}


def _job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
                }
            },
        },
    }


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_first_line_reaches_the_task_log_while_the_pod_runs(
    airflow_db: Any, api_client: Any, namespace: str, deferrable: bool
) -> None:
    """The Pod prints, sleeps 20 s, prints again: the first line is in the task log before it ends."""
    env = {
        **os.environ,
        "BATCHJOB_TEST_NAMESPACE": namespace,
        "BATCHJOB_TEST_SLEEP": "20",
        "BATCHJOB_TEST_DEFERRABLE": str(deferrable).lower(),
    }
    run_id = f"logs-{namespace}"
    assert _airflow("dags", "trigger", "batchjob_adopt", "-r", run_id, env=env).wait(120) == 0
    proc = _airflow("tasks", "test", "batchjob_adopt", "sleepy", run_id, env=env)
    assert proc.stdout is not None
    seen: list[str] = []
    pod_running_at_first_line = None
    try:
        for line in proc.stdout:
            seen.append(line)
            if pod_running_at_first_line is None and re.search(r"\[[\w.-]+\] started", line):
                pods = pods_in(api_client, namespace)
                pod_running_at_first_line = [p.status.phase for p in pods]
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(seen)
    assert pod_running_at_first_line == ["Running"], (pod_running_at_first_line, out[-3000:])
    (job,) = jobs_in(api_client, namespace, naming.task_selector("batchjob_adopt", "sleepy", run_id))
    assert len(re.findall(rf"\[{job.metadata.name}-\w+\] started", out)) == 1, out[-3000:]
    assert len(re.findall(rf"\[{job.metadata.name}-\w+\] done", out)) == 1, out[-3000:]


def test_apiserver_restart_mid_stream_loses_no_line(
    local_cluster: lc.State, api_client: Any, namespace: str
) -> None:
    script = "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.25; done"
    job = client.BatchV1Api(api_client).create_namespaced_job(namespace, _job("chatty", script))
    lines: list[str] = []

    async def main() -> dict[str, Any]:
        waiter = asyncio.create_task(
            wait_for_job(
                namespace=namespace,
                job_name="chatty",
                job_uid=job.metadata.uid,
                progress=lines.append,
                logs=LOGS,
            )
        )
        deadline = time.monotonic() + 60
        while not any("line-5" in x for x in lines):  # mid-stream
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.1)
        await asyncio.to_thread(lc.restart, local_cluster, "kube-apiserver", 2.0)
        return await asyncio.wait_for(waiter, 120)

    event = asyncio.run(main())
    assert event["job"]["state"] == "succeeded"
    got = [m.group(1) for x in lines if (m := re.search(r"\] (line-\d+)$", x))]
    assert got == [f"line-{i}" for i in range(1, 41)], got


def test_streams_and_lines_are_bounded(local_cluster: lc.State, api_client: Any, namespace: str) -> None:
    """Two streams at most, three lines each; a Pod that ended unfollowed shows its last two lines."""
    script = 'for i in 1 2 3 4 5 6; do echo "$JOB_COMPLETION_INDEX:$i"; done'
    job = client.BatchV1Api(api_client).create_namespaced_job(
        namespace, _job("bounded", script, completions=6, parallelism=6, completionMode="Indexed")
    )
    lines: list[str] = []
    logs = {"containers": None, "max_streams": 2, "max_lines": 3, "tail_lines": 2}
    event = asyncio.run(
        wait_for_job(
            namespace=namespace,
            job_name="bounded",
            job_uid=job.metadata.uid,
            progress=lines.append,
            logs=logs,
        )
    )
    assert event["job"]["state"] == "succeeded"
    text = "\n".join(lines)
    streamed = {m.group(1) for m in re.finditer(r"^\[index (\d) [\w-]+\] \d:1$", text, re.M)}
    tailed = {m.group(1) for m in re.finditer(r"^\[index (\d) [\w-]+\] \d:6$", text, re.M)}
    assert streamed and not streamed & tailed and streamed | tailed == set("012345"), text
    assert text.count("more lines not shown (max_log_lines=3)") == len(streamed), text
    assert not re.search(r"\] \d:4$", text, re.M), "a capped stream shows no 4th line"
    if tailed:
        assert "not followed (max_log_streams=2): a Pod that ended meanwhile shows its last 2 lines" in text


def test_no_logs_when_get_logs_is_off(local_cluster: lc.State, api_client: Any, namespace: str) -> None:
    job = client.BatchV1Api(api_client).create_namespaced_job(namespace, _job("quiet", "echo hidden"))
    lines: list[str] = []
    asyncio.run(
        wait_for_job(namespace=namespace, job_name="quiet", job_uid=job.metadata.uid, progress=lines.append)
    )
    assert not any("hidden" in x for x in lines)

"""The triggerer dies mid-wait (SIGKILL, for real) and a new one rebuilds the trigger from its row.

A triggerer stores ``serialize()``'s classpath and kwargs; after a crash another triggerer imports
the class and calls it with those kwargs (JSON-decoded) in its own event loop. The rebuilt trigger
must report the right outcome and the crash must not delete the Job (``delete_on_kill`` is for a
user killing the task, not for a triggerer going away).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.triggers.job import JobTrigger
from localcluster import cluster as lc
from tests.cluster.helpers import held, release, sleeper
from tests.faults.helpers import wait_until

pytestmark = pytest.mark.cluster

FIRST_TRIGGERER = """
import asyncio, importlib, json, sys
classpath, kwargs = json.loads(sys.argv[1])
module, _, name = classpath.rpartition(".")
trigger = getattr(importlib.import_module(module), name)(**kwargs)
async def main():
    agen = trigger.run()
    task = asyncio.ensure_future(agen.__anext__())
    await asyncio.sleep(1)
    print("waiting", flush=True)
    print("EVENT", (await task).payload, flush=True)
asyncio.run(main())
"""


def rebuild(row: str) -> Any:
    classpath, kwargs = json.loads(row)
    module, _, name = classpath.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)(**kwargs)


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def test_trigger_rebuilt_after_the_triggerer_is_killed(
    local_cluster: lc.State, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    batch = client.BatchV1Api(api_client)
    # Held until the first triggerer is dead: it cannot finish first however slowly it starts.
    job = batch.create_namespaced_job(namespace, held("through-crash", tmp_path))
    trigger = JobTrigger(
        namespace=namespace, job_name="through-crash", job_uid=job.metadata.uid, delete_on_kill=True
    )
    row = json.dumps(trigger.serialize())  # what the triggerer keeps in its database

    first = subprocess.Popen(
        [sys.executable, "-c", FIRST_TRIGGERER, row],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert first.stdout is not None
        seen = []
        while not seen or seen[-1].strip() != "waiting":  # its log lines come first
            seen.append(first.stdout.readline())
            assert seen[-1], "".join(seen)
        time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)  # the triggerer dies mid-wait
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, "the first triggerer finished before it was killed"
    assert batch.read_namespaced_job("through-crash", namespace).metadata.uid == job.metadata.uid
    release(tmp_path)
    event = asyncio.run(asyncio.wait_for(first_event(rebuild(row)), 120))  # a new triggerer, a new loop
    assert event["status"] == "met" and event["job"]["state"] == "succeeded", event
    assert event["job_uid"] == job.metadata.uid
    assert [j.metadata.uid for j in batch.list_namespaced_job(namespace).items] == [job.metadata.uid]


def test_trigger_cancelled_by_a_stopping_triggerer_leaves_the_job(
    local_cluster: lc.State, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    """A triggerer shutting down cancels its triggers: the Job must keep running, then be waited on."""
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job(namespace, held("through-stop", tmp_path))
    trigger = JobTrigger(
        namespace=namespace, job_name="through-stop", job_uid=job.metadata.uid, delete_on_kill=True
    )
    row = json.dumps(trigger.serialize())

    async def stop_midway() -> None:
        task = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await trigger.cleanup()

    asyncio.run(stop_midway())
    wait_until(
        lambda: batch.read_namespaced_job("through-stop", namespace).status.active, 30, "an active Pod"
    )
    release(tmp_path)
    event = asyncio.run(asyncio.wait_for(first_event(rebuild(row)), 120))
    assert event["status"] == "met" and event["job"]["state"] == "succeeded", event
    assert [j.metadata.uid for j in batch.list_namespaced_job(namespace).items] == [job.metadata.uid]


def test_group_trigger_rebuilt_after_a_kill_resumes_the_queued_jobs(
    local_cluster: lc.State, api_client: Any, namespace: str
) -> None:
    """max_active=1 over 4 Jobs: the triggerer dies after resuming some; the rebuilt one resumes the rest."""
    from airflow_batchjob.core.group import ANNOTATION_ITEM_INDEX, ANNOTATION_QUEUED, GroupGoal
    from airflow_batchjob.triggers.jobgroup import JobGroupTrigger

    batch = client.BatchV1Api(api_client)
    names = [f"member-{i}" for i in range(4)]
    for i, name in enumerate(names):
        body = sleeper(name, 2)
        body["metadata"]["labels"] = {"group": "restart"}
        body["metadata"]["annotations"] = {ANNOTATION_ITEM_INDEX: str(i)}
        if i:  # queued behind max_active=1, as JobGroupOperator creates them
            body["spec"]["suspend"] = True
            body["metadata"]["annotations"][ANNOTATION_QUEUED] = "true"
        batch.create_namespaced_job(namespace, body)
    trigger = JobGroupTrigger(
        namespace=namespace,
        label_selector="group=restart",
        goal=GroupGoal(expected=4).to_dict(),
        max_active=1,
    )
    row = json.dumps(trigger.serialize())

    def resumed() -> int:
        return sum(1 for j in batch.list_namespaced_job(namespace).items if not j.spec.suspend)

    first = subprocess.Popen(
        [sys.executable, "-c", FIRST_TRIGGERER, row],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        wait_until(
            lambda: resumed() >= 2 or first.poll() is not None, 120, "the first triggerer to resume a Job"
        )
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL, "the first triggerer finished before it was killed"
    assert resumed() < 4, "nothing left for the rebuilt trigger to do"

    event = asyncio.run(asyncio.wait_for(first_event(rebuild(row)), 180))
    assert event["status"] == "met", event
    assert event["counts"]["succeeded"] == 4, event
    jobs = batch.list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == names
    assert not any(j.spec.suspend for j in jobs)
    # The event may come at SuccessCriteriaMet, a moment before status.succeeded counts the Pod.
    wait_until(
        lambda: all(j.status.succeeded == 1 for j in batch.list_namespaced_job(namespace).items),
        60,
        "every Job's status to count its succeeded Pod",
    )

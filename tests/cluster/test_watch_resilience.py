"""The shared watch survives a kube-apiserver restart and a compacted resourceVersion (410 Gone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.core.watchscope import Scope
from airflow_batchjob.hooks.batchjob import async_api_client
from airflow_batchjob.hooks.watch import COUNTERS, NamespaceWatch, subscription
from airflow_batchjob.triggers.job import wait_for_job
from localcluster import cluster as lc
from tests.cluster.helpers import held, release, sleeper

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def test_wait_survives_an_apiserver_restart(
    local_cluster: lc.State, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    batch = client.BatchV1Api(api_client)
    # Held until the apiserver is back: the Job ends after the restart, not before it.
    job = batch.create_namespaced_job(namespace, held("through-restart", tmp_path))

    async def main() -> dict[str, Any]:
        waiter = asyncio.create_task(
            wait_for_job(namespace=namespace, job_name="through-restart", job_uid=job.metadata.uid)
        )
        await asyncio.sleep(1.5)
        await asyncio.to_thread(lc.restart, local_cluster, "kube-apiserver", 2.0)  # down ~2 s, then back
        assert not waiter.done(), "the wait ended while its Job was held"
        release(tmp_path)
        return await asyncio.wait_for(waiter, 120)

    event = asyncio.run(main())
    assert event["status"] == "met" and event["job"]["state"] == "succeeded"
    assert event["job"]["uid"] == job.metadata.uid
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["through-restart"]


def test_compacted_resource_version_relists(local_cluster: lc.State, api_client: Any, namespace: str) -> None:
    """Resuming from a version the apiserver no longer has (410 Gone) lists afresh and carries on:
    a Job created after that is delivered by the watch."""
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(namespace, sleeper("already-there", 1))

    async def main() -> tuple[list[str], list[str], int]:
        async with async_api_client("kubernetes_default") as api:
            nw = NamespaceWatch(api, namespace)
            nw.resource_version = "1"  # as if resuming from a long-compacted version
            sub = nw.subscribe(Scope())
            try:
                deadline = time.monotonic() + 30

                async def until(done: Callable[[], bool]) -> None:
                    while not done():
                        await asyncio.wait_for(sub.queue.get(), max(0.1, deadline - time.monotonic()))

                # the refused watch, then a fresh list (the watch's new version comes from it)
                await until(
                    lambda: sub.synced and nw.resource_version not in (None, "1") and nw.requests >= 3
                )
                first = sorted(sub.jobs)
                await asyncio.to_thread(batch.create_namespaced_job, namespace, sleeper("later", 1))
                await until(lambda: "later" in sub.jobs)
                return first, sorted(sub.jobs), nw.requests
            finally:
                await nw.unsubscribe(sub)

    first, names, requests = asyncio.run(main())
    assert first == ["already-there"]
    assert names == ["already-there", "later"]
    assert requests >= 4  # list, refused watch, list, watch


@pytest.mark.agent_node  # no Pod of the namespace's history runs: suspended Jobs
def test_a_wait_lists_and_keeps_only_what_it_waits_on(
    local_cluster: lc.State, api_client: Any, namespace: str
) -> None:
    """Other Jobs of the namespace (its history) are never listed nor kept: one wait reads one Job."""
    batch = client.BatchV1Api(api_client)
    for i in range(30):
        old = sleeper(f"history-{i}", 1)
        old["spec"]["suspend"] = True
        batch.create_namespaced_job(namespace, old)
    job = batch.create_namespaced_job(namespace, sleeper("mine", 1))
    before = dict(COUNTERS)

    async def main() -> tuple[dict[str, Any], list[str]]:
        async with subscription("kubernetes_default", namespace, Scope(), async_api_client) as everything:
            # A waiter of the whole namespace lists it all; a wait on one Job, sharing its watch,
            # lists just that Job.
            while not everything.synced:
                await everything.queue.get()
            event = await wait_for_job(namespace=namespace, job_name="mine", job_uid=job.metadata.uid)
            return event, sorted(everything.jobs)

    event, everything = asyncio.run(main())
    assert event["status"] == "met" and event["job"]["state"] == "succeeded"
    assert len(everything) == 31 and "mine" in everything
    # The whole-namespace subscriber listed 31 Jobs; the wait itself listed only its own Job.
    assert COUNTERS["listed_objects"] - before["listed_objects"] == 31 + 1
    assert COUNTERS["lists"] - before["lists"] == 2

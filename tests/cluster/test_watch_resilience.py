"""The shared watch survives a kube-apiserver restart and a compacted resourceVersion (410 Gone)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client

from airflow_batchjob.hooks.batchjob import async_api_client
from airflow_batchjob.hooks.watch import NamespaceWatch
from airflow_batchjob.triggers.job import wait_for_job
from localcluster import cluster as lc
from tests.cluster.helpers import sleeper

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def test_wait_survives_an_apiserver_restart(local_cluster: lc.State, api_client: Any, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job(namespace, sleeper("through-restart", 8))

    async def main() -> dict[str, Any]:
        waiter = asyncio.create_task(
            wait_for_job(namespace=namespace, job_name="through-restart", job_uid=job.metadata.uid)
        )
        await asyncio.sleep(1.5)
        await asyncio.to_thread(lc.restart, local_cluster, "kube-apiserver", 2.0)  # down ~2 s, then back
        return await asyncio.wait_for(waiter, 120)

    event = asyncio.run(main())
    assert event["status"] == "met" and event["job"]["state"] == "succeeded"
    assert event["job"]["uid"] == job.metadata.uid
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["through-restart"]


def test_compacted_resource_version_relists(local_cluster: lc.State, api_client: Any, namespace: str) -> None:
    """Resuming from a version the apiserver no longer has (410 Gone) re-lists and carries on."""
    client.BatchV1Api(api_client).create_namespaced_job(namespace, sleeper("already-there", 1))

    async def main() -> tuple[list[str], int]:
        async with async_api_client("kubernetes_default") as api:
            nw = NamespaceWatch(api, namespace)
            nw.resource_version = "1"  # as if resuming from a long-compacted version
            sub = nw.subscribe(lambda job: True)
            try:
                deadline = time.monotonic() + 30
                while True:
                    event, _ = await asyncio.wait_for(sub.queue.get(), max(0.1, deadline - time.monotonic()))
                    if event == "SYNC":
                        return sorted(sub.jobs), nw.requests
            finally:
                await nw.unsubscribe(sub)

    names, requests = asyncio.run(main())
    assert names == ["already-there"]
    assert requests >= 2  # the refused watch, then the list (and the watch from its version)

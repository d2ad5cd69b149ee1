"""The Job calls a wait makes besides its watch, async: in the triggerer or a worker's event loop.

``wait_for_job`` asks which Jobs exist now, ``wait_for_group`` resumes queued Jobs (on the watch's
client: ``Subscription.api``), and the triggers' ``on_kill`` deletes what the task started (on a
client of its own: the wait's is gone by then). A status that is part of the answer (a Job gone:
404) is folded into it. An error the caller acts on comes out as
:class:`~airflow_batchjob.exceptions.KubernetesCallError`; any other propagates as the client
raised it, so the events and log lines that name it read as they always have.
"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client as aclient
from kubernetes_asyncio.client.exceptions import ApiException

from airflow_batchjob.exceptions import KubernetesCallError
from airflow_batchjob.hooks.batchjob import async_api_client

KILL_TIMEOUT_SECONDS = 30.0  # a delete on kill is bounded: the triggerer gives on_kill 30 s in all


async def current_job_uids(
    api: aclient.ApiClient | None, namespace: str, name: str | None, selector: str | None
) -> set[str]:
    """The uids of the Jobs that exist now (by name, else by label selector), read fresh, not from
    a watch that may lag; none without a client."""
    if api is None:
        return set()
    batch = aclient.BatchV1Api(api)
    try:
        if name:
            job = await batch.read_namespaced_job(name, namespace)
            return {job.metadata.uid}
        jobs = await batch.list_namespaced_job(namespace, label_selector=selector or "")
        return {j.metadata.uid for j in jobs.items}
    except ApiException as e:
        if e.status == 404:
            return set()
        raise


async def resume_jobs(api: aclient.ApiClient, namespace: str, names: list[str]) -> None:
    """Unsuspend these Jobs, all at once; one deleted meanwhile (404) is skipped."""
    batch = aclient.BatchV1Api(api)
    body = {"spec": {"suspend": False}}

    async def one(name: str) -> None:
        try:
            await batch.patch_namespaced_job(name, namespace, body)
        except ApiException as e:
            if e.status != 404:
                raise

    await asyncio.gather(*(one(n) for n in names))


async def delete_job(
    conn_id: str,
    namespace: str,
    name: str,
    *,
    uid: str | None = None,
    propagation_policy: str = "Background",
    timeout: float = KILL_TIMEOUT_SECONDS,
) -> None:
    """Delete the Job (only if its uid is still ``uid``, when given) within ``timeout`` seconds.

    An API error raises ``KubernetesCallError``; running out of time, ``TimeoutError``.
    """
    async with async_api_client(conn_id) as api:
        body = aclient.V1DeleteOptions(
            propagation_policy=propagation_policy,
            preconditions=aclient.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            await asyncio.wait_for(
                aclient.BatchV1Api(api).delete_namespaced_job(name, namespace, body=body), timeout
            )
        except ApiException as e:
            raise KubernetesCallError(e.status, e.reason) from e


async def delete_jobs(
    conn_id: str, namespace: str, label_selector: str, *, timeout: float = KILL_TIMEOUT_SECONDS
) -> None:
    """Delete every Job the selector matches, and their Pods (in the background), in one call."""
    async with async_api_client(conn_id) as api:
        await asyncio.wait_for(
            aclient.BatchV1Api(api).delete_collection_namespaced_job(
                namespace, label_selector=label_selector, propagation_policy="Background"
            ),
            timeout,
        )

"""Kueue's objects, read for the waits and the operators (issue 33): LocalQueues and Workloads.

Workloads are followed by the shared namespace watch (``hooks/watch.py``, kind ``workloads``):
``kueue_workloads`` is its list/watch call. ``check_local_queue`` runs before a Job is created,
so a queue that does not exist fails the task naming it, instead of a Job nobody ever admits.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import client as aclient

from airflow_batchjob.core.kueue import GROUP, VERSION
from airflow_batchjob.exceptions import InvalidJobTemplateError


class LocalQueueMissingError(InvalidJobTemplateError):
    """The Job's LocalQueue does not exist (or Kueue is not installed): nothing was created."""


def kueue_workloads(api: aclient.CustomObjectsApi, namespace: str, **kwargs: Any) -> Any:
    """List (or, with ``watch=True``, watch) the Workloads of ``namespace``: the shared watch's call."""
    return api.list_namespaced_custom_object(GROUP, VERSION, namespace, "workloads", **kwargs)


def check_local_queue(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The LocalQueue ``namespace/name``; raise ``LocalQueueMissingError`` naming it if there is none."""
    try:
        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "localqueues", name
        )
    except ApiException as e:
        if e.status == 404:  # no such LocalQueue, or no such kind (Kueue not installed)
            installed = "localqueues.kueue.x-k8s.io" in str(e.body)
            raise LocalQueueMissingError(
                f"Kueue LocalQueue {namespace}/{name} (queue_name={name!r}) does not exist"
                + ("" if installed else ", or Kueue is not installed in this cluster")
                + ": create it (kind LocalQueue, spec.clusterQueue) or fix queue_name; no Job was created"
            ) from e
        if e.status == 403:
            raise LocalQueueMissingError(
                f"cannot read Kueue LocalQueue {namespace}/{name}: {e.status} {e.reason}; grant get "
                "on localqueues, get/list/watch on workloads (kueue.x-k8s.io): deploy/rbac/kueue-role.yaml"
            ) from e
        raise
    return dict(found)


def served_versions(api: client.ApiClient) -> list[str]:
    """The versions of Kueue's API the cluster serves (API discovery, open to any identity);
    none when Kueue is not installed."""
    groups = client.ApisApi(api).get_api_versions().groups or []
    return [v.version for g in groups if g.name == GROUP for v in g.versions or []]

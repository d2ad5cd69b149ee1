"""The only module that talks to the Kubernetes API (with the watch in ``hooks/watch.py``).

It reuses cncf.kubernetes' ``KubernetesHook`` / ``AsyncKubernetesHook`` for connections (the
``kubernetes_default`` connection and its kubeconfig / in-cluster options) and its retry policy
for transient API errors (429 with Retry-After, 5xx), and works on plain API dicts.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import generic_api_retry
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import client as aclient

Obj = dict[str, Any]


def _json(resp: Any) -> Any:
    return json.loads(resp.data)


class BatchJobHook:
    """Create, read, list and delete Jobs, Pods, Secrets and ConfigMaps as plain API dicts."""

    def __init__(self, kubernetes_conn_id: str = "kubernetes_default") -> None:
        self.conn_id = kubernetes_conn_id
        self.kube = KubernetesHook(conn_id=kubernetes_conn_id)
        self._api: client.ApiClient | None = None

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = self.kube.api_client
        return self._api

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def default_namespace(self) -> str:
        return self.kube.get_namespace() or "default"

    # -- Jobs ------------------------------------------------------------------------------
    @generic_api_retry
    def create_job(self, namespace: str, body: Obj) -> Obj:
        return dict(_json(self.batch.create_namespaced_job(namespace, body, _preload_content=False)))

    @generic_api_retry
    def get_job(self, namespace: str, name: str) -> Obj | None:
        try:
            return dict(_json(self.batch.read_namespaced_job(name, namespace, _preload_content=False)))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @generic_api_retry
    def list_jobs(self, namespace: str, label_selector: str) -> list[Obj]:
        resp = self.batch.list_namespaced_job(
            namespace, label_selector=label_selector, _preload_content=False
        )
        return list(_json(resp)["items"])

    @generic_api_retry
    def delete_job(
        self, namespace: str, name: str, propagation_policy: str = "Background", uid: str | None = None
    ) -> bool:
        """Delete the Job and (by propagation) its Pods; False if it was already gone."""
        body = client.V1DeleteOptions(
            propagation_policy=propagation_policy,
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            self.batch.delete_namespaced_job(name, namespace, body=body)
            return True
        except ApiException as e:
            if e.status in (404, 409):  # gone, or a newer Job of the same name (uid precondition)
                return False
            raise

    def wait_deleted(self, namespace: str, name: str, uid: str, timeout: float = 60) -> None:
        """Block until the Job with this uid is gone, so a Job of the same name can be created."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(namespace, name)
            if job is None or job["metadata"]["uid"] != uid:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Job {namespace}/{name} still exists {timeout:.0f}s after its deletion")
            time.sleep(0.2)

    # -- Pods ------------------------------------------------------------------------------
    @generic_api_retry
    def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=label_selector, _preload_content=False)
        return list(_json(resp)["items"])

    @generic_api_retry
    def pod_log_tail(self, namespace: str, pod: str, container: str | None = None, lines: int = 50) -> str:
        """The last ``lines`` lines of a container's log ("" when the log is gone)."""
        try:
            resp = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines, _preload_content=False
            )
        except ApiException as e:
            if e.status in (400, 404):
                return ""
            raise
        return bytes(resp.data).decode(errors="replace")


@contextlib.asynccontextmanager
async def async_api_client(conn_id: str) -> AsyncIterator[aclient.ApiClient]:
    """An async API client from the Airflow connection, via cncf.kubernetes' async hook."""
    hook = AsyncKubernetesHook(conn_id=conn_id)
    async with hook.get_conn() as api:
        yield api

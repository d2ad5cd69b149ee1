"""The operators' Kubernetes calls; a wait's are in ``hooks/watch.py``, ``asyncjobs.py``, ``podlogs.py``.

It reuses cncf.kubernetes' ``KubernetesHook`` / ``AsyncKubernetesHook`` for connections (the
``kubernetes_default`` connection and its kubeconfig / in-cluster options) and works on plain
API dicts. Every request of the hook's client (``hook.core`` / ``hook.batch`` calls included) is
retried on transient errors: 429 (honouring Retry-After), 500/502/503/504 and dropped
connections, with exponential backoff, ``[workers] api_retries`` attempts in all (cncf's
setting, default 5). Never on 409: a create that really happened before its response was lost
comes back as 409 AlreadyExists, and the operators adopt that Job (deterministic names), so a
retried create never makes a second Job. Errors come out as :class:`KubernetesApiError` (an
``ApiException``: ``status`` kept) whose message says what failed, for 401/403 what to grant,
and after the last retry how long it tried.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import urllib3.exceptions
from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes_asyncio import client as aclient

from airflow_batchjob import config
from airflow_batchjob._compat import API_RETRIES, API_RETRY_WAIT_MAX, API_RETRY_WAIT_MIN
from airflow_batchjob.exceptions import BatchJobError

Obj = dict[str, Any]
log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX = 60.0  # seconds: a longer Retry-After is capped


class KubernetesApiError(ApiException):
    """An ``ApiException`` (``status``, ``reason``, ``body``, ``headers`` kept) with a readable message."""

    message: str = ""

    def __str__(self) -> str:
        return self.message


def _api_message(e: ApiException) -> str:
    """The apiserver's own explanation (the Status ``message``), else the reason phrase."""
    with contextlib.suppress(Exception):
        body = e.body.decode() if isinstance(e.body, bytes) else e.body
        return str(json.loads(body)["message"])
    return str(e.reason or "")


def explain(
    e: ApiException, method: str, url: str, conn_id: str, attempts: int, seconds: float
) -> KubernetesApiError:
    """Wrap an API error in a message that names the request and, for 401/403, the fix."""
    path = urllib.parse.urlsplit(url).path
    what = f"{method} {path}"
    detail = _api_message(e)
    if e.status == 403:
        text = (
            f"forbidden: {detail}. The identity of connection {conn_id!r} lacks a permission the provider "
            "needs in that namespace: bind it to the Role in deploy/rbac/role.yaml there "
            f"(README, 'On a real cluster'), or pick a namespace it may use. ({what})"
        )
    elif e.status == 401:
        text = (
            f"unauthorized: the apiserver rejected the credentials of connection {conn_id!r} "
            f"(expired or revoked token?): {detail} ({what})"
        )
    elif attempts > 1:
        text = (
            f"the Kubernetes API kept failing: {what} answered {e.status} {e.reason} "
            f"{attempts} times over {seconds:.0f}s; giving up: {detail}"
        )
    else:
        text = f"{what} failed: {e.status} {e.reason}: {detail}"
    err = KubernetesApiError.__new__(KubernetesApiError)
    err.__dict__.update(e.__dict__)
    err.args = (text,)
    err.message = text
    return err


def _retry_after(e: ApiException) -> float | None:
    value = (e.headers or {}).get("Retry-After") if e.status == 429 else None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_MAX) if value is not None else None
    except ValueError:
        return None


def retrying(request: Callable[..., Any], conn_id: str, attempts: int = API_RETRIES) -> Callable[..., Any]:
    """Wrap ``ApiClient.request``: retry transient failures with backoff, explain every error."""

    def call(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        for attempt in range(1, max(attempts, 1) + 1):
            try:
                return request(method, url, *args, **kwargs)
            except ApiException as e:
                if e.status not in TRANSIENT_STATUS or attempt >= attempts:
                    raise explain(e, method, url, conn_id, attempt, time.monotonic() - t0) from e
                why = f"{e.status} {e.reason}"
                delay = _retry_after(e)
            except urllib3.exceptions.HTTPError as e:  # refused, reset, timed out: the apiserver restarting
                if attempt >= attempts:
                    raise
                why, delay = f"{type(e).__name__}: {e}", None
            if delay is None:
                backoff = min(API_RETRY_WAIT_MIN * 2 ** (attempt - 1), API_RETRY_WAIT_MAX)
                delay = backoff * random.uniform(0.8, 1.0)
            log.warning(
                "Kubernetes API %s %s: %s; retry %d of %d in %.1fs",
                method,
                urllib.parse.urlsplit(url).path,
                why,
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    return call


def _json(resp: Any) -> Any:
    return json.loads(resp.data)


POOL_SIZE = 32  # HTTP connections kept per apiserver (more if [batchjob] api_concurrency is higher)


def _widen_pool(api: client.ApiClient) -> None:
    """Keep as many connections as the operators use threads (the client's default is 5 x CPUs).

    Otherwise every concurrent create round logs "Connection pool is full, discarding connection"
    and re-handshakes TLS for the extra threads.
    """
    manager = getattr(getattr(api, "rest_client", None), "pool_manager", None)
    size = max(POOL_SIZE, int(config.get("api_concurrency")))
    if manager is not None and int(manager.connection_pool_kw.get("maxsize") or 1) < size:
        manager.connection_pool_kw["maxsize"] = size
        manager.clear()  # pools made before this keep their size: start them afresh


def conn_ref(
    conn_id: str,
    *,
    in_cluster: bool | None = None,
    config_file: str | None = None,
    cluster_context: str | None = None,
) -> str:
    """One string for a connection and cncf.kubernetes' per-task overrides of it.

    The connection id alone when nothing is overridden, else ``id?option=value``: Airflow
    connection ids cannot hold ``?``. A string travels in trigger kwargs as it is and keys the
    shared watches, so tasks with other cluster settings never share a client or a watch.
    """
    options = {
        k: v
        for k, v in (
            ("in_cluster", in_cluster),
            ("config_file", config_file),
            ("cluster_context", cluster_context),
        )
        if v is not None
    }
    return f"{conn_id}?{urllib.parse.urlencode(options)}" if options else conn_id


def split_conn_ref(ref: str) -> tuple[str, dict[str, Any]]:
    """The connection id and the ``KubernetesHook`` keyword arguments of a ``conn_ref``."""
    conn_id, _, query = ref.partition("?")
    options: dict[str, Any] = dict(urllib.parse.parse_qsl(query))
    if "in_cluster" in options:
        options["in_cluster"] = options["in_cluster"] == "True"
    return conn_id, options


class ClusterConnection:
    """``conn()`` for operators and sensors: their connection with the task's cluster overrides."""

    kubernetes_conn_id: str
    in_cluster: bool | None
    config_file: str | None
    cluster_context: str | None

    def conn(self) -> str:
        return conn_ref(
            self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
        )


class BatchJobHook:
    """Create, read, list and delete Jobs, Pods, Secrets and ConfigMaps as plain API dicts.

    :param kubernetes_conn_id: a cncf.kubernetes connection id, or a ``conn_ref`` carrying
        ``in_cluster`` / ``config_file`` / ``cluster_context`` overrides.
    """

    def __init__(self, kubernetes_conn_id: str = "kubernetes_default") -> None:
        self.conn_id = kubernetes_conn_id
        conn_id, options = split_conn_ref(kubernetes_conn_id)
        self.kube = KubernetesHook(conn_id=conn_id, **options)
        self._api: client.ApiClient | None = None

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            api = self.kube.api_client
            if not getattr(api, "_batchjob_retrying", False):  # the cncf hook may share its client
                api.request = retrying(api.request, self.conn_id)
                api._batchjob_retrying = True
                _widen_pool(api)
            self._api = api
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
    def create_job(self, namespace: str, body: Obj, dry_run: bool = False) -> Obj:
        """Create the Job; unknown fields (a typo in a template) are refused (400), not dropped.

        ``dry_run``: the apiserver validates and admits it (webhooks and quotas included) and
        stores nothing (``dryRun=All``)."""
        extra = {"dry_run": "All"} if dry_run else {}
        resp = self.batch.create_namespaced_job(
            namespace, body, field_validation="Strict", _preload_content=False, **extra
        )
        return dict(_json(resp))

    def get_job(self, namespace: str, name: str) -> Obj | None:
        try:
            return dict(_json(self.batch.read_namespaced_job(name, namespace, _preload_content=False)))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_jobs(self, namespace: str, label_selector: str) -> list[Obj]:
        resp = self.batch.list_namespaced_job(
            namespace, label_selector=label_selector, _preload_content=False
        )
        return list(_json(resp)["items"])

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

    def set_ttl(self, namespace: str, name: str, seconds: int) -> None:
        """Set ``ttlSecondsAfterFinished`` (mutable, also on finished Jobs); a Job already gone is fine."""
        self.patch_job(namespace, name, {"spec": {"ttlSecondsAfterFinished": seconds}})

    def patch_job(self, namespace: str, name: str, patch: Obj) -> None:
        """Merge-patch a Job's mutable fields (annotations, TTL); a Job already gone is fine."""
        try:
            self.batch.patch_namespaced_job(name, namespace, patch)
        except ApiException as e:
            if e.status != 404:
                raise

    def delete_jobs(
        self, namespace: str, label_selector: str, propagation_policy: str = "Background"
    ) -> None:
        """Delete every Job the selector matches, and (by propagation) their Pods, in one call."""
        self.batch.delete_collection_namespaced_job(
            namespace, label_selector=label_selector, propagation_policy=propagation_policy
        )

    def wait_deleted(self, namespace: str, name: str, uid: str, timeout: float = 60) -> None:
        """Block until the Job with this uid is gone, so a Job of the same name can be created."""

        def gone() -> bool:
            job = self.get_job(namespace, name)
            return job is None or job["metadata"]["uid"] != uid

        _poll(gone, timeout, f"Job {namespace}/{name} still exists {timeout:.0f}s after its deletion")

    # -- ConfigMaps and Secrets -----------------------------------------------------------
    def put_configmap(self, namespace: str, body: Obj) -> None:
        """Create the ConfigMap, or replace one of the same name (its labels and owners go too)."""
        core = self.core
        self._put(core.create_namespaced_config_map, core.replace_namespaced_config_map, namespace, body)

    def put_secret(self, namespace: str, body: Obj) -> None:
        """Create the Secret, or replace one of the same name (its labels and owners go too)."""
        self._put(self.core.create_namespaced_secret, self.core.replace_namespaced_secret, namespace, body)

    @staticmethod
    def _put(create: Callable[..., Any], replace: Callable[..., Any], namespace: str, body: Obj) -> None:
        name = body["metadata"]["name"]
        for _ in range(5):
            try:
                create(namespace, body)
                return
            except ApiException as e:
                if e.status != 409:
                    raise
            try:
                replace(name, namespace, body)
                return
            except ApiException as e:
                if e.status != 404:  # deleted between the two calls (garbage collected): create
                    raise
        raise BatchJobError(f"{namespace}/{name} keeps appearing and disappearing")

    def wait_configmaps_collected(
        self, namespace: str, names: list[str], owner_uids: set[str], timeout: float = 60
    ) -> None:
        """Block until none of these ConfigMaps is still owned by one of these (deleted) Jobs.

        The garbage collector removes them once their owner is gone; a ConfigMap of the same name
        made before that would be collected under its new Job. One without such an owner stays.
        """

        def collected(name: str) -> bool:
            try:
                cm = _json(self.core.read_namespaced_config_map(name, namespace, _preload_content=False))
            except ApiException as e:
                if e.status == 404:
                    return True
                raise
            return not {o.get("uid") for o in cm["metadata"].get("ownerReferences") or []} & owner_uids

        deadline = time.monotonic() + timeout
        for name in names:
            left = deadline - time.monotonic()
            _poll(
                functools.partial(collected, name),
                left,
                f"ConfigMap {namespace}/{name} outlived its Job by {timeout:.0f}s",
            )

    # -- Pods ------------------------------------------------------------------------------
    def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=label_selector, _preload_content=False)
        return list(_json(resp)["items"])

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


def _poll(done: Callable[[], bool], timeout: float, message: str) -> None:
    """Call ``done`` every 0.2 s until it is true; ``TimeoutError(message)`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.2)


class _AsyncHook(AsyncKubernetesHook):
    """cncf.kubernetes' async hook, reading ``config_file`` as its sync hook does.

    The async hook (cncf.kubernetes 10.25) never reads ``config_file``: it loads the connection's
    ``kube_config_path``. The sync hook lets ``config_file`` win over it, so a deferred wait
    would talk to another cluster than the worker that created the Job.
    """

    async def _get_field(self, field_name: str) -> Any:
        if field_name == "kube_config_path" and self.config_file:
            return self.config_file
        return await super()._get_field(field_name)


@contextlib.asynccontextmanager
async def async_api_client(conn_id: str) -> AsyncIterator[aclient.ApiClient]:
    """An async API client from the Airflow connection (or a ``conn_ref``), via cncf.kubernetes'
    async hook."""
    conn_id, options = split_conn_ref(conn_id)
    hook = _AsyncHook(conn_id=conn_id, **options)
    async with hook.get_conn() as api:
        yield api

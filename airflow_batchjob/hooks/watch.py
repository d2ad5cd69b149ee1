"""One shared watch on the Jobs (or Pods, or Events) of a namespace, for every waiter in this process.

A triggerer may hold a thousand deferred tasks waiting on Jobs; a watch each would mean a
thousand open connections to the apiserver. Instead every waiter subscribes to the one
:class:`NamespaceWatch` of its (connection, namespace, kind) in its event loop, with a
:class:`~airflow_batchjob.core.watchscope.Scope` saying what it waits on (a Job's name, a label
selector).

What a wait costs grows with what it waits on, not with the namespace's history (thousands of
finished Jobs nobody deletes): the watch never lists the namespace. Each subscriber lists just
its scope (a one-key read by name, or a paginated label-selected LIST), and the watch follows the
whole namespace's events from the version of the first such list: finished Jobs never change,
so they never show up. Events are matched against the subscribers' scopes locally, and each
subscriber keeps only its matching objects, slimmed to what the waits read. An update older than
what a subscriber already holds (its list read a newer version) is dropped. The watch resumes
after dropped connections and, after ``410 Gone``, starts again from a fresh list of every
subscriber's scope. It stops when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from kubernetes_asyncio import client as aclient
from kubernetes_asyncio.client.exceptions import ApiException

from airflow_batchjob import config
from airflow_batchjob.core.watchscope import Scope, parse_version, slim
from airflow_batchjob.hooks.kueue import kueue_workloads
from airflow_batchjob.hooks.subscription import Job, Matcher, Subscription

__all__ = ["Job", "Matcher", "NamespaceWatch", "Subscription", "WatchRegistry", "registry", "subscription"]

log = logging.getLogger(__name__)

ClientFactory = Callable[[str], AbstractAsyncContextManager[aclient.ApiClient]]

# The apiserver ends a watch after this; we resume from the last version. Long, so that a wait
# of ten minutes costs one list and one or two watch requests. A deployment sets
# ``[batchjob] watch_timeout_seconds``; this is its default.
WATCH_TIMEOUT_SECONDS = int(config.OPTIONS["watch_timeout_seconds"].default)
KINDS = ("jobs", "pods", "events", "workloads")  # workloads: Kueue's, by their Job's uid
# What each shared watch needs to see: Pods that belong to a Job, and the Job controller's
# FailedCreate events (not every event of a busy namespace).
_FILTERS: dict[str, dict[str, str]] = {
    "jobs": {},
    "pods": {"label_selector": "batch.kubernetes.io/controller-uid"},
    "events": {"field_selector": "reason=FailedCreate"},
    "workloads": {"label_selector": "kueue.x-k8s.io/job-uid"},
}
PAGE_SIZE = 500  # objects per LIST page: a group of 1,000 Jobs is two requests, never one huge body
# LIST requests one connection (client) makes at once for its subscribers, beside its watches:
# a thousand waits joining at once cost a thousand small reads, a few at a time.
LIST_CONCURRENCY = 4
# Requests and listed bytes of every watch in the process, for diagnostics and benchmarks.
COUNTERS: dict[str, int] = {"lists": 0, "watches": 0, "listed_bytes": 0, "listed_objects": 0}


_FATAL = (401, 403, 404)  # unauthorised, forbidden (RBAC), no such namespace or resource
# ... unless the same requests worked moments ago: a restarting apiserver answers 403 until its
# RBAC caches are filled. Within this many seconds of the last success, they are retried.
FATAL_GRACE_SECONDS = 60.0


async def _checked(resp: Any) -> Any:
    """An unread response (``_preload_content=False``) as is, or the ``ApiException`` its status means."""
    if resp.status < 400:
        return resp
    body = await resp.read()
    resp.release()
    e = ApiException(status=resp.status, reason=resp.reason)
    e.body = body
    raise e


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or b"")["message"])
    except (TypeError, ValueError, KeyError):
        return str(e.body or "")


class NamespaceWatch:
    """Watches one kind (Jobs, Pods, Events) in one namespace; lists and serves each subscriber's scope.

    :param api: the async Kubernetes API client the watch and its lists use.
    :param namespace: the namespace watched.
    :param kind: ``jobs`` (default), ``pods`` or ``events``.
    :param gate: bounds the subscribers' LIST requests at once (shared per client by
        :class:`WatchRegistry`); default: a semaphore of this watch's own, of 4.
    """

    def __init__(
        self,
        api: aclient.ApiClient,
        namespace: str,
        kind: str = "jobs",
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: use one of {KINDS}")
        self.api = api
        self.namespace = namespace
        self.kind = kind
        self.subscribers: set[Subscription] = set()
        self._named: dict[str, set[Subscription]] = {}  # by the name in their scope: O(1) per event
        self._unnamed: set[Subscription] = set()
        self._lists: dict[Subscription, asyncio.Task[None]] = {}
        self._gate = gate if gate is not None else asyncio.Semaphore(LIST_CONCURRENCY)
        self._ready = asyncio.Event()  # the watch has a version: lists made from now on are not older
        self.task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None
        self.requests = 0  # list + watch calls made, for diagnostics and benchmarks
        self.watch_timeout = int(config.get("watch_timeout_seconds"))
        self._worked: float | None = None  # when a request of this watch last succeeded

    def subscribe(
        self,
        scope: Scope,
        queue: asyncio.Queue[tuple[str, Job | None]] | None = None,
        keep_deleted: bool = False,
        where: Matcher | None = None,
    ) -> Subscription:
        sub = Subscription(
            scope,
            queue if queue is not None else asyncio.Queue(),
            api=self.api,
            keep_deleted=keep_deleted,
            where=where,
        )
        self.subscribers.add(sub)
        self._index(sub).add(sub)
        if self.task is not None and self.task.done():  # it gave up (e.g. forbidden): try afresh
            self.task, self.resource_version = None, None
            self._ready.clear()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.kind}-watch-{self.namespace}"
            )
        self._list_later(sub)
        return sub

    def _index(self, sub: Subscription) -> set[Subscription]:
        name = sub.scope.name
        return self._unnamed if name is None else self._named.setdefault(name, set())

    async def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)
        self._index(sub).discard(sub)
        if sub.scope.name is not None and not self._named.get(sub.scope.name):
            self._named.pop(sub.scope.name, None)
        tasks = [t for t in (self._lists.pop(sub, None),) if t is not None]
        if not self.subscribers and self.task is not None:
            tasks += [self.task, *self._lists.values()]
            self.task = None
            self._lists.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _lister(self) -> Callable[..., Any]:
        if self.kind == "jobs":
            return aclient.BatchV1Api(self.api).list_namespaced_job
        if self.kind == "workloads":
            return functools.partial(kueue_workloads, aclient.CustomObjectsApi(self.api))
        core = aclient.CoreV1Api(self.api)
        return core.list_namespaced_pod if self.kind == "pods" else core.list_namespaced_event

    async def _list(self, sub: Subscription) -> str:
        """List the subscriber's scope (paginated), hand it over; return the version it was read at."""
        params = sub.scope.list_params(**_FILTERS[self.kind])
        while True:
            items: list[Job] = []
            cont = ""
            try:
                while True:
                    async with self._gate:
                        self.requests += 1
                        COUNTERS["lists"] += 1
                        page_params = {**params, "_continue": cont} if cont else params
                        resp: Any = await _checked(
                            await self._lister()(
                                self.namespace, limit=PAGE_SIZE, _preload_content=False, **page_params
                            )
                        )
                        raw = await resp.read()
                        self._worked = time.monotonic()
                    COUNTERS["listed_bytes"] += len(raw)
                    body = json.loads(raw)
                    del raw
                    page = body.get("items") or []
                    COUNTERS["listed_objects"] += len(page)
                    items += [slim(self.kind, j) for j in page if sub.matches(j)]
                    meta = body.get("metadata") or {}
                    rv, cont = str(meta.get("resourceVersion") or ""), meta.get("continue") or ""
                    if not cont:
                        break
            except ApiException as e:
                if e.status == 410 and cont:  # the continue token expired: read the scope again
                    continue
                raise
            sub._sync(items, parse_version(rv))
            return rv

    def _list_later(self, sub: Subscription) -> None:
        """List the subscriber's scope once the watch has a version (so no event falls between)."""

        async def run() -> None:
            delay = 0.5
            while True:
                await self._ready.wait()
                try:
                    await self._list(sub)
                    return
                except asyncio.CancelledError:
                    raise
                except ApiException as e:
                    if self._fatal_now(e):
                        sub._fail(self._fatal(e, "list"))
                        return
                    log.warning("listing %s in %s: %s %s", self.kind, self.namespace, e.status, e.reason)
                except Exception as e:  # dropped connection, apiserver restart
                    log.warning("listing %s in %s: %s", self.kind, self.namespace, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

        task = asyncio.get_running_loop().create_task(run(), name=f"{self.kind}-list-{self.namespace}")
        self._lists[sub] = task
        task.add_done_callback(lambda t: self._lists.pop(sub) if self._lists.get(sub) is t else None)

    async def _begin(self) -> None:
        """Find the version to watch from: the first subscriber's own list (no extra request); the
        others list after it, so that each list is at least as new as the watch's start."""
        self._ready.clear()
        subs = list(self.subscribers)
        for sub in subs:
            task = self._lists.pop(sub, None)
            if task is not None:
                task.cancel()
        if subs:
            self.resource_version = await self._list(subs[0])
            for sub in subs[1:]:
                if sub in self.subscribers:
                    self._list_later(sub)

    async def _watch(self) -> None:
        self.requests += 1
        COUNTERS["watches"] += 1
        resp: Any = await self._lister()(
            self.namespace,
            **_FILTERS[self.kind],
            watch=True,
            resource_version=self.resource_version or "",
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout,
            _preload_content=False,
            _request_timeout=self.watch_timeout + 30,
        )
        resp = await _checked(resp)
        self._worked = time.monotonic()
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                etype, obj = ev["type"], ev["object"]
                if etype == "ERROR":
                    if obj.get("code") == 410:  # our version was compacted: list afresh
                        self.resource_version = None
                    return
                self.resource_version = obj["metadata"]["resourceVersion"]
                if etype == "BOOKMARK":
                    continue
                targets = [*self._named.get(obj["metadata"]["name"], ()), *self._unnamed]
                kept: Job | None = None
                for sub in targets:
                    if sub.matches(obj):
                        kept = kept or slim(self.kind, obj)
                        sub._offer(etype, kept)
        finally:
            self._worked = time.monotonic()  # it worked until now (an apiserver restart drops it)
            resp.release()

    def _fatal_now(self, e: ApiException) -> bool:
        return e.status in _FATAL and (
            self._worked is None or time.monotonic() - self._worked > FATAL_GRACE_SECONDS
        )

    def _fatal(self, e: ApiException, what: str) -> str:
        message = f"cannot {what} {self.kind} in namespace {self.namespace!r}: {e.status} {e.reason}: "
        return message + _api_message(e)

    async def _run(self) -> None:
        delay = 0.5
        while self.subscribers:
            try:
                if self.resource_version is None:
                    await self._begin()
                self._ready.set()
                await self._watch()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status == 410:
                    self.resource_version = None
                    continue
                if self._fatal_now(e):  # retrying cannot help: tell the waiters why
                    message = self._fatal(e, "list" if self.resource_version is None else "watch")
                    log.error("%s", message)
                    for sub in list(self.subscribers):
                        sub._fail(message)
                    return
                log.warning(
                    "watch on %s in %s: %s %s; retrying in %.1fs",
                    self.kind,
                    self.namespace,
                    e.status,
                    e.reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception as e:  # dropped connection, apiserver restart
                log.warning("watch on %s in %s: %s; resuming in %.1fs", self.kind, self.namespace, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


class WatchRegistry:
    """The shared watches of one event loop, keyed by (connection id, namespace, kind)."""

    def __init__(self) -> None:
        self.clients: dict[str, tuple[aclient.ApiClient, contextlib.AsyncExitStack]] = {}
        self.gates: dict[str, asyncio.Semaphore] = {}  # LIST requests at once, per client
        self.watches: dict[tuple[str, str, str], NamespaceWatch] = {}
        self.lock = asyncio.Lock()

    async def get(
        self, conn_id: str, namespace: str, factory: ClientFactory, kind: str = "jobs"
    ) -> NamespaceWatch:
        async with self.lock:
            if conn_id not in self.clients:
                stack = contextlib.AsyncExitStack()
                api = await stack.enter_async_context(factory(conn_id))
                self.clients[conn_id] = (api, stack)
                self.gates[conn_id] = asyncio.Semaphore(LIST_CONCURRENCY)
            key = (conn_id, namespace, kind)
            if key not in self.watches:
                api = self.clients[conn_id][0]
                self.watches[key] = NamespaceWatch(api, namespace, kind, self.gates[conn_id])
            return self.watches[key]

    async def release(self, conn_id: str, namespace: str, sub: Subscription, kind: str = "jobs") -> None:
        async with self.lock:
            watch = self.watches.get((conn_id, namespace, kind))
            if watch is None:
                return
            await watch.unsubscribe(sub)
            if not watch.subscribers:
                del self.watches[(conn_id, namespace, kind)]
            if not any(k[0] == conn_id for k in self.watches):
                entry = self.clients.pop(conn_id, None)
                self.gates.pop(conn_id, None)
                if entry is not None:
                    await entry[1].aclose()


_registries: dict[asyncio.AbstractEventLoop, WatchRegistry] = {}


def registry() -> WatchRegistry:
    """The registry of the running event loop (the triggerer's, or a worker's ``asyncio.run``)."""
    loop = asyncio.get_running_loop()
    for stale in [k for k in _registries if k.is_closed()]:
        del _registries[stale]
    if loop not in _registries:
        _registries[loop] = WatchRegistry()
    return _registries[loop]


@contextlib.asynccontextmanager
async def subscription(
    conn_id: str,
    namespace: str,
    scope: Scope,
    factory: ClientFactory,
    *,
    kind: str = "jobs",
    queue: asyncio.Queue[tuple[str, Job | None]] | None = None,
    keep_deleted: bool = False,
    where: Matcher | None = None,
) -> AsyncIterator[Subscription]:
    """Subscribe to the shared watch of ``kind`` for the objects in ``scope``, for the block.

    Pass ``queue`` to share one wake-up queue between subscriptions to several kinds,
    ``keep_deleted`` to keep the last state of objects deleted meanwhile (``Subscription.deleted``),
    and ``where`` to narrow the scope locally.
    """
    reg = registry()
    watch = await reg.get(conn_id, namespace, factory, kind)
    sub = watch.subscribe(scope, queue, keep_deleted, where)
    try:
        yield sub
    finally:
        await reg.release(conn_id, namespace, sub, kind)

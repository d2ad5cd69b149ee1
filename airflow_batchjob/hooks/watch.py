"""One shared watch on the Jobs (or Pods, or Events) of a namespace, for every waiter in this process.

A triggerer may hold a thousand deferred tasks waiting on Jobs; a watch each would mean a
thousand open connections to the apiserver. Instead every waiter subscribes to the one
:class:`NamespaceWatch` of its (connection, namespace, kind) in its event loop; the watch lists once,
then follows events from the last ``resourceVersion`` (resuming after dropped connections and
re-listing after ``410 Gone``), and hands each subscriber the Jobs it matches. The watch stops
when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as aclient
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger(__name__)

Job = dict[str, Any]
Matcher = Callable[[Job], bool]
ClientFactory = Callable[[str], AbstractAsyncContextManager[aclient.ApiClient]]

# The apiserver ends a watch after this; we resume from the last version. Long, so that a wait
# of ten minutes costs one list and one or two watch requests.
WATCH_TIMEOUT_SECONDS = 900
KINDS = ("jobs", "pods", "events")
# What each shared watch needs to see: Pods that belong to a Job, and the Job controller's
# FailedCreate events (not every event of a busy namespace).
_FILTERS: dict[str, dict[str, str]] = {
    "jobs": {},
    "pods": {"label_selector": "batch.kubernetes.io/controller-uid"},
    "events": {"field_selector": "reason=FailedCreate"},
}


@dataclass(eq=False)
class Subscription:
    """A waiter's view of the shared watch: a queue of updates for the Jobs it matches.

    Each update is ``(event, job)`` with event ADDED / MODIFIED / DELETED, or ``("SYNC", None)``
    after a (re)list, when :attr:`jobs` holds the complete current set of matching Jobs.
    """

    match: Matcher
    queue: asyncio.Queue[tuple[str, Job | None]] = field(default_factory=asyncio.Queue)  # may be shared
    jobs: dict[str, Job] = field(default_factory=dict)
    synced: bool = False
    api: aclient.ApiClient | None = None  # the watch's client, for waiters that also act (resume Jobs)
    error: str | None = None  # set (with an "ERROR" update) when the watch cannot go on: 401/403/404
    # With keep_deleted, the last state of each matching object deleted while subscribed (the
    # DELETED event carries it), until one of the same name appears again.
    keep_deleted: bool = False
    deleted: dict[str, Job] = field(default_factory=dict)

    def _fail(self, message: str) -> None:
        self.error = message
        self.queue.put_nowait(("ERROR", None))

    def _offer(self, event: str, job: Job) -> None:
        if not self.match(job):
            return
        name = job["metadata"]["name"]
        if event == "DELETED":
            self.jobs.pop(name, None)
            if self.keep_deleted:
                self.deleted[name] = job
        else:
            self.jobs[name] = job
            self.deleted.pop(name, None)
        self.queue.put_nowait((event, job))

    def _sync(self, jobs: list[Job]) -> None:
        self.jobs = {j["metadata"]["name"]: j for j in jobs if self.match(j)}
        self.synced = True
        self.queue.put_nowait(("SYNC", None))


_FATAL = (401, 403, 404)  # unauthorised, forbidden (RBAC), no such namespace or resource


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
    """Lists then watches one kind (Jobs, Pods, Events) in one namespace; fans events out to subscribers."""

    def __init__(self, api: aclient.ApiClient, namespace: str, kind: str = "jobs") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: use one of {KINDS}")
        self.api = api
        self.namespace = namespace
        self.kind = kind
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.resource_version: str | None = None
        self._snapshot: dict[str, Job] | None = None  # current Jobs, so late subscribers start synced
        self.requests = 0  # list + watch calls made, for diagnostics and benchmarks

    def subscribe(
        self,
        match: Matcher,
        queue: asyncio.Queue[tuple[str, Job | None]] | None = None,
        keep_deleted: bool = False,
    ) -> Subscription:
        sub = Subscription(
            match, queue if queue is not None else asyncio.Queue(), api=self.api, keep_deleted=keep_deleted
        )
        self.subscribers.add(sub)
        if self.task is not None and self.task.done():  # it gave up (e.g. forbidden): try afresh
            self.task, self.resource_version, self._snapshot = None, None, None
        if self._snapshot is not None:
            sub._sync(list(self._snapshot.values()))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.kind}-watch-{self.namespace}"
            )
        return sub

    def _lister(self) -> Callable[..., Any]:
        if self.kind == "jobs":
            return aclient.BatchV1Api(self.api).list_namespaced_job
        core = aclient.CoreV1Api(self.api)
        return core.list_namespaced_pod if self.kind == "pods" else core.list_namespaced_event

    async def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None

    async def _list(self) -> None:
        self.requests += 1
        resp: Any = await _checked(
            await self._lister()(self.namespace, _preload_content=False, **_FILTERS[self.kind])
        )
        body = json.loads(await resp.read())
        self.resource_version = body["metadata"]["resourceVersion"]
        items = body.get("items") or []
        self._snapshot = {j["metadata"]["name"]: j for j in items}
        for sub in list(self.subscribers):
            sub._sync(items)

    async def _watch(self) -> None:
        self.requests += 1
        resp: Any = await self._lister()(
            self.namespace,
            **_FILTERS[self.kind],
            watch=True,
            resource_version=self.resource_version or "",
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _preload_content=False,
            _request_timeout=WATCH_TIMEOUT_SECONDS + 30,
        )
        resp = await _checked(resp)
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                etype, obj = ev["type"], ev["object"]
                if etype == "ERROR":
                    if obj.get("code") == 410:  # our version was compacted: re-list
                        self.resource_version = None
                    return
                self.resource_version = obj["metadata"]["resourceVersion"]
                if etype == "BOOKMARK":
                    continue
                assert self._snapshot is not None
                name = obj["metadata"]["name"]
                if etype == "DELETED":
                    self._snapshot.pop(name, None)
                else:
                    self._snapshot[name] = obj
                for sub in list(self.subscribers):
                    sub._offer(etype, obj)
        finally:
            resp.release()

    async def _run(self) -> None:
        delay = 0.5
        while self.subscribers:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status == 410:
                    self.resource_version = None
                    continue
                if e.status in _FATAL:  # retrying cannot help: tell the waiters why
                    message = f"cannot {'list' if self.resource_version is None else 'watch'} {self.kind} "
                    message += f"in namespace {self.namespace!r}: {e.status} {e.reason}: {_api_message(e)}"
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
            key = (conn_id, namespace, kind)
            if key not in self.watches:
                self.watches[key] = NamespaceWatch(self.clients[conn_id][0], namespace, kind)
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
    match: Matcher,
    factory: ClientFactory,
    *,
    kind: str = "jobs",
    queue: asyncio.Queue[tuple[str, Job | None]] | None = None,
    keep_deleted: bool = False,
) -> AsyncIterator[Subscription]:
    """Subscribe to the shared watch of ``kind`` for the duration of the block.

    Pass ``queue`` to share one wake-up queue between subscriptions to several kinds, and
    ``keep_deleted`` to keep the last state of objects deleted meanwhile (``Subscription.deleted``).
    """
    reg = registry()
    watch = await reg.get(conn_id, namespace, factory, kind)
    sub = watch.subscribe(match, queue, keep_deleted)
    try:
        yield sub
    finally:
        await reg.release(conn_id, namespace, sub, kind)

"""A waiter's view of the shared watch (``hooks/watch.py``): the objects in its scope, kept in order.

The watch lists a subscriber's scope and delivers the namespace's events; both arrive here, in
whatever order the network gives, and this keeps the newest state of each object: a list read at
version V already holds every event up to V, and an update older than the state held is stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as aclient

from airflow_batchjob.core.watchscope import Scope, version

Job = dict[str, Any]
Matcher = Callable[[Job], bool]


@dataclass(eq=False)
class Subscription:
    """A waiter's view of the shared watch: a queue of updates for the objects in its scope.

    Each update is ``(event, job)`` with event ADDED / MODIFIED / DELETED, or ``("SYNC", None)``
    after its scope was listed, when :attr:`jobs` holds the complete current set of its objects.
    ``where`` narrows the scope further, locally.
    """

    scope: Scope
    queue: asyncio.Queue[tuple[str, Job | None]] = field(default_factory=asyncio.Queue)  # may be shared
    jobs: dict[str, Job] = field(default_factory=dict)
    synced: bool = False
    api: aclient.ApiClient | None = None  # the watch's client, for waiters that also act (resume Jobs)
    error: str | None = None  # set (with an "ERROR" update) when the watch cannot go on: 401/403/404
    # With keep_deleted, the last state of each matching object deleted while subscribed (the
    # DELETED event carries it), until one of the same name appears again.
    keep_deleted: bool = False
    deleted: dict[str, Job] = field(default_factory=dict)
    where: Matcher | None = None
    floor: int = -1  # the version its last list read: events up to it are already in ``jobs``

    def matches(self, obj: Job) -> bool:
        return self.scope.matches(obj) and (self.where is None or self.where(obj))

    def _fail(self, message: str) -> None:
        self.error = message
        self.queue.put_nowait(("ERROR", None))

    def _offer(self, event: str, job: Job) -> None:
        name = job["metadata"]["name"]
        rv = version(job)
        held = version(self.jobs.get(name))
        if rv is not None and (rv <= self.floor or (held is not None and rv < held)):
            return  # its list already showed this, or something newer
        if event == "DELETED":
            self.jobs.pop(name, None)
            if self.keep_deleted:
                self.deleted[name] = job
        else:
            self.jobs[name] = job
            self.deleted.pop(name, None)
        self.queue.put_nowait((event, job))

    def _sync(self, items: list[Job], rv: int | None) -> None:
        """Merge a list of the scope read at version ``rv`` with what the watch delivered meanwhile."""
        listed = {j["metadata"]["name"]: j for j in items}
        for name, held in list(self.jobs.items()):
            if name not in listed and (rv is None or (version(held) or 0) <= rv):
                del self.jobs[name]  # gone by the time of the list: deleted meanwhile
                if self.keep_deleted:
                    self.deleted[name] = held
        for name, job in listed.items():
            held_rv = version(self.jobs.get(name))
            if held_rv is None or rv is None or held_rv <= rv:
                self.jobs[name] = job
                self.deleted.pop(name, None)
        self.floor = rv if rv is not None else -1
        self.synced = True
        self.queue.put_nowait(("SYNC", None))

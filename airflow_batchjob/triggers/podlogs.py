"""Live Pod logs in the task log while a wait runs, bounded, through the apiserver's log endpoint.

The wait's Pods come from the process's shared Pod watch of the namespace (``hooks/watch.py``).
Each Pod's containers are read with ``follow=true`` while they run (replacement Pods too, as they
appear), every line prefixed with the Pod's item or index and name. A stream dropped while its
container still runs (apiserver restart, network) resumes with ``sinceTime`` and skips what it
already printed (``core/podlog.py``), so nothing is lost or repeated. The requests themselves are
``hooks/podlogs.py``'s.

Bounds, so that a chatty Job or a triggerer of a thousand waits cannot flood anything:

- ``max_streams`` (default 5) Pods of one wait are followed at once; the task log stays readable.
  Pods that never got a stream show their last ``tail_lines`` lines once the wait ends.
- ``max_lines`` (default 1000) lines per container; the rest are counted and the count is logged.
- ``MAX_STREAMS_PER_PROCESS`` (50) streams in one process (a triggerer) for all its waits, half of
  the async client's connection pool, so watches and API calls always have connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.podlog import (
    ResumePoint,
    container_state,
    containers_to_follow,
    parse_second,
    pod_label,
    split_timestamp,
)
from airflow_batchjob.exceptions import KubernetesCallError
from airflow_batchjob.hooks.podlogs import ApiClient, read_pod_log

log = logging.getLogger(__name__)

MAX_STREAMS_PER_PROCESS = 50
DRAIN_SECONDS = 5.0  # after the outcome, how long streams of ending containers may still deliver
RETRY_SECONDS = 1.0
MAX_ERRORS = 10

Pod = dict[str, Any]
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def process_slots() -> asyncio.Semaphore:
    """The streams this process (its running event loop) may hold, shared by every wait in it."""
    loop = asyncio.get_running_loop()
    for stale in [k for k in _slots if k.is_closed()]:
        del _slots[stale]
    return _slots.setdefault(loop, asyncio.Semaphore(MAX_STREAMS_PER_PROCESS))


@dataclass(frozen=True)
class LogSettings:
    """What an operator asks of the wait's logs (serialised into its trigger as a dict)."""

    enabled: bool = True
    containers: bool | str | list[str] | None = None  # None: the main container
    max_streams: int = 5
    max_lines: int = 1000
    tail_lines: int = 50
    # Where a wait that handed over (the worker's, before it deferred) got to, per "pod/container":
    # [second (RFC 3339), nanoseconds, lines at that time, lines shown].
    resume: dict[str, list[Any]] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LogSettings:
        return cls(**data) if data else cls(enabled=False)


class _Stream:
    """One container's log: followed, resumed after drops, capped."""

    def __init__(self, owner: PodLogs, pod_name: str, container: str, label: str) -> None:
        self.owner, self.pod_name, self.container, self.label = owner, pod_name, container, label
        self.key = f"{pod_name}/{container}"
        self.point = ResumePoint()
        self.shown = self.dropped = 0
        if (saved := (owner.settings.resume or {}).get(self.key)) is not None:
            second, nanos, at_last, self.shown = saved
            self.point = ResumePoint((parse_second(second), int(nanos)), int(at_last))
            self.point.resume()
        self.tailing = False  # it ended before a stream was free: only its last lines are shown

    def emit(self, text: str) -> None:
        if self.shown < self.owner.settings.max_lines:
            self.shown += 1
            self.owner.emit(f"[{self.label}] {text}")
        else:
            self.dropped += 1

    async def follow(self) -> None:
        """Read until the container has ended and its stream closed; resume after drops."""
        errors = 0
        while True:
            try:
                await self._read(follow=True)
            except asyncio.CancelledError:
                raise
            except KubernetesCallError as e:
                if e.status in (400, 404) and self._state() in ("waiting", "unknown"):
                    await asyncio.sleep(RETRY_SECONDS)  # not started yet, or already gone
                errors += 1
            except Exception as e:  # dropped connection: resume from where we got to
                log.debug("log stream of %s/%s dropped: %s", self.pod_name, self.container, e)
                errors += 1
            else:
                if self._state() in ("terminated", "gone"):
                    return
            state = self._state()
            if errors >= MAX_ERRORS or state == "gone" or (state == "terminated" and errors >= 2):
                return  # what was printed stays; a log that cannot be read is not worth a slot
            self.point.resume()
            await asyncio.sleep(RETRY_SECONDS)

    async def tail(self, lines: int) -> None:
        with contextlib.suppress(KubernetesCallError, asyncio.TimeoutError, OSError):
            await asyncio.wait_for(self._read(follow=False, tail=lines), 30)

    def _state(self) -> str:
        pod = self.owner.pods.get(self.pod_name)
        return "gone" if pod is None else container_state(pod, self.container)

    async def _read(self, follow: bool, tail: int | None = None) -> None:
        api = self.owner.api
        assert api is not None
        await read_pod_log(
            api,
            self.owner.namespace,
            self.pod_name,
            self.container,
            self._line,
            follow=follow,
            tail=tail,
            since=self.point.since_time(),
        )

    def _line(self, raw: bytes) -> None:
        when, text = split_timestamp(raw.decode("utf-8", "replace"))
        if self.point.take(when):
            self.emit(text)
            if when is not None:
                second = when[0].strftime("%Y-%m-%dT%H:%M:%SZ")
                self.owner.positions[self.key] = [second, when[1], self.point.at_last, self.shown]


class PodLogs:
    """The log streams of one wait (see the module docstring)."""

    def __init__(
        self,
        api: ApiClient | None,
        namespace: str,
        emit: Callable[[str], None],
        settings: LogSettings,
    ) -> None:
        self.api, self.namespace, self.emit, self.settings = api, namespace, emit, settings
        self.pods: dict[str, Pod] = {}
        self.seen: set[tuple[str, str]] = set()
        self.waiting: list[_Stream] = []
        self.running: dict[asyncio.Task[None], _Stream] = {}
        self.done: list[_Stream] = []
        self.closing = False
        self.told = False
        self.positions: dict[str, list[Any]] = dict(settings.resume or {})

    def update(self, pods: Iterable[Pod]) -> None:
        """The wait's Pods as the watch shows them now: follow the new ones, within the budget."""
        if not self.settings.enabled or self.api is None or self.closing:
            return
        for pod in pods:
            name = pod["metadata"]["name"]
            self.pods[name] = pod
            main = containers_to_follow(pod, None)
            for container in containers_to_follow(pod, self.settings.containers):
                key = (name, container)
                if key in self.seen or container_state(pod, container) in ("waiting", "unknown"):
                    continue
                self.seen.add(key)
                label = pod_label(pod, container, main[0] if main else None)
                self.waiting.append(_Stream(self, name, container, label))
        self._start()

    def _start(self) -> None:
        if self.closing:
            return
        slots = process_slots()
        while self.waiting and len(self.running) < self.settings.max_streams and not slots.locked():
            stream = self.waiting.pop(0)
            stream.tailing = stream._state() in ("terminated", "gone")
            if stream.tailing:
                self._tailed()
            task = asyncio.get_running_loop().create_task(self._run(stream, slots))
            self.running[task] = stream
            task.add_done_callback(self._ended)

    async def _run(self, stream: _Stream, slots: asyncio.Semaphore) -> None:
        async with slots:
            if stream.tailing:
                await stream.tail(self.settings.tail_lines)
            else:
                await stream.follow()

    def _tailed(self) -> None:
        if not self.told:
            self.told = True
            self.emit(
                f"more Pods than streams: not followed (max_log_streams={self.settings.max_streams}): "
                f"a Pod that ended meanwhile shows its last {self.settings.tail_lines} lines"
            )

    def _ended(self, task: asyncio.Task[None]) -> None:
        stream = self.running.pop(task, None)
        if stream is not None:
            self.done.append(stream)
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._start()

    async def finish(self) -> None:
        """The wait ended: let ending streams deliver, then tail the Pods that never had one."""
        self.closing = True
        if not self.running and not self.waiting and not self.done:
            return
        if self.running:
            await asyncio.wait(list(self.running), timeout=DRAIN_SECONDS)
        for task, stream in list(self.running.items()):
            task.cancel()
            self.emit(f"[{stream.label}] (still running: its log is no longer followed)")
        for task in list(self.running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left, self.waiting = self.waiting, []
        if left:
            self._tailed()
            gate = asyncio.Semaphore(self.settings.max_streams)

            async def tail(stream: _Stream) -> None:
                async with gate:
                    await stream.tail(self.settings.tail_lines)

            await asyncio.gather(*(tail(s) for s in left))
            self.done.extend(left)
        for stream in self.done:
            if stream.dropped:
                self.emit(
                    f"[{stream.label}] {stream.dropped} more lines not shown "
                    f"(max_log_lines={self.settings.max_lines})"
                )
        self.done = []

    async def stop(self) -> None:
        """The wait ends without an outcome (cancelled, deleted, handed over): drop every stream,
        and wait until each has let go of its connection (the shared client may close next)."""
        self.closing = True
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN_SECONDS)

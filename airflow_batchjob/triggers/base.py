"""What the provider's triggers share: serialising only what differs from the defaults, and
running one wait that ends a succeeded task in the triggerer or hands its event to a worker once
the task's defer-exit has surely been reported."""

from __future__ import annotations

import abc
import asyncio
import copy
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_batchjob import config
from airflow_batchjob.triggers.completion import complete


class SerializedByDefaults(BaseTrigger):
    """``serialize()`` from ``__init__``'s keyword parameters, each kept in an attribute of its name.

    A parameter equal to its default is left out (``None`` and an empty dict or list count as the
    same default), so a trigger row written today loads into tomorrow's constructor, and rows stay
    small in the triggerer's table. Values are deep-copied: the caller may change the dict.
    """

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                continue
            value = getattr(self, name)
            default = param.default
            if default is not param.empty and (value == default or (default is None and value in ({}, []))):
                continue
            kwargs[name] = copy.deepcopy(value)
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs


class ProgressLog:
    """Logs a changed line: the first and the final one at once, others at most every ``interval`` s."""

    def __init__(self, progress: Callable[[str], None] | None, interval: float) -> None:
        self.progress, self.interval = progress, interval
        self.last_line, self.last_time = "", 0.0

    def __call__(self, prefix: str, line: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or line == self.last_line:
            return
        if final or not self.last_line or now - self.last_time >= self.interval:
            self.progress(f"{prefix}: {line}")
            self.last_line, self.last_time = line, now


# Airflow's open defer race (apache/airflow#71580, #72716): the worker's exit after ``defer()`` is
# reported by the executor as a "success" of the try, and the scheduler handles that report some
# time later. If the trigger fires first and the resumed try is already queued or running by then,
# the scheduler takes the stale report for a task killed behind its back and fails the try. With
# [batchjob] complete_in_triggerer a success ends in the triggerer instead (triggers/completion.py:
# no resumed try). An event that resumes on a worker is held: its
# trigger never fires sooner than this after it starts running (it starts after the task deferred):
# long enough for the scheduler to have drained the report (docs/design.md has the
# measured window). An event that comes later is not held at all. A deployment sets it with
# ``[batchjob] defer_settle_seconds`` (read by the triggerer; 0 turns the hold off).
SETTLE_SECONDS = float(config.OPTIONS["defer_settle_seconds"].default)


def settle_seconds(configured: float | None) -> float:
    """The hold: the trigger's own value if given, else ``[batchjob] defer_settle_seconds``."""
    if configured is not None:
        return configured
    return float(config.get("defer_settle_seconds"))


async def settle(started: float, seconds: float, log: Any) -> None:
    """Sleep until ``seconds`` after ``started`` (``time.monotonic()`` when the trigger began)."""
    left = started + seconds - time.monotonic()
    if left > 0:
        log.info("decided %.1fs after the trigger started: holding it %.1fs more", seconds - left, left)
        await asyncio.sleep(left)


STATE_READ_SECONDS = 10.0  # on_kill asks Airflow for the task's state at most this long


def _task_state(ti: Any) -> str | None:
    """The task instance's state now, asked of Airflow through the triggerer's supervisor."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(
        dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
    )
    key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
    state = states.get(ti.run_id, {}).get(key)
    return None if state is None else str(getattr(state, "value", state))  # a str or an enum of str


class WaitTrigger(SerializedByDefaults):
    """Runs one wait and fires its event once, never sooner than the settle hold allows.

    A subclass says what it waits on (``_wait``), what its error event holds (``_error_event``)
    and which of its arguments every event repeats (``_identity``); ``run`` is the same for all.
    """

    settle_seconds: float | None
    completion: dict[str, Any] | None = None
    kubernetes_conn_id: str
    deadline: float | None
    progress_interval: float
    diagnostics: bool
    diagnose_interval: float
    pending_timeout: float | None
    logs: dict[str, Any] | None

    @abc.abstractmethod
    async def _wait(self) -> dict[str, Any]:
        """The wait's event dict (``status``, ``message``, and what the kind of wait adds)."""

    @abc.abstractmethod
    def _error_event(self, error: Exception) -> dict[str, Any]:
        """Log that the wait raised ``error`` (called while it is handled), return the event."""

    @abc.abstractmethod
    def _identity(self) -> dict[str, Any]:
        """What the event repeats of the trigger's arguments, so the task knows what it waited on."""

    def in_triggerer(self) -> bool:
        """Whether a triggerer runs this trigger (it gives the trigger its task instance), not
        `dags test` or `tasks test`, which run it in line, in the task's own process."""
        return getattr(self, "task_instance", None) is not None

    async def on_kill(self) -> None:
        """Run ``_kill`` to its end. Airflow's triggerer re-sends its cancel to a cancelled trigger
        at every sync with its supervisor until the trigger has finished, on_kill included, so an
        on_kill that waits (the task's state, a delete) is cancelled again within about a second
        and would stop half-way, leaving the user's Job running (CI run ci12). The clean-up is
        bounded (``STATE_READ_SECONDS`` + ``hooks/asyncjobs.KILL_TIMEOUT_SECONDS``)."""
        work = asyncio.ensure_future(self._kill())
        while True:
            try:
                await asyncio.shield(work)
                return
            except asyncio.CancelledError:
                if work.done():
                    return

    async def _kill(self) -> None:
        """What a user's kill of the deferred task cleans up (default: nothing)."""

    async def moved_not_killed(self) -> bool:
        """Whether an ``on_kill`` came from a triggerer that lost this trigger to another one, not
        from a user. Airflow 3.3 cancels every trigger a triggerer no longer finds assigned to it
        as a user action, so one that stalled past ``[triggerer] triggerer_health_check_threshold``
        kills, when it wakes, the triggers the other triggerer took over; the task is still
        deferred then, and its Jobs are the other's to watch. Unknown (no triggerer, or its state
        unreadable): a user's kill, as Airflow says."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False
        try:
            state = await asyncio.wait_for(asyncio.to_thread(_task_state, ti), STATE_READ_SECONDS)
        except Exception:
            self.log.warning("could not read the task's state; on_kill taken as a user's", exc_info=True)
            return False
        if state == "deferred":
            self.log.info("on_kill while the task is still deferred: its trigger moved to another triggerer")
            return True
        return False

    def hold_seconds(self) -> float:
        """How long after it starts the trigger holds an event a worker resumes on: in line there
        is no executor whose report could race the resumed task, so no hold."""
        return settle_seconds(self.settle_seconds) if self.in_triggerer() else 0.0

    def wait_settings(self) -> dict[str, Any]:
        """What every kind of wait takes, as the operators' ``wait_options()`` give it to a wait
        in the worker (tests/unit/test_wait_settings.py keeps the two in step)."""
        return {
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "deadline": self.deadline,
            "progress": self.log.info,
            "progress_interval": self.progress_interval,
            "diagnostics": self.diagnostics,
            "diagnose_interval": self.diagnose_interval,
            "pending_timeout": self.pending_timeout,
            "logs": self.logs,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        try:
            event = await self._wait()
        except Exception as e:
            event = self._error_event(e)
        event.update(self._identity())
        event.pop("log_positions", None)  # only a wait that hands over needs them
        # A success ends here: no worker resumes, no race (triggers/completion.py).
        if (
            self.completion
            and self.in_triggerer()
            and await asyncio.to_thread(complete, self.completion, event, self.log)
        ):
            yield TaskSuccessEvent()
            return
        await settle(started, self.hold_seconds(), self.log)
        yield TriggerEvent(event)

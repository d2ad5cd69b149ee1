"""Waiting in the worker: ``run_wait`` runs a wait coroutine with Airflow's SIGTERM handler on its
event loop; ``decided_event`` is the event for a Job decided before any wait; and the default of
``deferrable``."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any

from airflow_batchjob.core.wait import Verdict, WaitFor, check
from airflow_batchjob.exceptions import BatchJobError

DEFER_AFTER = 5.0  # seconds a deferrable operator watches in the worker before it defers


def run_wait(wait: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a wait in the worker with SIGTERM handled by the wait's own event loop.

    Python runs signal handlers on the main thread only, when it next runs bytecode. A SIGTERM
    the kernel hands to another thread of the task (Airflow's supervisor comms, thread pools)
    does not interrupt the main thread's ``select()``, so a wait with no timer due slept through
    Airflow's SIGTERM handler, and never called ``on_kill``, until its Job changed (seen in CI).
    Registered with the loop, the same handler wakes it through its wakeup fd and runs at once;
    then the wait ends (``on_kill`` deleted what it waited on) with the handler's exception, or
    ``BatchJobError``, instead of waiting for the watch to report the deletion.
    """

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        on_main = threading.current_thread() is threading.main_thread()  # where signals can be set
        handler = previous if callable(previous) and on_main else None
        waiting = asyncio.current_task()
        failure: list[BaseException] = []

        def killed() -> None:
            # Airflow's handler calls on_kill (which deletes the Jobs) and may return without
            # raising: the wait then has nothing left to wait for, so end it here.
            try:
                handler(int(signal.SIGTERM), None)  # type: ignore[misc]
            except BaseException as e:
                failure.append(e)
            finally:
                if waiting is not None:
                    waiting.cancel()
                    failure.append(BatchJobError("the task was killed (SIGTERM) while it waited"))

        if handler is not None:
            loop.add_signal_handler(signal.SIGTERM, killed)
        try:
            return await wait
        except asyncio.CancelledError:
            if failure:
                raise failure[0] from None
            raise
        finally:
            if handler is not None:
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, handler)

    return asyncio.run(main())


def decided_event(job: dict[str, Any]) -> dict[str, Any] | None:
    """The event a wait would report for a Job whose outcome is already decided; None if it is not."""
    verdict, outcome, why = check(job, WaitFor())
    if verdict is Verdict.WAITING:
        return None
    return {"status": verdict.value, "message": why, "job": outcome.to_dict()}

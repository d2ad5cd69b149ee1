"""A SIGTERM delivered to another thread must still reach the task's handler during a wait, and
end the wait.

Airflow's task runner handles SIGTERM (it calls ``on_kill``) with a Python handler, which only
runs when the main thread runs bytecode. A wait in the worker spends its time in the event loop's
``select()``; when the kernel hands the process's SIGTERM to another thread, that ``select()`` is
not interrupted. Here the signal is sent to a helper thread on purpose (``pthread_kill``), and
the wait has nothing else to wake it before its 10 s guard: the handler must run anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_batchjob.exceptions import BatchJobError
from airflow_batchjob.operators.job import run_wait


@pytest.fixture
def sigterm_handler() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    before = signal.getsignal(signal.SIGTERM)
    yield lambda handler: signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGTERM, before)


def _signal_from_another_thread(sent: list[float], delay: float = 0.3) -> None:
    def send() -> None:
        time.sleep(delay)
        sent.append(time.monotonic())
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread, not the main one

    threading.Thread(target=send, daemon=True).start()


def test_sigterm_to_another_thread_runs_the_handler_and_ends_the_wait(sigterm_handler: Any) -> None:
    """Without the loop's handler, this one ran only when the 10 s guard woke the loop; and once
    it has run (Airflow's calls on_kill, which deletes the Jobs), the wait ends at once."""
    sent: list[float] = []
    ran: list[tuple[str, float]] = []

    def handler(signum: int, frame: Any) -> None:
        ran.append((threading.current_thread().name, time.monotonic()))

    sigterm_handler(handler)

    async def wait() -> dict[str, Any]:
        _signal_from_another_thread(sent)
        with contextlib.suppress(TimeoutError):
            await asyncio.sleep(10)  # the guard: nothing else wakes the loop before it
        return {"status": "done"}

    with pytest.raises(BatchJobError, match="killed"):
        run_wait(wait())
    ended = time.monotonic()
    ((thread, at),) = ran
    assert thread == "MainThread"
    assert at - sent[0] < 5, (
        f"the handler ran {at - sent[0]:.1f}s after the signal: only when the guard woke the loop"
    )
    assert ended - sent[0] < 5, "the wait went on after the task was killed"
    assert signal.getsignal(signal.SIGTERM) is handler  # Airflow's handler is back after the wait


def test_an_exception_of_the_handler_ends_the_wait(sigterm_handler: Any) -> None:
    class Terminated(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")

    sigterm_handler(handler)

    async def wait() -> dict[str, Any]:
        _signal_from_another_thread([])
        await asyncio.sleep(10)
        return {"status": "done"}

    with pytest.raises(Terminated):
        run_wait(wait())


def test_the_wait_result_and_errors_pass_through(sigterm_handler: Any) -> None:
    sigterm_handler(lambda signum, frame: None)

    async def ok() -> dict[str, Any]:
        return {"status": "met"}

    async def boom() -> dict[str, Any]:
        raise RuntimeError("boom")

    assert run_wait(ok()) == {"status": "met"}
    with pytest.raises(RuntimeError, match="boom"):
        run_wait(boom())

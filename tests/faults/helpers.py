"""Shared by the fault tests: counting what a run lost or repeated, finding and killing workers."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.cluster.helpers import queue_dag

if TYPE_CHECKING:
    from airflow.sdk import DAG

# One O_APPEND write per processed item: a line is whole, and an item done twice appears twice.
RECORD = 'printf "%s\\n" "$ITEM" >> /out/results'


def slowed(seconds: float) -> str:
    """A shell step sleeping ``seconds`` per item while the test's ``/out/slow`` file exists."""
    return f"if [ -e /out/slow ]; then sleep {seconds}; fi; "


@dataclass(frozen=True)
class QueueRun:
    """A fault test's run over one broker, for tests that do the same to Redis and RabbitMQ."""

    broker: str
    dag_id: str
    n: int
    prefix: str  # of the item names
    consume: dict[str, Any]  # the QueueJobOperator's mode and the mode's own settings
    queue_end: dict[str, int]  # the queue statistics after the run (RabbitMQ keeps no "processing")

    @property
    def items(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(self.n)]

    def dag(self, namespace: str, out: Path, script: str, **kwargs: Any) -> DAG:
        """Pre-fill the items, then consume them with ``script`` (``kwargs``: the test's own settings)."""
        return queue_dag(
            self.dag_id, namespace, self.broker, self.items, out, script, **kwargs, **self.consume
        )


@dataclass
class Tally:
    """What a run did to its items: lost (never processed), and processed more than once."""

    expected: list[str]
    seen: Counter[str]

    @property
    def lost(self) -> list[str]:
        return [i for i in self.expected if self.seen[i] == 0]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)

    @property
    def strangers(self) -> list[str]:
        want = set(self.expected)
        return [i for i in self.seen if i not in want]

    def line(self) -> str:
        return (
            f"{len(self.expected)} items, {len(self.lost)} lost, {self.duplicates} processed more than once "
            f"({sum(1 for n in self.seen.values() if n > 1)} items)"
        )


def worker_pids(queue: str) -> list[int]:
    """Live worker processes (the containers' main processes) consuming ``queue``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state == "Z" or b"airflow_batchjob.worker" not in argv:
            continue
        if queue.encode() in argv:
            found.append(int(d.name))
    return found


@dataclass
class Killer:
    """SIGKILLs a random worker of ``queue`` every ``every`` seconds while ``active()`` holds.

    ``slow``: a file that exists while kills are still owed. The worker commands sleep while it
    exists (see ``SLOW``), so a fast drain cannot outrun the kills: the count of kills is set by the
    test, not by how quickly this machine processes items or how long the node's crash-loop backoff
    keeps killed containers down.
    """

    queue: str
    every: float
    max_kills: int
    active: Callable[[], bool] = lambda: True
    slow: Path | None = None
    kills: int = 0
    seed: int = 10
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        rnd = random.Random(self.seed)
        while not self._stop.wait(self.every * rnd.uniform(0.5, 1.5)) and self.kills < self.max_kills:
            if not self.active():
                continue
            pids = worker_pids(self.queue)
            if not pids:
                continue
            try:
                os.kill(rnd.choice(pids), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass
        self._release()

    def _release(self) -> None:
        if self.slow is not None:
            self.slow.unlink(missing_ok=True)

    def __enter__(self) -> Killer:
        if self.slow is not None:
            self.slow.touch()
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._release()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def assert_nothing_lost(result: dict[str, Any], tally: Tally, queue_end: dict[str, int]) -> None:
    """The consume task succeeded, every item was processed, none made up, and the queue's
    statistics end as ``queue_end`` says (the tests that share this differ only in those)."""
    assert result["consume"]["state"] == "success"
    assert tally.lost == [] and tally.strangers == []
    stats = result["consume"]["xcom"]["return_value"]["queue"]
    assert {k: stats[k] for k in queue_end} == queue_end, stats

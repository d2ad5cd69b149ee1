"""``redis``: a variable number of long-lived workers (Kubernetes' "fine parallel processing").

Each worker leases items until the queue is drained. The lease is renewed every third of its
length while the program runs; a worker that dies stops renewing, and any other worker puts
the item back once the lease expired. A worker exits 0 only when nothing is pending *and*
nothing is in flight: the Job controller starts no new Pod after one succeeded, so a worker
that left while another still held an item could leave that item to nobody.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Sequence
from typing import Any

from airflow_batchjob.core.results import RESULT_ENV
from airflow_batchjob.queues import Envelope, RedisQueue, redis_from_url
from airflow_batchjob.worker.run import (
    EXIT_BAD_RESULT,
    EXIT_TERMINATED,
    ProgramStartError,
    Stop,
    item_result,
    log,
    new_result_file,
    program_env,
    run_program,
    write_summary,
)

URL_ENV = "BATCHJOB_REDIS_URL"
EXIT_USAGE = 2


def worker_id() -> str:
    """The Pod name (the hostname), the pid and a random part: unique even across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Renewer(threading.Thread):
    """Renews the lease of the item being processed, so a slow item is not taken by another worker."""

    def __init__(self, queue: RedisQueue, env: Envelope, worker: str, lease_seconds: int) -> None:
        super().__init__(name="lease-renewer", daemon=True)
        self.queue = queue
        self.env = env
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.done.wait(self.lease_seconds / 3):
            try:
                if not self.queue.renew(self.env, self.worker, self.lease_seconds) and not self.lost:
                    self.lost = True
                    log(f"lease of item {self.env.id} lost to another worker (it expired)")
            except Exception as e:  # a broker hiccup: the next renewal may succeed
                log(f"lease renewal failed: {type(e).__name__}: {e}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def run(
    queue: str,
    lease_seconds: int,
    max_attempts: int,
    poll_seconds: float,
    program: Sequence[str],
    stop: Stop,
    termination_log: str | None,
) -> int:
    url = os.environ.get(URL_ENV)
    if not url:
        log(f"{URL_ENV} is not set: it holds the redis:// or rediss:// URL of the broker")
        return EXIT_USAGE
    q = RedisQueue(redis_from_url(url), queue)
    me = worker_id()
    counts = {"processed": 0, "failed": 0, "dead_lettered": 0, "lost_leases": 0, "reclaimed": 0}
    summary: dict[str, Any] = {"mode": "redis", "queue": queue, "worker": me}
    wait = 0.05
    start_error: int | None = None
    while not stop.requested:
        env = q.lease(me, lease_seconds)
        if env is None:
            reclaimed = q.reclaim_expired(max_attempts)
            counts["reclaimed"] += reclaimed
            if reclaimed:
                continue
            if q.drained():
                if not q.client.exists(q.marker):
                    log(f"queue {queue!r} was never pre-filled (no {q.marker!r} key): nothing to do")
                break
            stop.event.wait(wait)  # others still hold items: one may die and its item come back
            wait = min(wait * 2, poll_seconds)
            continue
        wait = 0.05
        renewer = Renewer(q, env, me, lease_seconds)
        renewer.start()
        result_file = new_result_file()
        try:
            item_env = program_env(env.item, {"ITEM_ID": env.id, RESULT_ENV: result_file})
            code = run_program(program, env.item_bytes, item_env, stop)
        except ProgramStartError as e:
            log(str(e))
            q.release(env)
            start_error = e.exit_code
            break
        finally:
            renewer.stop()
            value, error = item_result(result_file, f"item {env.id}")
        if code == 0 and error is not None:  # an unusable result fails the item like an exit code
            log(error)
            code = EXIT_BAD_RESULT
        if code == 0:
            if q.complete(env, value):
                counts["processed"] += 1
            else:
                counts["lost_leases"] += 1
        elif stop.requested:
            if q.release(env):
                log(f"stopped: item {env.id} released to the queue")
        else:
            counts["failed"] += 1
            outcome = q.fail(env, max_attempts)
            if outcome == "dead":
                counts["dead_lettered"] += 1
                log(f"item {env.id} failed (exit {code}): dead-lettered after {max_attempts} attempts")
            elif outcome == "retry":
                log(f"item {env.id} failed (exit {code}): requeued")
            else:
                counts["lost_leases"] += 1
    # 0 only when drained; stopped early, the Job must not take this Pod's success as "all done".
    exit_code = start_error if start_error is not None else EXIT_TERMINATED if stop.requested else 0
    write_summary(termination_log, {**summary, **counts, "exit_code": exit_code})
    return exit_code

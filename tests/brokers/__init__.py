"""Tests against the real Redis and RabbitMQ of the local cluster, with real worker processes.

Shared helpers: broker URLs from the cluster state, starting workers as separate processes (each
in its own process group, so killing the group kills the worker and its program together, as
when a Pod dies), and reading back what the test program recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import cluster as lc

WORKER = [sys.executable, "-m", "airflow_batchjob.worker"]

# The program under test records every item it sees as one file "<ITEM_ID>.<pid>" holding the
# item bytes from stdin, so a duplicate shows up as two files. The item "slow" sleeps the first
# time only (mkdir is atomic), "bad*" fails; each attempt leaves a file in attempts/.
RECORDER = r"""
set -u
touch "$R/attempts/$ITEM_ID.$$"
case "$ITEM" in
  slow*) if mkdir "$R/slow.lock" 2>/dev/null; then echo "$$" > "$R/slow.lock/pid"; sleep 300; fi ;;
  bad*) exit 3 ;;
esac
cat > "$R/done/$ITEM_ID.$$"
"""


def redis_url(st: lc.State, password: str | None = None) -> str:
    return f"redis://:{st.redis_password if password is None else password}@127.0.0.1:{st.ports['redis']}/0"


def amqp_url(st: lc.State, password: str | None = None) -> str:
    pw = st.rabbitmq_password if password is None else password
    return f"amqp://{st.rabbitmq_user}:{pw}@127.0.0.1:{st.ports['rabbitmq']}/%2F"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Worker:
    """A worker process; its output goes to files so many workers never block on a pipe."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    summary: Path

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_pod(self, sig: int = signal.SIGKILL) -> None:
        """The Pod dies: the worker and its program at once (the whole process group)."""
        os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def result(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}


def pod_environ() -> dict[str, str]:
    """This process's environment without the Airflow connections the session exported: like a Pod's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}


class Workers:
    """Starts workers for one test and, at the end, kills whatever is left of their process groups."""

    def __init__(self, tmp: Path, mode: str, env: Mapping[str, str], secrets: Sequence[str] = ()) -> None:
        self.tmp = tmp
        self.mode = mode
        self.env = dict(env)
        self.secrets = list(secrets)
        self.started: list[Worker] = []

    def start(
        self, options: Sequence[str], program: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Worker:
        n = len(self.started)
        out, err, summary = (self.tmp / f"worker-{n}.{ext}" for ext in ("out", "err", "json"))
        cmd = [*WORKER, self.mode, *options, "--termination-log", str(summary), "--", *program]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                cmd,
                env={**pod_environ(), **self.env, **(env or {})},
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        w = Worker(proc, out, err, summary)
        self.started.append(w)
        return w

    def assert_no_secret_printed(self) -> None:
        for w in self.started:
            text = w.output()
            for s in self.secrets:
                assert s not in text, f"a broker password was printed by worker {w.proc.args}"

    def cleanup(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(timeout=30)
            # Programs left behind (a shell's child after SIGTERM) share the worker's group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)


def recorder_dir(tmp: Path) -> Path:
    r = tmp / "rec"
    (r / "attempts").mkdir(parents=True)
    (r / "done").mkdir()
    return r


def recorded(r: Path) -> dict[str, list[bytes]]:
    """Item id -> the item bytes of every successful run (more than one entry: a duplicate)."""
    out: dict[str, list[bytes]] = {}
    for f in (r / "done").iterdir():
        out.setdefault(f.name.split(".")[0], []).append(f.read_bytes())
    return out


def attempts(r: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in (r / "attempts").iterdir():
        key = f.name.split(".")[0]
        out[key] = out.get(key, 0) + 1
    return out


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)

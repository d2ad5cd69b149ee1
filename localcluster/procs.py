"""Process groups the local cluster starts: whether one still runs, and stopping one for good.

Every component (apiserver, kwok, Kueue's manager, the brokers ...) runs in a process group of its
own, led by the process whose pid the cluster records, so stopping the group stops what it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def exists(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie of ours counts as gone: it has exited, unreaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the group led by ``pid``; SIGKILL it if its leader still runs ``grace`` s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while exists(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not exists(pid):
            return


def recorded_pid(pidfile: Path) -> int | None:
    """The pid written in ``pidfile`` if that process still runs, else None."""
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    return pid if pid is not None and exists(pid) else None

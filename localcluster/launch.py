"""Starting the local cluster's processes and waiting for them: free ports, ``spawn`` (a process
group of its own, its command line saved in the State to restart it), ``wait_for``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from localcluster import procs

if TYPE_CHECKING:
    from localcluster.state import State


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, logs: Path | None = None, pid: int | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not procs.exists(pid):
            timeout = 0
            break
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = ""
    if logs and logs.exists():
        tail = "\n".join(logs.read_text(errors="replace").splitlines()[-30:])
    why = "exited" if timeout == 0 else f"not ready after {timeout:.0f}s"
    raise RuntimeError(f"localcluster: {what} {why}; last lines of {logs}:\n{tail}")


def spawn(st: State, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    st.commands[name] = cmd
    st.envs[name] = env or {}
    logs = Path(st.dir) / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=st.dir,
        )
    st.pids[name] = proc.pid
    st.save()

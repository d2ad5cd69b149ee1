"""localcluster/procs.py on real processes: a group stops, one that ignores SIGTERM is killed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from localcluster import procs


def _group(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def test_a_group_stops_with_sigterm_and_its_children_with_it() -> None:
    leader = _group("sleep 60 & wait")
    assert procs.exists(leader.pid)
    procs.stop_group(leader.pid)
    leader.wait(5)
    assert not procs.exists(leader.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "trapped"
    leader = _group(f"trap '' TERM; touch {ready}; while :; do sleep 0.1; done")
    while not ready.exists():  # SIGTERM before the trap is set would end it as TERM allows
        assert leader.poll() is None
        time.sleep(0.01)
    procs.stop_group(leader.pid, grace=0.5)
    assert leader.wait(5) == -9


def test_a_recorded_pid_counts_only_while_it_runs(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    assert procs.recorded_pid(pidfile) is None
    leader = _group("sleep 60")
    pidfile.write_text(str(leader.pid))
    assert procs.recorded_pid(pidfile) == leader.pid
    procs.stop_group(leader.pid)
    leader.wait(5)
    assert procs.recorded_pid(pidfile) is None

"""localcluster/stale.py on real processes and directories: what a killed run left is cleared,
what a live run owns is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from localcluster import procs, stale


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _gone(path: Path, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def test_a_dead_runs_cluster_is_stopped_and_removed_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    dead = tmp_path / f"test-{_dead_pid()}"
    (dead / "etcd").mkdir(parents=True)
    # A process the dead run left: it names the data dir on its command line, as etcd does.
    left = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"{dead}/etcd"], start_new_session=True
    )
    live = tmp_path / f"test-{os.getpid()}"
    live.mkdir()
    other = tmp_path / "mine"  # not a run's cluster at all
    other.mkdir()

    cleared = stale.sweep(tmp_path)

    assert cleared == [dead.name]
    assert left.wait(10) == -9 and not procs.exists(left.pid)
    assert _gone(dead), "the dead run's data dir is removed"
    assert live.is_dir() and other.is_dir()


def test_an_abandoned_removal_is_started_again(tmp_path: Path) -> None:
    abandoned = tmp_path / f".test-1.removing-{_dead_pid()}"
    (abandoned / "a" / "b").mkdir(parents=True)
    (abandoned / "a" / "b" / "f").write_text("x")
    ongoing = tmp_path / f".test-2.removing-{os.getpid()}"  # its remover still runs
    ongoing.mkdir()

    assert stale.sweep(tmp_path) == [abandoned.name]
    assert _gone(abandoned) and ongoing.is_dir()

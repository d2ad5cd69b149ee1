"""Clear what killed runs left in the clusters directory: ``python -m localcluster.stale DIR``.

``scripts/test.sh`` and ``scripts/demo.sh`` name their clusters ``<kind>-<their pid>`` and stop
them on exit; ``down`` renames a data dir to ``.<name>.removing-<pid>`` and deletes it in the
background. A run killed from outside (a CI time limit) skips its exit trap, and its background
delete may die with it: the data dirs stay, a real node's mounts with them, gigabytes a run. This
stops the clusters whose run is gone (processes, containers, a real node's mounts) and starts the
delete of abandoned ``.removing`` dirs again. A cluster whose run still lives is never touched.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from localcluster import cluster as lc
from localcluster import procs

OWNED = re.compile(r"(test|real|floor|nodefaults|demo)-(\d+)")
REMOVING = re.compile(r"\..+\.removing-(\d+)")


def sweep(clusters: Path) -> list[str]:
    """Stop and remove what dead runs left under ``clusters``; the names of what was cleared."""
    cleared = []
    for d in sorted(clusters.iterdir()) if clusters.is_dir() else []:
        owned, removing = OWNED.fullmatch(d.name), REMOVING.fullmatch(d.name)
        if owned and not procs.exists(int(owned.group(2))):
            _stop(d)
            lc.remove_later(d)
            cleared.append(d.name)
        elif removing and not procs.exists(int(removing.group(1))) and not _being_removed(d):
            lc.delete_in_background(d)
            cleared.append(d.name)
    return cleared


def _stop(d: Path) -> None:
    """What ``down`` stops, found by the data dir rather than by recorded pids: those may belong to
    other processes by now. A process working in the dir or naming it on its command line is the
    dead run's (etcd's data dir, the apiserver's certificates ... are in it)."""
    lc.sweep_containers(d)
    root = str(d.resolve()).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if root + b"/" in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
    st = lc.State.load(d)
    if st is not None and st.node == "real":
        from localcluster import realnode

        realnode.sweep(d)


def _being_removed(d: Path) -> bool:
    """Whether an ``rm`` (of an earlier sweep) works on ``d`` already."""
    target = str(d).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[:1] == [b"rm"] and target in cmdline:
            return True
    return False


if __name__ == "__main__":
    for name in sweep(Path(sys.argv[1])):
        print(f"localcluster: cleared {name}, left by a run that is gone", file=sys.stderr)

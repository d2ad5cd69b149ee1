"""Exec one container's process inside a private mount namespace.

Run as ``unshare --mount --propagation private -- python -I podexec.py SPEC.json``: it bind-mounts
the Pod's volumes at their ``mountPath`` (visible to this process tree only), changes to the
working directory and ``exec``s the container's command, so the container's pid is this pid.
Standard library only: it runs with ``python -I`` for a fast start.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src: str, dst: str, flags: int) -> None:
    if _libc.mount(src.encode(), dst.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def _bind(src: str, dst: str, read_only: bool) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
        if not os.path.exists(dst):
            with open(dst, "a"):
                pass
    _mount(src, dst, MS_BIND | MS_REC)
    if read_only:
        _mount(src, dst, MS_BIND | MS_REMOUNT | MS_RDONLY)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        for m in spec["mounts"]:
            _bind(m["source"], m["target"], m.get("readOnly", False))
        os.chdir(spec.get("cwd") or "/")
    except OSError as e:
        print(f"podexec: {e}", file=sys.stderr)
        sys.exit(128)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as e:
        print(f"podexec: cannot run {argv[0]!r}: {e.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()

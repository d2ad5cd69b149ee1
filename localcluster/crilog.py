"""Container logs in the CRI format the kubelet reads, and the kubelet's log query on top of them.

Each record is ``<RFC3339Nano time> stdout <F|P> <bytes>\\n``: ``F`` ends a line (the newline
is implied), ``P`` is a piece without one (output that ended without a newline). That is what
containerd writes for the kubelet, and it lets the node agent answer what the kubelet answers:
``timestamps``, ``sinceTime``, ``sinceSeconds``, ``tailLines``, ``limitBytes``, ``follow``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO


def stamp() -> bytes:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.").encode() + f"{now.microsecond:06d}000Z".encode()


def copy_output(source: IO[bytes], path: Path) -> threading.Thread:
    """Copy a container's output into ``path`` as CRI records, in a thread (returned, started)."""

    def run() -> None:
        pending = b""
        with open(path, "ab", buffering=0) as out:
            while True:
                chunk = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if lines:  # one write per batch: a reader never sees half a record
                    ts = stamp()
                    out.write(b"".join(ts + b" stdout F " + line + b"\n" for line in lines))
            if pending:
                out.write(stamp() + b" stdout P " + pending + b"\n")
        source.close()

    thread = threading.Thread(target=run, name=f"log-{path.parent.name}", daemon=True)
    thread.start()
    return thread


def records(data: bytes) -> Iterator[tuple[str, bytes]]:
    """``(timestamp, output bytes)`` of each complete record (a trailing partial one is skipped)."""
    for raw in data.split(b"\n")[:-1]:
        ts, _, rest = raw.partition(b" ")
        _stream, _, rest = rest.partition(b" ")
        tag, _, content = rest.partition(b" ")
        yield ts.decode(), content + (b"\n" if tag == b"F" else b"")


def _parse_time(value: str) -> dt.datetime:
    """RFC 3339 with up to nanoseconds (Python's parser takes at most microseconds)."""
    m = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    head, frac, zone = m.groups()
    zone = "+00:00" if zone == "Z" else zone
    return dt.datetime.fromisoformat(f"{head}.{(frac or '0')[:6].ljust(6, '0')}{zone}")


class Query:
    """The kubelet's log options, applied to records."""

    def __init__(self, q: Mapping[str, str]) -> None:
        self.timestamps = q.get("timestamps") == "true"
        self.since: dt.datetime | None = None
        if q.get("sinceTime"):
            self.since = _parse_time(q["sinceTime"])
        elif q.get("sinceSeconds"):
            self.since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
        self.tail = int(q["tailLines"]) if "tailLines" in q else None
        self.limit = int(q["limitBytes"]) if "limitBytes" in q else None

    def render(self, data: bytes, *, tail: bool = True) -> bytes:
        """The selected output of complete records in ``data``."""
        out = [
            (ts.encode() + b" " + content) if self.timestamps else content
            for ts, content in records(data)
            if self.since is None or _parse_time(ts) >= self.since
        ]
        if tail and self.tail is not None:
            out = out[-self.tail :] if self.tail > 0 else []
        return b"".join(out)


def complete_prefix(data: bytes) -> bytes:
    """The part of ``data`` made of complete records (a follower reads a file being written)."""
    return data[: data.rfind(b"\n") + 1]


def plain(path: Path) -> bytes:
    """A log file's output as the container wrote it."""
    return b"".join(content for _, content in records(path.read_bytes()))

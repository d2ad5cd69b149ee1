"""The node agent's CRI log records and the kubelet's log query over them (``localcluster/crilog.py``)."""

from __future__ import annotations

import io
from pathlib import Path

from localcluster import crilog


def test_output_round_trips_with_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"")
    crilog.copy_output(io.BytesIO(b"one\ntwo\nno newline"), path).join()
    assert crilog.plain(path) == b"one\ntwo\nno newline"
    kinds = [line.split(b" ")[2] for line in path.read_bytes().splitlines()]
    assert kinds == [b"F", b"F", b"P"]


def test_query_timestamps_since_and_tail() -> None:
    data = (
        b"2026-01-01T00:00:01.000000001Z stdout F a\n"
        b"2026-01-01T00:00:02.500000000Z stdout F b\n"
        b"2026-01-01T00:00:03.000000000Z stdout F c\n"
        b"2026-01-01T00:00:04.0Z stdout F hal"  # a record still being written
    )
    assert crilog.Query({}).render(crilog.complete_prefix(data)) == b"a\nb\nc\n"
    since = crilog.Query({"sinceTime": "2026-01-01T00:00:02Z", "timestamps": "true"})
    assert since.render(data) == b"2026-01-01T00:00:02.500000000Z b\n2026-01-01T00:00:03.000000000Z c\n"
    assert crilog.Query({"tailLines": "1"}).render(data) == b"c\n"
    assert crilog.Query({"tailLines": "0"}).render(data) == b""

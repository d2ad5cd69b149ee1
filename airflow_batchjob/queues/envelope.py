"""The message format every queue shares: the envelope, item ids and the pre-fill fingerprint.

Every message is an *envelope*, compact JSON ``{"id": "<id>", "item": "<text>"}``. The id is the
item's position and a CRC-32 of its text, 16 hex digits (:func:`item_id`), so it is stable across a
retried pre-fill and two equal items in one list still get distinct ids (one C call per item: a
million-item pre-fill is bound by Redis, not by hashing). A message that is not an
envelope (published by another tool) is taken as the item itself, byte for byte.

Standard library only: both brokers' modules and the in-Pod worker read it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

ID_LENGTH = 16
DEAD_ITEMS_SHOWN = 20  # dead-lettered items a queue's stats list by default
# Envelope bytes around the quoted item text: '{"id":"' + id + '","item":' + quoted + '}'.
_ENVELOPE_OVERHEAD = len('{"id":"","item":}') + ID_LENGTH
# Bound once: the fast paths below call them once per item, up to a million times.
_sha256 = hashlib.sha256
_crc32 = zlib.crc32
MAX_ITEMS = 1 << 32  # positions fit the id's 8 hex digits


@dataclass(frozen=True)
class Envelope:
    """One message as taken from a queue: ``raw`` is kept byte for byte to find it again."""

    id: str
    item: str
    raw: bytes
    leased_by: str | None = None  # Redis: the worker holding the lease

    @property
    def item_bytes(self) -> bytes:
        """The item as the program reads it on stdin (undecodable raw bytes survive unchanged)."""
        return self.item.encode("utf-8", "surrogateescape")


def item_id(position: int, text: str) -> str:
    """Stable id of the item at ``position``: the position and the CRC-32 of the text, 8 hex digits each."""
    return "%08x%08x" % (position, _crc32(text.encode()))  # noqa: UP031


def _check_positions(start: int, count: int) -> None:
    if start < 0 or start + count > MAX_ITEMS:
        raise ValueError(f"a queue holds at most {MAX_ITEMS} items per pre-fill")


def make_envelope(position: int, text: str) -> bytes:
    """The envelope of one item (reference form; :func:`encode_envelopes` is the fast path)."""
    return json.dumps(
        {"id": item_id(position, text), "item": text}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def encode_envelopes(texts: Sequence[str], start: int = 0) -> list[bytes]:
    """Envelopes of ``texts`` (positions counted from ``start``), byte-identical to :func:`make_envelope`.

    The per-item work is a few C calls (CRC, JSON string quoting, one format), which is what
    makes a million-item pre-fill take well under a second on the client.
    """
    _check_positions(start, len(texts))
    crc = _crc32
    return [
        ('{"id":"%08x%08x","item":%s}' % (start + i, crc(t.encode()), encode_basestring(t))).encode()  # noqa: UP031
        for i, t in enumerate(texts)
    ]


def resp_bulk(texts: Sequence[str], start: int, quoted: Sequence[str] | None = None) -> bytes:
    """The envelopes as RESP bulk strings (``$<len>\\r\\n<envelope>\\r\\n`` each), ready to stream.

    ``quoted``: the texts already JSON-quoted (the fingerprint needed them too). Redis' pre-fill
    sends these bytes as they are (``queues/redis.py``).
    """
    _check_positions(start, len(texts))
    if quoted is None:
        quoted = list(map(encode_basestring, texts))
    crc = _crc32
    if "".join(quoted).isascii():  # then characters are bytes and the lengths are known for free
        return "".join(
            [
                '$%d\r\n{"id":"%08x%08x","item":%s}\r\n'  # noqa: UP031
                % (len(q) + _ENVELOPE_OVERHEAD, start + i, crc(t.encode()), q)
                for i, (t, q) in enumerate(zip(texts, quoted, strict=True))
            ]
        ).encode()
    out = []
    for i, (t, q) in enumerate(zip(texts, quoted, strict=True)):
        env = ('{"id":"%08x%08x","item":%s}' % (start + i, crc(t.encode()), q)).encode()  # noqa: UP031
        out.append(b"$%d\r\n%s\r\n" % (len(env), env))
    return b"".join(out)


def fingerprint(texts: Sequence[str]) -> str:
    """sha256 over all texts in order (each JSON-quoted, newline-terminated): same list, same print."""
    return fingerprint_quoted(list(map(encode_basestring, texts)))


def fingerprint_quoted(quoted: Sequence[str]) -> str:
    """:func:`fingerprint` of texts already JSON-quoted (Redis' pre-fill quotes them once for both)."""
    h = _sha256()
    for i in range(0, len(quoted), 100_000):  # JSON-quoted texts hold no raw newline: unambiguous
        h.update(("\n".join(quoted[i : i + 100_000]) + "\n").encode())
    return h.hexdigest()


def marker_matches(raw: bytes | str, print_: str) -> bool:
    """Whether a pre-fill marker (JSON with the count and fingerprint) records ``print_``."""
    try:
        return bool(json.loads(raw).get("fingerprint") == print_)
    except (ValueError, AttributeError):
        return False


def parse_envelope(raw: bytes | str) -> Envelope:
    """Read a message; anything that is not an envelope is the item itself (id from its bytes)."""
    data = raw if isinstance(raw, bytes) else raw.encode()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("id"), str) and isinstance(doc.get("item"), str):
        return Envelope(id=doc["id"], item=doc["item"], raw=data)
    return Envelope(id=raw_id(data), item=data.decode("utf-8", "surrogateescape"), raw=data)


def raw_id(data: bytes) -> str:
    """Id of a message that is not an envelope; the Lua scripts compute the same (``redis.sha1hex``)."""
    return "raw-" + hashlib.sha1(data).hexdigest()[:ID_LENGTH]


def result_record(env: Envelope, result: Any) -> str:
    """What a queue keeps of an item's result: its id (pre-fill order), the item, the value."""
    return json.dumps({"id": env.id, "item": env.item, "result": result}, separators=(",", ":"))

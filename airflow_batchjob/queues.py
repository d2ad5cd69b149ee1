"""Broker side of the queue patterns: Redis and RabbitMQ queues of work items, without Airflow.

Used by the pre-fill operator (in an Airflow worker) and by the in-Pod worker (no Airflow there),
so this module imports only the standard library, ``redis`` and ``pika``.

Every message is an *envelope*, compact JSON ``{"id": "<id>", "item": "<text>"}``. The id is the
item's position and a CRC-32 of its text, 16 hex digits (:func:`item_id`), so it is stable across a
retried pre-fill and two equal items in one list still get distinct ids (one C call per item: a
million-item pre-fill is bound by Redis, not by hashing). A message that is not an
envelope (published by another tool) is taken as the item itself, byte for byte.

Delivery is at least once: an item whose worker died after finishing it but before saying so is
processed again.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import time
import urllib.parse
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported where used: a RabbitMQ worker need not load redis, nor a Redis one pika
    import pika
    import redis

ID_LENGTH = 16
STAGING_TTL = 3600  # seconds a crashed Redis pre-fill's staging list may outlive it
ATTEMPTS_HEADER = "x-batchjob-attempts"
EXIT_CODE_HEADER = "x-batchjob-exit-code"
DEAD_ITEMS_SHOWN = 20
# Envelope bytes around the quoted item text: '{"id":"' + id + '","item":' + quoted + '}'.
_ENVELOPE_OVERHEAD = len('{"id":"","item":}') + ID_LENGTH
_sha256 = hashlib.sha256
_crc32 = zlib.crc32
MAX_ITEMS = 1 << 32  # positions fit the id's 8 hex digits


# -- envelopes -------------------------------------------------------------------------------


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


def _resp_bulk(texts: Sequence[str], start: int, quoted: Sequence[str] | None = None) -> bytes:
    """The envelopes as RESP bulk strings (``$<len>\\r\\n<envelope>\\r\\n`` each), ready to stream.

    ``quoted``: the texts already JSON-quoted (the fingerprint needed them too).
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
    return _fingerprint_quoted(list(map(encode_basestring, texts)))


def _fingerprint_quoted(quoted: Sequence[str]) -> str:
    h = _sha256()
    for i in range(0, len(quoted), 100_000):  # JSON-quoted texts hold no raw newline: unambiguous
        h.update(("\n".join(quoted[i : i + 100_000]) + "\n").encode())
    return h.hexdigest()


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


# -- connections -----------------------------------------------------------------------------


def _take_query(url: str, key: str) -> tuple[list[str], str]:
    """The values of one query argument, and the URL without it (the rest kept in order)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    values = [v for k, v in query if k == key]
    if not values:
        return [], url
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != key])
    return values, urllib.parse.urlunsplit(parts._replace(query=rest))


def redis_from_url(url: str) -> redis.Redis:
    """A Redis client for ``redis://[:password@]host:port/db`` or ``rediss://`` (bytes responses:
    envelopes stay exact). TLS options are query arguments (``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``: file paths; ``ssl_cert_reqs``; ``ssl_check_hostname``)."""
    import redis

    kwargs: dict[str, Any] = {}
    check, url = _take_query(url, "ssl_check_hostname")
    if check:  # older redis-py passes the string "false" on, which is true: give it a bool
        kwargs["ssl_check_hostname"] = check[-1].lower() in ("true", "1", "yes")
    # No blocking commands are used, so a reply slower than socket_timeout means a dead connection.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=10,
        socket_timeout=60,
        socket_keepalive=True,
        health_check_interval=30,
        **kwargs,
    )


def rabbit_params_from_url(url: str) -> pika.URLParameters:
    """Connection parameters for ``amqp://user:password@host:port/vhost`` or ``amqps://...?ssl_options=
    {...}`` (pika's dict: ``ca_certs``, ``certfile``, ``keyfile``, plus ``cert_reqs`` and
    ``check_hostname``); a few retries on connect.

    Query options in the URL (``heartbeat``, ``connection_attempts``, ...) win over these defaults.
    """
    import pika

    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    tls: dict[str, Any] | None = None
    if parts.scheme == "amqps" and "ssl_options" in query:
        # pika's own option names, read here: pika needs a CA file and cannot turn off the
        # hostname check or peer verification from a URL (core/brokerconn.py writes these).
        options, url = _take_query(url, "ssl_options")
        tls = ast.literal_eval(options[0])
        if not isinstance(tls, dict):
            raise ValueError("ssl_options in an amqps:// URL must be a dict")
    params = pika.URLParameters(url)
    if tls is not None:
        from airflow_batchjob.core.brokerconn import client_ssl_context

        ctx = client_ssl_context(
            tls.get("ca_certs") or tls.get("cafile"),
            tls.get("certfile"),
            tls.get("keyfile"),
            str(tls.get("cert_reqs", "required")),
            bool(tls.get("check_hostname", True)),
        )
        params.ssl_options = pika.SSLOptions(ctx, tls.get("server_hostname"))
    if "connection_attempts" not in query:
        params.connection_attempts = 3
    if "retry_delay" not in query:
        params.retry_delay = 1
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = 300
    return params


def _pool_connection(pool: Any) -> Any:
    """A connection from a redis-py pool: 5.3+ takes no argument (and warns on one), older need one."""
    import redis

    if tuple(int(p) for p in redis.__version__.split(".")[:2]) < (5, 3):
        return pool.get_connection("WATCH")  # the command name; only a cluster pool routes by it
    return pool.get_connection()


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages: credentials are never printed."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # as written: port, IPv6 brackets
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


# -- Redis -----------------------------------------------------------------------------------

# Every script finds an envelope's id like parse_envelope does, so leases match in both languages.
_LUA_ID = """
local function idof(env)
  local ok, doc = pcall(cjson.decode, env)
  if ok and type(doc) == 'table' and type(doc['id']) == 'string' and type(doc['item']) == 'string' then
    return doc['id']
  end
  return 'raw-' .. string.sub(redis.sha1hex(env), 1, 16)
end
"""

# KEYS: pending, processing. ARGV: lease key prefix, worker id, lease seconds.
# One script, so an item is never out of both lists, nor in processing without a lease.
_LEASE = (
    _LUA_ID
    + """
local env = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not env then return false end
redis.call('SET', ARGV[1] .. idof(env), ARGV[2], 'EX', tonumber(ARGV[3]))
return env
"""
)

# KEYS: lease key, processing. ARGV: worker id, lease seconds, envelope.
# An expired lease not yet reclaimed is taken back; one that another worker holds is lost.
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if not owner and redis.call('LPOS', KEYS[2], ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

# Shared start of complete/fail/release: leave an item another worker now holds alone; otherwise
# take it out of processing (or out of pending, where reclaim put it after our lease expired).
_TAKE = """
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return 'lost' end
if owner then redis.call('DEL', KEYS[3]) end
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
if n == 0 then n = redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if n == 0 then return 'lost' end
"""

# KEYS: pending, processing, lease key, done, results. ARGV: worker id, envelope, id, result.
# The result is stored with the completion, atomically: an item has a result iff it is done.
_COMPLETE = (
    _TAKE
    + """
redis.call('INCR', KEYS[4])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[3], ARGV[4]) end
return 'done'
"""
)

# KEYS: pending, processing, lease key, attempts, dead. ARGV: worker id, envelope, id, max attempts.
_FAIL = (
    _TAKE
    + """
local attempts = redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if attempts >= tonumber(ARGV[4]) then
  redis.call('RPUSH', KEYS[5], ARGV[2])
  return 'dead'
end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 'retry'
"""
)

# KEYS: pending, processing, lease key. ARGV: worker id, envelope. Back to the front, no attempt.
_RELEASE = (
    _TAKE
    + """
redis.call('LPUSH', KEYS[1], ARGV[2])
return 'released'
"""
)

# KEYS: pending, processing, attempts, dead. ARGV: lease key prefix, max attempts (0: no limit).
# A lost worker counts as an attempt, so an item that kills its worker is dead-lettered in the end.
_RECLAIM = (
    _LUA_ID
    + """
local n = 0
local max = tonumber(ARGV[2])
for _, env in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local id = idof(env)
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('LREM', KEYS[2], 1, env)
    local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
    if max > 0 and attempts >= max then
      redis.call('RPUSH', KEYS[4], env)
    else
      redis.call('LPUSH', KEYS[1], env)
    end
    n = n + 1
  end
end
return n
"""
)

# KEYS: pending, processing, attempts, dead, done, marker. ARGV: lease key prefix.
# Run inside the pre-fill transaction: the lease keys to drop are those of the items in flight.
_RESET = (
    _LUA_ID
    + """
for _, env in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('DEL', ARGV[1] .. idof(env))
end
return redis.call('UNLINK', unpack(KEYS))  -- a big old list is freed in the background
"""
)


class RedisQueue:
    """A Redis work queue with leases: ``name`` pending, ``name:processing`` in flight, and so on.

    Keys: ``name`` (pending list), ``name:processing``, ``name:lease:<id>`` (expiring),
    ``name:attempts`` (hash id -> failures), ``name:dead`` (list), ``name:done`` (count),
    ``name:results`` (hash id -> the item and its program's result) and
    ``name:prefill`` (marker: count and fingerprint), and while a pre-fill runs an expiring
    ``name:staging:<random>``. An item is always in exactly one list, moved
    by Lua scripts, so a worker dying at any point loses nothing: its lease expires and
    :meth:`reclaim_expired` puts the item back.
    """

    def __init__(self, client: redis.Redis, name: str) -> None:
        if not name:
            raise ValueError("a queue needs a name")
        self.client = client
        self.name = name
        self.pending = name
        self.processing = f"{name}:processing"
        self.attempts = f"{name}:attempts"
        self.dead = f"{name}:dead"
        self.done = f"{name}:done"
        self.results = f"{name}:results"
        self.marker = f"{name}:prefill"
        self.lease_prefix = f"{name}:lease:"
        self._lease = client.register_script(_LEASE)
        self._renew = client.register_script(_RENEW)
        self._complete = client.register_script(_COMPLETE)
        self._fail = client.register_script(_FAIL)
        self._release = client.register_script(_RELEASE)
        self._reclaim = client.register_script(_RECLAIM)

    def lease_key(self, envelope_id: str) -> str:
        return self.lease_prefix + envelope_id

    # -- pre-fill --------------------------------------------------------------------------
    def prefill(self, texts: Sequence[str], chunk: int = 10_000) -> int:
        """Replace the queue's content with ``texts``, atomically; a repeat with the same texts is a no-op.

        The envelopes are streamed as raw RESP RPUSHes of ``chunk`` items, without waiting for
        replies, into a private staging list (expiring, so a crashed pre-fill leaves nothing for
        long); then one short MULTI/EXEC resets the queue, renames the staging list to the
        pending list and writes the marker. Workers see all items or none, and Redis does not
        have to queue a million items inside a transaction. The marker is WATCHed from before
        the staging, so two concurrent pre-fills cannot interleave. Returns the number queued.
        """
        texts = list(texts)
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        quoted = list(map(encode_basestring, texts))
        print_ = _fingerprint_quoted(quoted)
        marker = json.dumps({"count": len(texts), "fingerprint": print_}, separators=(",", ":"))
        pool: Any = self.client.connection_pool
        for _ in range(5):
            conn = _pool_connection(pool)
            staging = f"{self.name}:staging:{os.urandom(8).hex()}"
            try:
                conn.send_command("WATCH", self.marker)
                conn.read_response()
                conn.send_command("GET", self.marker)
                current = conn.read_response()
                if current is not None and _marker_matches(current, print_):
                    conn.send_command("UNWATCH")
                    conn.read_response()
                    return len(texts)
                self._stage(conn, staging, texts, quoted, chunk)
                replies = self._commit(conn, staging if texts else None, marker)
            except BaseException:
                conn.disconnect()  # replies may be pending: never hand this connection back as is
                with contextlib.suppress(Exception):
                    self.client.unlink(staging)
                raise
            finally:
                pool.release(conn)
            if replies is not None:
                return len(texts)
            self.client.unlink(staging)  # another pre-fill won the race: try again on its result
        raise RuntimeError(f"pre-fill of {self.name!r} kept racing with another pre-fill of the same queue")

    def _stage(self, conn: Any, staging: str, texts: list[str], quoted: list[str], chunk: int) -> None:
        """Stream the envelopes into ``staging`` (RPUSH chunks, replies read at the end)."""
        import redis

        if not texts:
            return
        key = staging.encode()
        sent = 0
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            head = b"*%d\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n" % (len(part) + 2, len(key), key)
            bulk = _resp_bulk(part, start, quoted[start : start + chunk])
            conn.send_packed_command([head, bulk], check_health=False)
            sent += 1
            if start == 0:  # a pre-fill that dies here leaves an expiring list, not a permanent one
                conn.send_packed_command(
                    conn.pack_command("EXPIRE", staging, STAGING_TTL), check_health=False
                )
                sent += 1
        errors = []
        for _ in range(sent):
            try:
                conn.read_response()
            except redis.ResponseError as e:
                errors.append(e)
        if errors:
            raise redis.ResponseError(f"pre-fill of {self.name!r} failed while staging: {errors[0]}")

    def _commit(self, conn: Any, staging: str | None, marker: str) -> list[Any] | None:
        """MULTI, reset every key, staging -> pending (no expiry), marker, EXEC; None if the WATCH fired."""
        import redis

        keys = [self.pending, self.processing, self.attempts, self.dead, self.done, self.results, self.marker]
        commands = [("MULTI",), ("EVAL", _RESET, len(keys), *keys, self.lease_prefix)]
        if staging is not None:
            commands += [("RENAME", staging, self.pending), ("PERSIST", self.pending)]
        commands += [("SET", self.marker, marker), ("EXEC",)]
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        errors: list[Exception] = []
        for _ in range(len(commands) - 1):  # +OK for MULTI, +QUEUED for each command
            try:
                conn.read_response()
            except redis.ResponseError as e:
                errors.append(e)
        try:
            result = conn.read_response()
        except redis.ResponseError as e:  # EXECABORT: a command was refused while queueing
            raise redis.ResponseError(f"pre-fill of {self.name!r} aborted: {errors or e}") from e
        if result is None:
            return None
        failed = [r for r in result if isinstance(r, Exception)]
        if failed:
            raise redis.ResponseError(f"pre-fill of {self.name!r} failed: {failed[0]}")
        return list(result)

    # -- consumption -----------------------------------------------------------------------
    def lease(self, worker_id: str, lease_seconds: int) -> Envelope | None:
        """Move the next item to processing under a lease held by ``worker_id``; None when none is pending."""
        raw = self._lease(
            keys=[self.pending, self.processing], args=[self.lease_prefix, worker_id, lease_seconds]
        )
        if raw is None:
            return None
        env = parse_envelope(raw)
        return Envelope(id=env.id, item=env.item, raw=env.raw, leased_by=worker_id)

    def renew(self, env: Envelope, worker_id: str, lease_seconds: int) -> bool:
        """Extend the lease; False when another worker took the item over (the lease had expired)."""
        keys = [self.lease_key(env.id), self.processing]
        return bool(self._renew(keys=keys, args=[worker_id, lease_seconds, env.raw]))

    def complete(self, env: Envelope, result: Any = None) -> bool:
        """Done: out of processing, lease dropped, ``done`` counted, ``result`` (JSON-able, None:
        none) stored. False if another worker holds it now."""
        keys = [self.pending, self.processing, self.lease_key(env.id), self.done, self.results]
        stored = "" if result is None else result_record(env, result)
        args = [env.leased_by or "", env.raw, env.id, stored]
        return _text(self._complete(keys=keys, args=args)) == "done"

    def read_results(self) -> list[dict[str, Any]]:
        """``[{"id", "item", "result"}]`` of the done items that returned one, in pre-fill order."""
        raw = self.client.hgetall(self.results)
        return sorted((json.loads(v) for v in raw.values()), key=lambda r: str(r["id"]))

    def fail(self, env: Envelope, max_attempts: int) -> Literal["retry", "dead", "lost"]:
        """Count a failed attempt; requeue at the tail, or dead-letter at ``max_attempts``.

        "lost": the lease had expired and another worker holds the item now; nothing changed.
        """
        keys = [self.pending, self.processing, self.lease_key(env.id), self.attempts, self.dead]
        out = _text(self._fail(keys=keys, args=[env.leased_by or "", env.raw, env.id, max_attempts]))
        return "dead" if out == "dead" else "retry" if out == "retry" else "lost"

    def release(self, env: Envelope) -> bool:
        """Give an item back untried (the worker is stopping): to the front of pending, no attempt counted."""
        keys = [self.pending, self.processing, self.lease_key(env.id)]
        return _text(self._release(keys=keys, args=[env.leased_by or "", env.raw])) == "released"

    def reclaim_expired(self, max_attempts: int | None = None) -> int:
        """Put every in-flight item whose lease is gone back to the front of pending; how many.

        The lost worker counts as an attempt; with ``max_attempts`` an item reaching it is
        dead-lettered instead (an item that kills every worker must not cycle forever).
        """
        keys = [self.pending, self.processing, self.attempts, self.dead]
        return int(self._reclaim(keys=keys, args=[self.lease_prefix, max_attempts or 0]))

    def drained(self) -> bool:
        """True when nothing is pending and nothing is in flight, read in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self.pending)
        pipe.llen(self.processing)
        pending, processing = pipe.execute()
        return int(pending) == 0 and int(processing) == 0

    def stats(self, dead_items: int = DEAD_ITEMS_SHOWN) -> dict[str, Any]:
        """Counts (pending, processing, done, dead), the first dead items, and the pre-fill marker."""
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self.pending)
        pipe.llen(self.processing)
        pipe.get(self.done)
        pipe.llen(self.dead)
        if dead_items > 0:
            pipe.lrange(self.dead, 0, dead_items - 1)
        else:
            pipe.exists(self.dead)  # a placeholder: keep the replies in order
        pipe.get(self.marker)
        pending, processing, done, dead, shown, marker = pipe.execute()
        prefilled = None
        if marker is not None:
            try:
                prefilled = int(json.loads(marker)["count"])
            except (ValueError, KeyError, TypeError):
                prefilled = None
        return {
            "broker": "redis",
            "queue": self.name,
            "prefilled": prefilled,
            "pending": int(pending),
            "processing": int(processing),
            "done": int(done or 0),
            "dead": int(dead),
            "dead_items": [parse_envelope(raw).item for raw in shown] if dead_items > 0 else [],
        }


def result_record(env: Envelope, result: Any) -> str:
    """What a queue keeps of an item's result: its id (pre-fill order), the item, the value."""
    return json.dumps({"id": env.id, "item": env.item, "result": result}, separators=(",", ":"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _marker_matches(raw: bytes | str, print_: str) -> bool:
    try:
        return bool(json.loads(raw).get("fingerprint") == print_)
    except (ValueError, AttributeError):
        return False


# -- RabbitMQ --------------------------------------------------------------------------------

QUEUE_ARGUMENTS = {"x-queue-type": "classic"}
PERSISTENT = 2


def declare(channel: Any, name: str) -> int:
    """Declare a durable classic queue (same arguments everywhere, or RabbitMQ refuses); its depth."""
    frame = channel.queue_declare(queue=name, durable=True, arguments=QUEUE_ARGUMENTS)
    return int(frame.method.message_count)


class RabbitQueue:
    """A durable RabbitMQ queue of envelopes, with ``<name>.dead`` and the ``<name>.prefill`` marker."""

    def __init__(self, params: pika.ConnectionParameters, name: str) -> None:
        if not name:
            raise ValueError("a queue needs a name")
        self.params = params
        self.name = name
        self.dead = f"{name}.dead"
        self.marker = f"{name}.prefill"
        self.results = f"{name}.results"

    def connect(self) -> pika.BlockingConnection:
        import pika

        return pika.BlockingConnection(self.params)

    def prefill(self, texts: Sequence[str], batch: int = 10_000) -> int:
        """Fill the queue with ``texts``: persistent messages, publisher confirms, ``batch`` in flight.

        Idempotent: the marker queue holds one message with the fingerprint and count, written
        last, after every item was confirmed. A pre-fill that finds its own fingerprint there does
        nothing. Otherwise the marker is emptied first, then the queue and its dead-letter queue
        are purged and every item published again: a pre-fill that crashed midway left no marker,
        so its retry starts over and still leaves each item exactly once. (Purging is safe
        because consumers start only after the pre-fill task succeeded.) Returns the item count.
        """
        texts = list(texts)
        if batch < 1:
            raise ValueError("batch must be >= 1")
        print_ = fingerprint(texts)
        # Three short connections: an idle blocking connection would miss its heartbeats during
        # a long publish, and the broker would close it.
        conn = self.connect()
        try:
            ch = conn.channel()
            declare(ch, self.marker)
            if self._marker_says(ch, print_):
                return len(texts)
            ch.queue_purge(self.marker)
            for name in (self.name, self.dead, self.results):
                declare(ch, name)
                ch.queue_purge(name)
        finally:
            _close(conn)
        import pika

        _ConfirmedPublisher(self.params, self.name, encode_envelopes(texts), batch).run()
        body = json.dumps({"count": len(texts), "fingerprint": print_}, separators=(",", ":")).encode()
        conn = self.connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_purge(self.marker)
            props = pika.BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")
            ch.basic_publish("", self.marker, body, props, mandatory=True)  # returns once confirmed
        finally:
            _close(conn)
        return len(texts)

    def _marker_says(self, ch: Any, print_: str) -> bool:
        """Whether the marker holds this fingerprint (peeked: the message is put back)."""
        method, _props, body = ch.basic_get(self.marker, auto_ack=False)
        if method is None:
            return False
        ch.basic_nack(method.delivery_tag, requeue=True)
        return _marker_matches(body, print_)

    def stats(self, dead_items: int = DEAD_ITEMS_SHOWN) -> dict[str, Any]:
        """Ready messages in the queue and in ``<name>.dead`` (passive declares), and the first dead items.

        Unacknowledged messages (items being processed) are not visible through AMQP; they are
        not counted in ``pending``.
        """
        conn = self.connect()
        try:
            pending, consumers = self._depth(conn, self.name)
            dead, _ = self._depth(conn, self.dead)
            prefilled = self._peek_count(conn) if self._depth(conn, self.marker)[0] else None
            shown: list[str] = []
            if dead and dead_items > 0:
                ch = conn.channel()
                for _ in range(min(dead, dead_items)):
                    method, _props, body = ch.basic_get(self.dead, auto_ack=False)
                    if method is None:
                        break
                    shown.append(parse_envelope(body).item)
                ch.close()  # unacknowledged: the dead items go back where they were
        finally:
            _close(conn)
        return {
            "broker": "rabbitmq",
            "queue": self.name,
            "prefilled": prefilled,
            "pending": pending,
            "consumers": consumers,
            "dead": dead,
            "dead_items": shown,
        }

    def read_results(self) -> list[dict[str, Any]]:
        """``[{"id", "item", "result"}]`` from ``<name>.results``, one per item (a redelivered item
        may have published twice), in pre-fill order. Peeked: the messages stay in the queue."""
        conn = self.connect()
        found: dict[str, dict[str, Any]] = {}
        try:
            if not self._depth(conn, self.results)[0]:
                return []
            ch = conn.channel()
            while True:
                method, _props, body = ch.basic_get(self.results, auto_ack=False)
                if method is None:
                    break
                record = json.loads(body)
                found[str(record["id"])] = record
            ch.close()  # unacknowledged: they go back to the queue
        finally:
            _close(conn)
        return [found[k] for k in sorted(found)]

    def _peek_count(self, conn: pika.BlockingConnection) -> int | None:
        """The item count the marker recorded (peeked, not consumed)."""
        ch = conn.channel()
        method, _props, body = ch.basic_get(self.marker, auto_ack=False)
        ch.close()
        if method is None:
            return None
        try:
            return int(json.loads(body)["count"])
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _depth(conn: pika.BlockingConnection, name: str) -> tuple[int, int]:
        """Messages ready and consumers of a queue, or zeros when it does not exist."""
        import pika.exceptions

        ch = conn.channel()
        try:
            frame = ch.queue_declare(queue=name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return 0, 0
            raise
        ch.close()
        return int(frame.method.message_count), int(frame.method.consumer_count)


def _close(conn: pika.BlockingConnection) -> None:
    import pika.exceptions

    try:
        if conn.is_open:
            conn.close()
    except pika.exceptions.AMQPError:
        pass


class _ConfirmedPublisher:
    """Publish many messages with publisher confirms, keeping up to ``window`` unconfirmed.

    pika's BlockingChannel waits for each confirm in turn (a round trip per message); the
    asynchronous connection lets the broker confirm in bulk (``multiple``), which is what makes
    tens of thousands of persistent messages per second possible.
    """

    def __init__(
        self, params: pika.ConnectionParameters, queue: str, bodies: list[bytes], window: int
    ) -> None:
        self.params = params
        self.queue = queue
        self.bodies = bodies
        self.window = window
        import pika

        self.props = pika.BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")
        self.sent = 0
        self.upto = 0  # every delivery tag <= upto is confirmed
        self.singles: set[int] = set()  # confirmed one by one above upto
        self.error: BaseException | None = None
        self.channel: Any = None
        self.conn: Any = None
        self.last_progress = time.monotonic()
        self.idle_timeout = 120.0

    @property
    def confirmed(self) -> int:
        return self.upto + len(self.singles)

    def run(self) -> None:
        if not self.bodies:
            return
        import pika

        self.conn = pika.SelectConnection(
            self.params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self.conn.ioloop.call_later(5, self._watchdog)
        self.conn.ioloop.start()
        if self.error is not None:
            raise self.error
        if self.confirmed < len(self.bodies):
            raise RuntimeError(f"pre-fill of {self.queue!r}: {self.confirmed}/{len(self.bodies)} confirmed")

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self.conn.is_open:
            self.conn.close()
        elif self.conn.is_closed:
            self.conn.ioloop.stop()

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, error: BaseException) -> None:
        self.error = error
        conn.ioloop.stop()

    def _on_close(self, conn: Any, reason: BaseException) -> None:
        if self.confirmed < len(self.bodies) and self.error is None:
            self.error = reason
        conn.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._pump())

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        if self.confirmed < len(self.bodies):
            self._fail(reason)

    def _pump(self) -> None:
        end = min(len(self.bodies), self.confirmed + self.window)
        publish, queue, props, bodies = self.channel.basic_publish, self.queue, self.props, self.bodies
        for i in range(self.sent, end):
            publish("", queue, bodies[i], props)
        self.sent = max(self.sent, end)

    def _on_confirm(self, frame: Any) -> None:
        import pika

        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self._fail(RuntimeError(f"RabbitMQ refused message {method.delivery_tag} of {self.queue!r}"))
            return
        tag = int(method.delivery_tag)
        if method.multiple:
            self.upto = max(self.upto, tag)
            self.singles = {t for t in self.singles if t > self.upto}
        else:
            self.singles.add(tag)
        while self.upto + 1 in self.singles:
            self.upto += 1
            self.singles.discard(self.upto)
        self.last_progress = time.monotonic()
        if self.confirmed >= len(self.bodies):
            self.conn.close()
        elif self.sent < len(self.bodies):
            self._pump()

    def _watchdog(self) -> None:
        if self.conn.is_closed:
            return
        if time.monotonic() - self.last_progress > self.idle_timeout:
            self._fail(TimeoutError(f"pre-fill of {self.queue!r}: no confirm for {self.idle_timeout:.0f} s"))
            return
        self.conn.ioloop.call_later(5, self._watchdog)

"""The Redis work queue: leases, renewals, retries, dead letters and an all-or-nothing pre-fill.

Used by the pre-fill operator and by the ``redis`` mode of the in-Pod worker
(``worker/redis_mode.py``). Items move between the queue's keys only through the Lua scripts of
``queues/redis_lua.py``; the pre-fill streams raw RESP (``queues/envelope.py``'s ``resp_bulk``) so a
million items do not wait on a million replies. redis is imported where used (see ``queues/urls.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Literal

from airflow_batchjob.queues import redis_lua
from airflow_batchjob.queues.envelope import (
    DEAD_ITEMS_SHOWN,
    Envelope,
    fingerprint_quoted,
    marker_matches,
    parse_envelope,
    resp_bulk,
    result_record,
)

if TYPE_CHECKING:
    import redis

STAGING_TTL = 3600  # seconds a crashed Redis pre-fill's staging list may outlive it


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
        self._lease = client.register_script(redis_lua.LEASE)
        self._renew = client.register_script(redis_lua.RENEW)
        self._complete = client.register_script(redis_lua.COMPLETE)
        self._fail = client.register_script(redis_lua.FAIL)
        self._release = client.register_script(redis_lua.RELEASE)
        self._reclaim = client.register_script(redis_lua.RECLAIM)

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
        print_ = fingerprint_quoted(quoted)
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
                if current is not None and marker_matches(current, print_):
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
            bulk = resp_bulk(part, start, quoted[start : start + chunk])
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
        commands = [("MULTI",), ("EVAL", redis_lua.RESET, len(keys), *keys, self.lease_prefix)]
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


def _pool_connection(pool: Any) -> Any:
    """A connection from a redis-py pool: 5.3+ takes no argument (and warns on one), older need one."""
    import redis

    if tuple(int(p) for p in redis.__version__.split(".")[:2]) < (5, 3):
        return pool.get_connection("WATCH")  # the command name; only a cluster pool routes by it
    return pool.get_connection()


def _text(value: Any) -> str:
    """A script's reply as text: the client returns bytes (envelopes must stay exact)."""
    return value.decode() if isinstance(value, bytes) else str(value)

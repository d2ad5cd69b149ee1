"""RedisQueue and the ``redis`` worker mode against the real redis-server, with real worker processes."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from airflow_batchjob import queues
from airflow_batchjob.queues.redis import STAGING_TTL, _pool_connection
from localcluster import cluster as lc

from . import RECORDER, Workers, attempts, recorded, recorder_dir, redis_url, unique, wait_for

pytestmark = pytest.mark.cluster
PROGRAM = ["sh", "-c", RECORDER]


@pytest.fixture
def client(local_cluster: lc.State) -> Iterator[redis.Redis]:
    c = queues.redis_from_url(redis_url(local_cluster))
    yield c
    c.close()


@pytest.fixture
def queue(client: redis.Redis) -> Iterator[queues.RedisQueue]:
    q = queues.RedisQueue(client, unique("test-redis"))
    yield q
    keys = list(client.scan_iter(match=f"{q.name}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def workers(tmp_path: Path, local_cluster: lc.State) -> Iterator[Workers]:
    r = recorder_dir(tmp_path)
    w = Workers(
        tmp_path,
        "redis",
        {"BATCHJOB_REDIS_URL": redis_url(local_cluster), "R": str(r)},
        secrets=[local_cluster.redis_password],
    )
    yield w
    w.cleanup()
    w.assert_no_secret_printed()


def ids(texts: list[str]) -> dict[str, str]:
    return {queues.item_id(i, t): t for i, t in enumerate(texts)}


def assert_each_once(r: Path, texts: list[str]) -> None:
    seen = recorded(r)
    expected = ids(texts)
    assert sorted(seen) == sorted(expected), "items processed: missing or unexpected ids"
    dupes = {expected[k]: len(v) for k, v in seen.items() if len(v) != 1}
    assert not dupes, f"processed more than once: {dupes}"
    assert {k: v[0].decode() for k, v in seen.items()} == expected


def opts(q: queues.RedisQueue, lease: int = 30, attempts: int = 3) -> list[str]:
    return [
        "--queue",
        q.name,
        "--lease-seconds",
        str(lease),
        "--max-attempts",
        str(attempts),
        "--poll-seconds",
        "0.2",
    ]


# -- the queue itself ------------------------------------------------------------------------


def test_prefill_writes_envelopes_and_is_idempotent(queue: queues.RedisQueue, client: redis.Redis) -> None:
    texts = ["apple", "apple", '{"a":1}', 'ünï "q" $(x)\n']
    assert queue.prefill(texts) == 4
    raw = client.lrange(queue.name, 0, -1)
    assert raw == [queues.make_envelope(i, t) for i, t in enumerate(texts)]
    envs = [queues.parse_envelope(x) for x in raw]
    assert [e.item for e in envs] == texts
    assert len({e.id for e in envs}) == 4  # equal items, distinct ids
    # Work happens, then the pre-fill task is retried: the marker says it is done, nothing changes.
    env = queue.lease("w1", 30)
    assert env is not None and queue.complete(env)
    assert queue.prefill(texts) == 4
    assert client.llen(queue.name) == 3 and client.get(queue.done) == b"1"
    # Different items: everything is replaced, counters too.
    assert queue.prefill(["x", "y"]) == 2
    st = queue.stats()
    assert (st["pending"], st["processing"], st["done"], st["dead"], st["prefilled"]) == (2, 0, 0, 0, 2)
    assert not list(client.scan_iter(match=f"{queue.lease_prefix}*"))


def test_prefill_of_many_items_is_exact(queue: queues.RedisQueue, client: redis.Redis) -> None:
    texts = [f"item-{i}" if i % 7 else f"ünïcode-{i}" for i in range(25_000)]
    assert queue.prefill(texts, chunk=3_000) == 25_000
    assert client.llen(queue.name) == 25_000
    raw = client.lrange(queue.name, 0, -1)
    assert raw == queues.encode_envelopes(texts)
    assert raw[7] == queues.make_envelope(7, texts[7])
    assert json.loads(client.get(queue.marker) or b"{}")["count"] == 25_000


def test_prefill_that_dies_after_staging_changes_nothing_visible(
    queue: queues.RedisQueue, client: redis.Redis
) -> None:
    """All or nothing: a pre-fill killed between staging and commit leaves the old queue as it was."""
    queue.prefill(["old-1", "old-2"])
    conn = _pool_connection(client.connection_pool)
    texts = [f"new-{i}" for i in range(5_000)]
    staging = f"{queue.name}:staging:dead0000"
    queue._stage(conn, staging, texts, [json.dumps(t) for t in texts], 1_000)
    conn.disconnect()  # the process dies here: no MULTI/EXEC was ever sent
    client.connection_pool.release(conn)
    assert [queues.parse_envelope(x).item for x in client.lrange(queue.name, 0, -1)] == ["old-1", "old-2"]
    assert client.llen(staging) == 5_000 and 0 < client.ttl(staging) <= STAGING_TTL  # it expires
    # The retried pre-fill replaces the queue at once; the dead staging list is not the queue.
    assert queue.prefill(texts) == 5_000
    assert client.lrange(queue.name, 0, -1) == queues.encode_envelopes(texts)
    assert client.ttl(queue.name) == -1  # the renamed staging list lost its expiry


def test_lease_fail_dead_letter_and_reclaim(queue: queues.RedisQueue, client: redis.Redis) -> None:
    queue.prefill(["a", "b"])
    a = queue.lease("w1", 30)
    assert a is not None and a.item == "a" and a.leased_by == "w1"
    assert client.ttl(queue.lease_key(a.id)) > 0
    assert queue.fail(a, max_attempts=2) == "retry"  # to the tail, behind "b"
    assert [queues.parse_envelope(x).item for x in client.lrange(queue.name, 0, -1)] == ["b", "a"]
    b = queue.lease("w1", 30)
    a = queue.lease("w1", 30)
    assert b is not None and a is not None and a.item == "a"
    assert queue.fail(a, max_attempts=2) == "dead"
    # w1 dies holding b: its lease expires and reclaim puts b back at the front.
    client.delete(queue.lease_key(b.id))
    assert not queue.drained()
    assert queue.reclaim_expired() == 1
    b2 = queue.lease("w2", 30)
    assert b2 is not None and b2.item == "b"
    assert not queue.complete(b)  # w1 came back: w2 holds the item now, w1 must not touch it
    assert queue.renew(b2, "w2", 30) and not queue.renew(b, "w1", 30)
    assert queue.complete(b2)
    assert queue.drained()
    st = queue.stats()
    assert (st["done"], st["dead"], st["dead_items"]) == (1, 1, ["a"])


def test_messages_from_other_producers_are_items(queue: queues.RedisQueue, client: redis.Redis) -> None:
    """A raw message (not an envelope) is the item; Lua and Python agree on its id, so leases work."""
    client.rpush(queue.name, b"plain \xff bytes")
    env = queue.lease("w1", 30)
    assert env is not None and env.item_bytes == b"plain \xff bytes" and env.id.startswith("raw-")
    assert client.get(queue.lease_key(env.id)) == b"w1"
    assert queue.complete(env) and queue.drained()


# -- workers ---------------------------------------------------------------------------------


def test_two_workers_nine_items_each_once(queue: queues.RedisQueue, workers: Workers, tmp_path: Path) -> None:
    texts = [f"item {i} 'x' $(id)" for i in range(9)]
    queue.prefill(texts)
    queue.prefill(texts)  # a retried pre-fill: still each item once
    ws = [workers.start(opts(queue), PROGRAM) for _ in range(2)]
    assert [w.wait() for w in ws] == [0, 0]
    assert_each_once(tmp_path / "rec", texts)
    assert sum(w.result()["processed"] for w in ws) == 9
    st = queue.stats()
    assert (st["pending"], st["processing"], st["done"], st["dead"]) == (0, 0, 9, 0)


def test_thousand_items_four_workers_each_once(
    queue: queues.RedisQueue, workers: Workers, tmp_path: Path
) -> None:
    texts = [f"n{i}" for i in range(1_000)]
    queue.prefill(texts)
    ws = [workers.start(opts(queue), PROGRAM) for _ in range(4)]
    assert [w.wait(timeout=120) for w in ws] == [0, 0, 0, 0]
    assert_each_once(tmp_path / "rec", texts)
    assert sum(w.result()["processed"] for w in ws) == 1_000
    assert queue.stats()["done"] == 1_000


def test_worker_killed_mid_item_item_reclaimed(
    queue: queues.RedisQueue, workers: Workers, tmp_path: Path
) -> None:
    """A Pod dies holding an item; its replacement, started later, takes it once the lease expired."""
    r = tmp_path / "rec"
    texts = ["slow", "a", "b", "c"]
    queue.prefill(texts)
    first = workers.start(opts(queue, lease=2), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the worker to start the slow item")
    first.kill_pod()
    assert first.proc.returncode == -signal.SIGKILL
    assert queue.stats()["processing"] == 1
    replacement = workers.start(opts(queue, lease=2), PROGRAM)
    assert replacement.wait() == 0
    assert_each_once(r, texts)
    assert replacement.result()["reclaimed"] == 1
    assert queue.drained()


def test_worker_waits_for_others_then_reclaims(
    queue: queues.RedisQueue, workers: Workers, tmp_path: Path
) -> None:
    """A worker with nothing left to lease stays while another holds an item, and saves it when that one dies.

    A worker that exited 0 as soon as nothing was pending would be gone by the time the other
    died, and the Job controller starts no new Pod after a success: the item would be lost.
    """
    r = tmp_path / "rec"
    texts = ["slow"] + [f"x{i}" for i in range(6)]
    queue.prefill(texts)
    holder = workers.start(opts(queue, lease=2), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the first worker to start the slow item")
    other = workers.start(opts(queue, lease=2), PROGRAM)
    wait_for(lambda: len(recorded(r)) == 6, what="the other worker to finish the remaining items")
    time.sleep(1.0)
    assert other.proc.poll() is None, "a worker exited while another still held an item"
    assert queue.stats()["pending"] == 0
    holder.kill_pod()
    assert other.wait() == 0
    assert_each_once(r, texts)
    assert other.result()["processed"] == 7
    assert queue.drained()


def test_failing_item_dead_lettered_others_done(
    queue: queues.RedisQueue, workers: Workers, tmp_path: Path
) -> None:
    r = tmp_path / "rec"
    texts = ["a", "bad one", "b", "c", "d"]
    queue.prefill(texts)
    ws = [workers.start(opts(queue, attempts=3), PROGRAM) for _ in range(2)]
    assert [w.wait() for w in ws] == [0, 0]
    bad = queues.item_id(1, "bad one")
    assert attempts(r)[bad] == 3
    seen = recorded(r)
    assert bad not in seen and len(seen) == 4 and all(len(v) == 1 for v in seen.values())
    st = queue.stats()
    assert (st["done"], st["dead"], st["dead_items"], st["pending"], st["processing"]) == (
        4,
        1,
        ["bad one"],
        0,
        0,
    )
    assert sum(w.result()["dead_lettered"] for w in ws) == 1
    assert sum(w.result()["failed"] for w in ws) == 3


def test_sigterm_releases_the_item(queue: queues.RedisQueue, workers: Workers, tmp_path: Path) -> None:
    r = tmp_path / "rec"
    queue.prefill(["only"])
    program = ["sh", "-c", 'touch "$R/started"; exec sleep 300']
    w = workers.start(opts(queue), program)
    wait_for(lambda: (r / "started").exists(), what="the program to start")
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 143
    st = queue.stats()
    assert (st["pending"], st["processing"], st["done"]) == (1, 0, 0)
    assert int(queue.client.hget(queue.attempts, queues.item_id(0, "only")) or 0) == 0  # not an attempt
    assert w.result()["exit_code"] == 143

"""The ``redis`` mode of every worker against the local cluster's real redis-server (plain and TLS)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_batchjob import queues
from airflow_batchjob.core.brokerconn import BrokerConn
from airflow_batchjob.queues.envelope import parse_envelope, result_record
from localcluster import cluster as lc
from tests.brokers import RECORDER, attempts, recorded, recorder_dir, redis_url, unique, wait_for
from tests.brokers.test_tls import connection, mount, refused_urls, secret_values, tls  # noqa: F401

from . import Impl, ImplWorkers

pytestmark = pytest.mark.cluster
PROGRAM = ["sh", "-c", RECORDER]
# Records like RECORDER and returns {"id", "len"} as its result (non-ASCII items: the record's escapes).
WITH_RESULT = [
    "sh",
    "-c",
    RECORDER + 'printf \'{"id": "%s", "n": 1.0}\' "$ITEM_ID" > "$BATCHJOB_RESULT_FILE"\n',
]


@pytest.fixture
def queue(local_cluster: lc.State) -> Iterator[queues.RedisQueue]:
    client = queues.redis_from_url(redis_url(local_cluster))
    q = queues.RedisQueue(client, unique("conf-redis"))
    yield q
    keys = list(client.scan_iter(match=f"{q.name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def workers_for(impl: Impl, tmp: Path, st: lc.State, url: str | None = None) -> ImplWorkers:
    r = recorder_dir(tmp) if not (tmp / "rec").exists() else tmp / "rec"
    env = {"BATCHJOB_REDIS_URL": url or redis_url(st), "R": str(r)}
    return ImplWorkers(impl, tmp, "redis", env, secrets=[st.redis_password])


@pytest.fixture
def workers(worker: Impl, tmp_path: Path, local_cluster: lc.State) -> Iterator[ImplWorkers]:
    w = workers_for(worker, tmp_path, local_cluster)
    yield w
    w.cleanup()
    w.assert_no_secret_printed()


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


def assert_each_once(r: Path, texts: list[str]) -> None:
    seen = recorded(r)
    expected = {queues.item_id(i, t): t for i, t in enumerate(texts)}
    assert sorted(seen) == sorted(expected), "items processed: missing or unexpected ids"
    assert all(len(v) == 1 for v in seen.values()), "an item processed twice"
    assert {k: v[0] for k, v in seen.items()} == {k: t.encode() for k, t in expected.items()}


TEXTS = ["plain", 'it\'s "quoted" $(id)', "ünïcødé ☃ 🚀", "line\nbreak", '{"first-name": "Ada", "n": 3}', ""]


def test_each_item_once_with_results_byte_exact(
    queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    """Two workers drain the queue; every item once; each result record is what the Python
    queue writes (the same JSON bytes), stored with the completion."""
    texts = TEXTS * 3
    queue.prefill(texts)
    ws = [workers.start(opts(queue), WITH_RESULT) for _ in range(2)]
    assert [w.wait(120) for w in ws] == [0, 0], [w.output() for w in ws]
    assert_each_once(tmp_path / "rec", texts)
    st = queue.stats()
    assert (st["pending"], st["processing"], st["done"], st["dead"]) == (0, 0, len(texts), 0)
    stored = queue.client.hgetall(queue.results)
    raws = [queues.encode_envelopes(texts)[i] for i in range(len(texts))]
    expected = {}
    for raw in raws:
        env = parse_envelope(raw)
        expected[env.id.encode()] = result_record(env, {"id": env.id, "n": 1.0}).encode()
    assert stored == expected
    for w in ws:
        s = w.result()
        assert list(s) == [
            "mode",
            "queue",
            "worker",
            "processed",
            "failed",
            "dead_lettered",
            "lost_leases",
            "reclaimed",
            "exit_code",
        ]
        assert (s["mode"], s["queue"], s["exit_code"], s["failed"]) == ("redis", queue.name, 0, 0)
    assert sum(w.result()["processed"] for w in ws) == len(texts)


def test_python_and_go_workers_share_one_queue(
    queue: queues.RedisQueue, both: tuple[Impl, Impl], tmp_path: Path, local_cluster: lc.State
) -> None:
    """Mixed workers on one queue (a rolling upgrade): the same leases, each item once."""
    texts = [f"n{i}" for i in range(40)]
    queue.prefill(texts)
    pools = [workers_for(impl, tmp_path / impl.name, local_cluster) for impl in both]
    r = recorder_dir(tmp_path)  # one record for all four
    try:
        ws = [p.start(opts(queue), PROGRAM, {"R": str(r)}) for p in pools for _ in range(2)]
        assert [w.wait(120) for w in ws] == [0] * 4, [w.output() for w in ws]
    finally:
        for p in pools:
            p.cleanup()
    assert_each_once(r, texts)
    assert sum(w.result()["processed"] for w in ws) == 40


def test_sigkill_mid_item_lease_reclaimed(
    queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    """A Pod dies holding an item (SIGKILL to the worker and its program); its replacement takes
    the item once the lease expired, and counts the lost worker as an attempt."""
    r = tmp_path / "rec"
    texts = ["slow", "a", "b", "c"]
    queue.prefill(texts)
    first = workers.start(opts(queue, lease=3), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the worker to start the slow item")
    first.kill_pod()
    assert queue.stats()["processing"] == 1
    replacement = workers.start(opts(queue, lease=3), PROGRAM)
    assert replacement.wait(120) == 0, replacement.output()
    assert_each_once(r, texts)
    assert replacement.result()["reclaimed"] == 1
    assert int(queue.client.hget(queue.attempts, queues.item_id(0, "slow")) or 0) == 1
    assert queue.drained()


def test_waiting_worker_reclaims_a_dead_workers_item(
    queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    """A worker with nothing to lease stays while another holds an item, then saves it."""
    r = tmp_path / "rec"
    texts = ["slow"] + [f"x{i}" for i in range(4)]
    queue.prefill(texts)
    holder = workers.start(opts(queue, lease=3), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the first worker to start the slow item")
    other = workers.start(opts(queue, lease=3), PROGRAM)
    wait_for(lambda: len(recorded(r)) == 4, what="the other worker to finish the rest")
    assert other.proc.poll() is None, "a worker exited while another still held an item"
    holder.kill_pod()
    assert other.wait(120) == 0
    assert_each_once(r, texts)
    assert other.result()["processed"] == 5


def test_a_slow_item_keeps_its_lease(queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path) -> None:
    """The lease is renewed while the program runs: a second worker never takes the item."""
    queue.prefill(["sleepy"])
    program = ["sh", "-c", 'touch "$R/attempts/$ITEM_ID.$$"; sleep 5']
    first = workers.start(opts(queue, lease=3), program)
    wait_for(lambda: any((tmp_path / "rec" / "attempts").iterdir()), what="the item to start")
    second = workers.start(opts(queue, lease=3), program)
    assert [first.wait(120), second.wait(120)] == [0, 0]
    assert sum(attempts(tmp_path / "rec").values()) == 1
    assert first.result()["processed"] + second.result()["processed"] == 1
    assert "lost" not in first.output() + second.output()


def test_failing_item_dead_lettered(queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path) -> None:
    r = tmp_path / "rec"
    texts = ["a", "bad one", "b"]
    queue.prefill(texts)
    w = workers.start(opts(queue, attempts=2), PROGRAM)
    assert w.wait(120) == 0
    bad = queues.item_id(1, "bad one")
    assert attempts(r)[bad] == 2
    st = queue.stats()
    assert (st["done"], st["dead"], st["dead_items"]) == (2, 1, ["bad one"])
    s = w.result()
    assert (s["processed"], s["failed"], s["dead_lettered"]) == (2, 2, 1)
    out = w.output()
    assert f"batchjob-worker: item {bad} failed (exit 3): requeued" in out
    assert f"batchjob-worker: item {bad} failed (exit 3): dead-lettered after 2 attempts" in out


def test_unusable_result_fails_the_item(queue: queues.RedisQueue, workers: ImplWorkers) -> None:
    queue.prefill(["x"])
    program = ["sh", "-c", 'echo "not json" > "$BATCHJOB_RESULT_FILE"']
    w = workers.start(opts(queue, attempts=1), program)
    assert w.wait(120) == 0
    assert queue.stats()["dead"] == 1 and w.result()["dead_lettered"] == 1
    assert "is not JSON" in w.output() and "(exit 65)" in w.output()


def test_sigterm_releases_the_item(queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path) -> None:
    r = tmp_path / "rec"
    queue.prefill(["only"])
    program = ["sh", "-c", 'touch "$R/started"; exec sleep 300']
    w = workers.start(opts(queue), program)
    wait_for(lambda: (r / "started").exists(), what="the program to start")
    w.proc.send_signal(signal.SIGTERM)  # the worker only, as the kubelet signals PID 1
    assert w.wait(60) == 143
    st = queue.stats()
    assert (st["pending"], st["processing"], st["done"]) == (1, 0, 0)
    assert int(queue.client.hget(queue.attempts, queues.item_id(0, "only")) or 0) == 0
    assert w.result()["exit_code"] == 143
    assert f"batchjob-worker: stopped: item {queues.item_id(0, 'only')} released to the queue" in w.output()


def test_never_prefilled_queue_exits_0(queue: queues.RedisQueue, workers: ImplWorkers) -> None:
    w = workers.start(opts(queue), PROGRAM)
    assert w.wait(60) == 0
    assert (
        f"batchjob-worker: queue '{queue.name}' was never pre-filled (no '{queue.marker}' key)" in w.output()
    )
    assert w.result()["processed"] == 0


def test_program_not_found_takes_nothing(queue: queues.RedisQueue, workers: ImplWorkers) -> None:
    queue.prefill(["x"])
    w = workers.start(opts(queue), ["no-such-program-here"])
    assert w.wait(60) == 127
    assert queue.stats()["pending"] == 1


@pytest.mark.parametrize("case", ["no url", "unreachable", "wrong password"])
def test_broker_setup_errors(worker: Impl, tmp_path: Path, local_cluster: lc.State, case: str) -> None:
    url = {
        "no url": "",
        "unreachable": "redis://:pw@127.0.0.1:9/0",
        "wrong password": redis_url(local_cluster, password="wrong-password"),
    }[case]
    done = worker.run("redis", ["--queue", "q"], ["true"], {"BATCHJOB_REDIS_URL": url}, tmp_path / "s.json")
    err = done.stderr.decode()
    if case == "no url":
        assert done.returncode == 2 and "BATCHJOB_REDIS_URL is not set" in err
    else:
        assert done.returncode == 1 and err.startswith("batchjob-worker: broker error: "), err
        assert "wrong-password" not in err and local_cluster.redis_password not in err


def test_broker_url_is_not_given_to_the_program(
    queue: queues.RedisQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    queue.prefill(["x"])
    out = tmp_path / "env"
    w = workers.start(opts(queue), ["sh", "-c", f"env > {out}"])
    assert w.wait(60) == 0
    env = out.read_text()
    assert "BATCHJOB_REDIS_URL" not in env and "ITEM_ID=" in env and "BATCHJOB_RESULT_FILE=" in env


# -- TLS -------------------------------------------------------------------------------------------


def test_tls_with_the_jobs_secret_files(
    worker: Impl,
    local_cluster: lc.State,
    tls: Path,  # noqa: F811 (the fixture imported from tests/brokers/test_tls.py)
    tmp_path: Path,
) -> None:
    """rediss:// with the CA and client certificate as the Job's Secret mounts them (mode 0440)."""
    conn = BrokerConn.from_connection("redis", "redis_tls", connection("redis"))
    url = mount(conn, tmp_path / "tls")
    name = unique("conf-tls")
    with conn.local_url() as here:
        client = queues.redis_from_url(here)
        q = queues.RedisQueue(client, name)
        q.prefill(["apple", "banana", "cherry"])
        pool = workers_for(worker, tmp_path, local_cluster, url)
        pool.secrets = secret_values(local_cluster)
        try:
            w = pool.start(["--queue", name, "--poll-seconds", "0.2"], PROGRAM)
            assert w.wait(120) == 0, w.output()
            assert q.stats()["done"] == 3
            pool.assert_no_secret_printed()
            for case, bad in refused_urls(tls, local_cluster, "redis").items():
                if case.startswith("accepted"):
                    continue
                q.prefill(["untouched"])
                refused = pool.start(["--queue", name], PROGRAM, {"BATCHJOB_REDIS_URL": bad})
                assert refused.wait(120) == 1, (case, refused.output())
                assert "batchjob-worker: broker error" in refused.output(), case
                assert q.stats()["pending"] == 1, f"{case}: the refused worker took something"
            pool.assert_no_secret_printed()
        finally:
            pool.cleanup()
            keys = list(client.scan_iter(match=f"{name}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def test_result_record_of_an_awkward_value_is_the_same(
    queue: queues.RedisQueue, both: tuple[Impl, Impl], tmp_path: Path, local_cluster: lc.State
) -> None:
    """The stored result record of an awkward value is the same bytes from both workers."""
    value = '{"z": 1, "a": [1.5, 1e16, -0, 1E2, true, null], "s": "é 🚀 \\u2028 </script>", "z": 2}'
    stored = []
    for impl in both:
        q = queues.RedisQueue(queue.client, unique("conf-rec"))
        q.prefill(["ü"])
        pool = workers_for(impl, tmp_path / impl.name, local_cluster)
        try:
            program = ["sh", "-c", f"printf '%s' '{value}' > \"$BATCHJOB_RESULT_FILE\""]
            assert pool.start(opts(q), program).wait(60) == 0
        finally:
            pool.cleanup()
        stored.append(queue.client.hgetall(q.results))
        queue.client.delete(*queue.client.keys(f"{q.name}*"))
    assert stored[0] == stored[1] and len(stored[0]) == 1
    record = json.loads(next(iter(stored[0].values())))
    assert record["result"]["z"] == 2 and list(record["result"]) == ["z", "a", "s"]

"""The ``rabbitmq`` mode (one item per Pod) of every worker against the real rabbitmq-server."""

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
from tests.brokers import RECORDER, Worker, amqp_url, attempts, recorded, recorder_dir, unique, wait_for
from tests.brokers.test_tls import connection, mount, refused_urls, secret_values, tls  # noqa: F401

from . import Impl, ImplWorkers

pytestmark = pytest.mark.cluster
PROGRAM = ["sh", "-c", RECORDER]
WITH_RESULT = [
    "sh",
    "-c",
    RECORDER + 'printf \'{"id": "%s", "n": 1.0}\' "$ITEM_ID" > "$BATCHJOB_RESULT_FILE"\n',
]


@pytest.fixture
def queue(local_cluster: lc.State) -> Iterator[queues.RabbitQueue]:
    q = queues.RabbitQueue(queues.rabbit_params_from_url(amqp_url(local_cluster)), unique("conf-rabbit"))
    yield q
    conn = q.connect()
    ch = conn.channel()
    for name in (q.name, q.dead, q.marker, q.results):
        ch.queue_delete(name)
    conn.close()


def workers_for(impl: Impl, tmp: Path, st: lc.State, url: str | None = None) -> ImplWorkers:
    r = tmp / "rec" if (tmp / "rec").exists() else recorder_dir(tmp)
    env = {"BATCHJOB_AMQP_URL": url or amqp_url(st), "R": str(r)}
    return ImplWorkers(impl, tmp, "rabbitmq", env, secrets=[st.rabbitmq_password])


@pytest.fixture
def workers(worker: Impl, tmp_path: Path, local_cluster: lc.State) -> Iterator[ImplWorkers]:
    w = workers_for(worker, tmp_path, local_cluster)
    yield w
    w.cleanup()
    w.assert_no_secret_printed()


def opts(q: queues.RabbitQueue, max_attempts: int = 3) -> list[str]:
    return ["--queue", q.name, "--max-attempts", str(max_attempts)]


def run_pods(
    workers: ImplWorkers, q: queues.RabbitQueue, n: int, program: list[str] = PROGRAM
) -> list[Worker]:
    """Like the Job controller with parallelism 2: Pods until ``n`` succeeded."""
    done: list[Worker] = []
    running: list[Worker] = []
    ok = 0
    while ok < n:
        while len(running) < min(2, n - ok):
            running.append(workers.start(opts(q), program))
        finished = running.pop(0)
        assert finished.wait(120) == 0, finished.output()
        ok += 1
        done.append(finished)
    for w in running:
        w.wait(120)
        done.append(w)
    return done


TEXTS = ["plain", 'it\'s "quoted" $(id)', "ünïcødé ☃ 🚀", '{"first-name": "Ada"}']


def test_one_item_per_pod_each_once_with_results(
    queue: queues.RabbitQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    queue.prefill(TEXTS)
    pods = run_pods(workers, queue, len(TEXTS), WITH_RESULT)
    seen = recorded(tmp_path / "rec")
    expected = {queues.item_id(i, t): t for i, t in enumerate(TEXTS)}
    assert {k: [b.decode() for b in v] for k, v in seen.items()} == {k: [t] for k, t in expected.items()}
    for p in pods:
        s = p.result()
        assert list(s) == ["mode", "queue", "item_id", "attempt", "exit_code", "outcome"]
        assert (s["mode"], s["queue"], s["attempt"], s["exit_code"], s["outcome"]) == (
            "rabbitmq",
            queue.name,
            1,
            0,
            "acked",
        )
    records = sorted(json.dumps(r, sort_keys=True) for r in queue.read_results())
    envs = [parse_envelope(raw) for raw in queues.encode_envelopes(TEXTS)]
    assert records == sorted(
        json.dumps(json.loads(result_record(e, {"id": e.id, "n": 1.0})), sort_keys=True) for e in envs
    )
    assert queue.stats()["pending"] == 0


def test_empty_queue_exits_zero(queue: queues.RabbitQueue, workers: ImplWorkers) -> None:
    queue.prefill([])
    w = workers.start(opts(queue), PROGRAM)
    assert w.wait(120) == 0
    assert w.result() == {
        "mode": "rabbitmq",
        "queue": queue.name,
        "item_id": None,
        "exit_code": 0,
        "outcome": "empty",
    }


def test_missing_queue_is_a_setup_error(queue: queues.RabbitQueue, workers: ImplWorkers) -> None:
    w = workers.start(opts(queue), PROGRAM)
    assert w.wait(60) == 2
    assert f"batchjob-worker: queue '{queue.name}' does not exist" in w.output()


def test_pod_killed_mid_item_message_redelivered(
    queue: queues.RabbitQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    r = tmp_path / "rec"
    texts = ["slow", "kiwi", "pear"]
    queue.prefill(texts)
    first = workers.start(opts(queue), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the first Pod to start the slow item")
    first.kill_pod()  # SIGKILL, no ack: the broker requeues the message when the connection drops
    pods = run_pods(workers, queue, 3)
    seen = recorded(r)
    assert sorted(seen) == sorted(queues.item_id(i, t) for i, t in enumerate(texts))
    assert all(len(v) == 1 for v in seen.values())
    assert queues.item_id(0, "slow") in [p.result()["item_id"] for p in pods]


def test_failing_program_counts_attempts_then_dead_letters(
    queue: queues.RabbitQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    queue.prefill(["bad apple"])
    codes = [workers.start(opts(queue, max_attempts=3), PROGRAM).wait(120) for _ in range(3)]
    assert codes == [3, 3, 3]
    assert [w.result()["outcome"] for w in workers.started] == ["retry", "retry", "dead"]
    assert [w.result()["attempt"] for w in workers.started] == [1, 2, 3]
    assert attempts(tmp_path / "rec") == {queues.item_id(0, "bad apple"): 3}
    st = queue.stats()
    assert (st["pending"], st["dead"], st["dead_items"]) == (0, 1, ["bad apple"])
    conn = queue.connect()
    ch = conn.channel()
    method, props, body = ch.basic_get(queue.dead, auto_ack=False)
    assert method is not None and props.delivery_mode == 2
    assert props.headers[queues.ATTEMPTS_HEADER] == 3 and props.headers[queues.EXIT_CODE_HEADER] == 3
    assert queues.parse_envelope(body).item == "bad apple"
    conn.close()
    out = workers.started[2].output()
    item = queues.item_id(0, "bad apple")
    assert f"batchjob-worker: item {item} failed (exit 3) 3 times: moved to '{queue.dead}'" in out
    assert workers.start(opts(queue), PROGRAM).wait(120) == 0  # nothing left: the Job can complete


def test_sigterm_releases_the_message(
    queue: queues.RabbitQueue, workers: ImplWorkers, tmp_path: Path
) -> None:
    queue.prefill(["only"])
    w = workers.start(opts(queue), ["sh", "-c", 'touch "$R/started"; exec sleep 300'])
    wait_for(lambda: (tmp_path / "rec" / "started").exists(), what="the program to start")
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait(60) == 143
    assert w.result()["outcome"] == "released"
    assert queue.stats()["pending"] == 1


def test_wrong_password_is_a_broker_error_never_printed(
    worker: Impl, queue: queues.RabbitQueue, tmp_path: Path, local_cluster: lc.State
) -> None:
    queue.prefill(["x"])
    wrong = "wrong-" + local_cluster.rabbitmq_password[::-1]
    done = worker.run(
        "rabbitmq",
        opts(queue),
        ["true"],
        {"BATCHJOB_AMQP_URL": amqp_url(local_cluster, wrong)},
        tmp_path / "s",
    )
    assert done.returncode == 1 and done.stderr.startswith(b"batchjob-worker: broker error: ")
    assert wrong.encode() not in done.stderr + done.stdout
    assert queue.stats()["pending"] == 1


def test_tls_with_the_jobs_secret_files(
    worker: Impl,
    local_cluster: lc.State,
    tls: Path,  # noqa: F811 (the fixture imported from tests/brokers/test_tls.py)
    tmp_path: Path,
) -> None:
    conn = BrokerConn.from_connection("rabbitmq", "rabbitmq_tls", connection("rabbitmq"))
    url = mount(conn, tmp_path / "tls")
    name = unique("conf-rtls")
    with conn.local_url() as here:
        q = queues.RabbitQueue(queues.rabbit_params_from_url(here), name)
        q.prefill(["apple", "banana"])
        pool = workers_for(worker, tmp_path, local_cluster, url)
        pool.secrets = secret_values(local_cluster)
        try:
            assert [pool.start(["--queue", name], PROGRAM).wait(120) for _ in range(2)] == [0, 0]
            assert q.stats()["pending"] == 0
            q.prefill(["untouched"])
            for case, bad in refused_urls(tls, local_cluster, "rabbitmq").items():
                if case.startswith("accepted"):
                    continue
                refused = pool.start(["--queue", name], PROGRAM, {"BATCHJOB_AMQP_URL": bad})
                assert refused.wait(120) == 1, (case, refused.output())
                assert "batchjob-worker: broker error" in refused.output(), case
                assert q.stats()["pending"] == 1, f"{case}: the refused worker took something"
            pool.assert_no_secret_printed()
        finally:
            pool.cleanup()
            c = q.connect()
            ch = c.channel()
            for n in (q.name, q.dead, q.marker, q.results):
                ch.queue_delete(n)
            c.close()

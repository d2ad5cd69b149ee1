"""RabbitQueue and the ``rabbitmq`` worker mode (one item per Pod) against the real rabbitmq-server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from airflow_batchjob import queues
from localcluster import cluster as lc

from . import RECORDER, Worker, Workers, amqp_url, attempts, recorded, recorder_dir, unique, wait_for

pytestmark = pytest.mark.cluster
PROGRAM = ["sh", "-c", RECORDER]
FRUITS = ["apple", "banana", "cherry", "date", "fig", "grape", "lemon", "melon"]


@pytest.fixture
def queue(local_cluster: lc.State) -> Iterator[queues.RabbitQueue]:
    q = queues.RabbitQueue(queues.rabbit_params_from_url(amqp_url(local_cluster)), unique("test-rabbit"))
    yield q
    conn = q.connect()
    ch = conn.channel()
    for name in (q.name, q.dead, q.marker):
        ch.queue_delete(name)
    conn.close()


@pytest.fixture
def workers(tmp_path: Path, local_cluster: lc.State) -> Iterator[Workers]:
    r = recorder_dir(tmp_path)
    w = Workers(
        tmp_path,
        "rabbitmq",
        {"BATCHJOB_AMQP_URL": amqp_url(local_cluster), "R": str(r)},
        secrets=[local_cluster.rabbitmq_password],
    )
    yield w
    w.cleanup()
    w.assert_no_secret_printed()


def opts(q: queues.RabbitQueue, max_attempts: int = 3) -> list[str]:
    return ["--queue", q.name, "--max-attempts", str(max_attempts)]


def run_pods(workers: Workers, q: queues.RabbitQueue, completions: int, parallelism: int) -> list[Worker]:
    """Like the Job controller: keep ``parallelism`` Pods running until ``completions`` succeeded."""
    done: list[Worker] = []
    running: list[Worker] = []
    succeeded = 0
    while succeeded < completions:
        while len(running) < min(parallelism, completions - succeeded):
            running.append(workers.start(opts(q), PROGRAM))
        finished = running.pop(0)
        code = finished.wait()
        assert code == 0, finished.output()
        succeeded += 1
        done.append(finished)
    for w in running:
        w.wait()
        done.append(w)
    return done


def assert_each_once(r: Path, texts: list[str]) -> None:
    seen = recorded(r)
    expected = {queues.item_id(i, t): t for i, t in enumerate(texts)}
    assert sorted(seen) == sorted(expected)
    assert {k: [b.decode() for b in v] for k, v in seen.items()} == {k: [t] for k, t in expected.items()}


def test_eight_fruits_one_pod_each_two_at_a_time(
    queue: queues.RabbitQueue, workers: Workers, tmp_path: Path
) -> None:
    assert queue.prefill(FRUITS) == 8
    assert (queue.stats()["pending"], queue.stats()["prefilled"]) == (8, 8)
    pods = run_pods(workers, queue, completions=8, parallelism=2)
    assert_each_once(tmp_path / "rec", FRUITS)
    assert sorted(p.result()["item_id"] for p in pods) == sorted(
        queues.item_id(i, t) for i, t in enumerate(FRUITS)
    )
    st = queue.stats()
    assert (st["pending"], st["dead"]) == (0, 0)


def test_empty_queue_exits_zero(queue: queues.RabbitQueue, workers: Workers, tmp_path: Path) -> None:
    queue.prefill([])
    w = workers.start(opts(queue), PROGRAM)
    assert w.wait() == 0
    assert w.result() == {
        "mode": "rabbitmq",
        "queue": queue.name,
        "item_id": None,
        "exit_code": 0,
        "outcome": "empty",
    }
    assert recorded(tmp_path / "rec") == {}


def test_missing_queue_is_a_setup_error(queue: queues.RabbitQueue, workers: Workers) -> None:
    w = workers.start(opts(queue), PROGRAM)
    assert w.wait() == 2
    assert "does not exist" in w.output()


def test_pod_killed_mid_item_message_redelivered(
    queue: queues.RabbitQueue, workers: Workers, tmp_path: Path
) -> None:
    r = tmp_path / "rec"
    texts = ["slow", "kiwi", "pear"]
    queue.prefill(texts)
    first = workers.start(opts(queue), PROGRAM)
    wait_for(lambda: (r / "slow.lock" / "pid").exists(), what="the first Pod to start the slow item")
    first.kill_pod()  # no ack was sent: the broker requeues the message when the connection drops
    pods = run_pods(workers, queue, completions=3, parallelism=2)
    assert_each_once(r, texts)
    assert queues.item_id(0, "slow") in [p.result()["item_id"] for p in pods]
    assert queue.stats()["pending"] == 0


def test_failing_program_counts_attempts_then_dead_letters(
    queue: queues.RabbitQueue, workers: Workers, tmp_path: Path
) -> None:
    r = tmp_path / "rec"
    queue.prefill(["bad apple"])
    codes = [workers.start(opts(queue, max_attempts=3), PROGRAM).wait() for _ in range(3)]
    assert codes == [3, 3, 3]  # the program's exit code: the Job's backoff decides
    assert [w.result()["outcome"] for w in workers.started] == ["retry", "retry", "dead"]
    assert [w.result()["attempt"] for w in workers.started] == [1, 2, 3]
    assert attempts(r) == {queues.item_id(0, "bad apple"): 3}
    st = queue.stats()
    assert (st["pending"], st["dead"], st["dead_items"]) == (0, 1, ["bad apple"])
    conn = queue.connect()
    ch = conn.channel()
    method, props, body = ch.basic_get(queue.dead, auto_ack=False)
    assert method is not None and props.delivery_mode == 2
    assert props.headers[queues.ATTEMPTS_HEADER] == 3 and props.headers[queues.EXIT_CODE_HEADER] == 3
    assert queues.parse_envelope(body).item == "bad apple"
    conn.close()
    assert workers.start(opts(queue), PROGRAM).wait() == 0  # nothing left: the Job can complete


def test_prefill_twice_each_item_once(queue: queues.RabbitQueue, workers: Workers, tmp_path: Path) -> None:
    assert queue.prefill(FRUITS[:4]) == 4
    assert queue.prefill(FRUITS[:4]) == 4
    assert queue.stats()["pending"] == 4
    queue.prefill(FRUITS[4:])  # another list replaces the first
    assert queue.stats()["pending"] == 4
    run_pods(workers, queue, completions=4, parallelism=2)
    assert_each_once(tmp_path / "rec", FRUITS[4:])


def test_prefill_after_a_crash_midway_starts_over(queue: queues.RabbitQueue) -> None:
    """A pre-fill that died before writing its marker left a partial queue: the retry purges it."""
    conn = queue.connect()
    ch = conn.channel()
    queues.declare(ch, queue.name)
    for body in queues.encode_envelopes(FRUITS[:3]):  # what the crashed attempt got through
        ch.basic_publish("", queue.name, body, pika.BasicProperties(delivery_mode=2))
    conn.close()
    assert queue.prefill(FRUITS) == 8
    assert queue.stats()["pending"] == 8
    conn = queue.connect()
    ch = conn.channel()
    items = []
    while True:
        method, _props, body = ch.basic_get(queue.name, auto_ack=True)
        if method is None:
            break
        items.append(queues.parse_envelope(body).item)
    conn.close()
    assert items == FRUITS


def test_sigterm_releases_the_message(queue: queues.RabbitQueue, workers: Workers, tmp_path: Path) -> None:
    r = tmp_path / "rec"
    queue.prefill(["only"])
    w = workers.start(opts(queue), ["sh", "-c", 'touch "$R/started"; exec sleep 300'])
    wait_for(lambda: (r / "started").exists(), what="the program to start")
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 143
    assert w.result()["outcome"] == "released"
    assert queue.stats()["pending"] == 1


def test_password_is_never_printed(
    local_cluster: lc.State, queue: queues.RabbitQueue, tmp_path: Path
) -> None:
    queue.prefill(["x"])
    wrong = "wrong-" + local_cluster.rabbitmq_password[::-1]
    bad = Workers(
        tmp_path, "rabbitmq", {"BATCHJOB_AMQP_URL": amqp_url(local_cluster, wrong)}, secrets=[wrong]
    )
    good = Workers(
        tmp_path / "good",
        "rabbitmq",
        {"BATCHJOB_AMQP_URL": amqp_url(local_cluster), "R": str(tmp_path)},
        secrets=[local_cluster.rabbitmq_password],
    )
    (tmp_path / "good").mkdir()
    try:
        refused = bad.start(opts(queue), ["cat"])
        assert refused.wait() == 1
        assert "broker error" in refused.output()
        # The program's environment does not carry the URL either.
        shown = good.start(opts(queue), ["sh", "-c", 'env; echo "URL=${BATCHJOB_AMQP_URL:-}"'])
        assert shown.wait() == 0
        assert "URL=\n" in shown.output()
        bad.assert_no_secret_printed()
        good.assert_no_secret_printed()
    finally:
        bad.cleanup()
        good.cleanup()

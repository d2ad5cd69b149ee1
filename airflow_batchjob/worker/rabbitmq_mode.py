"""``rabbitmq``: one item per Pod (Kubernetes' "coarse parallel processing using a work queue").

The Pod takes one message, runs the program and acknowledges the message only after the
program succeeded, so a Pod that dies mid-item leaves the message to be redelivered. A failure
is counted in the ``x-batchjob-attempts`` header: the message is published again (confirmed)
with the count raised, or to ``<queue>.dead`` at ``--max-attempts``, and only then the original
is acknowledged. A crash between the two leaves both copies: at least once, never lost.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions

from airflow_batchjob.core.results import RESULT_ENV
from airflow_batchjob.queues import (
    ATTEMPTS_HEADER,
    EXIT_CODE_HEADER,
    PERSISTENT,
    RabbitQueue,
    declare,
    parse_envelope,
    rabbit_params_from_url,
    result_record,
)
from airflow_batchjob.worker.run import (
    EXIT_BAD_RESULT,
    EXIT_TERMINATED,
    ProgramStartError,
    Stop,
    item_result,
    log,
    new_result_file,
    program_env,
    run_program,
    write_summary,
)

URL_ENV = "BATCHJOB_AMQP_URL"
EXIT_USAGE = 2
EMPTY_GRACE_SECONDS = 10.0  # how long a Pod that finds the queue empty looks again before it succeeds
EXIT_UNACKED = 75  # EX_TEMPFAIL: processed, but the ack did not reach the broker; it will be redelivered


def run(
    queue: str, max_attempts: int, program: Sequence[str], stop: Stop, termination_log: str | None
) -> int:
    url = os.environ.get(URL_ENV)
    if not url:
        log(f"{URL_ENV} is not set: it holds the amqp:// or amqps:// URL of the broker")
        return EXIT_USAGE
    try:  # an amqps:// URL's CA and client certificate are read here
        params = rabbit_params_from_url(url)
    except (OSError, ssl.SSLError) as e:
        log(f"the TLS files named by {URL_ENV} cannot be used: {type(e).__name__}: {e}")
        return EXIT_USAGE
    rq = RabbitQueue(params, queue)
    conn = rq.connect()
    try:
        return _consume_one(conn, rq, max_attempts, program, stop, termination_log)
    finally:
        if conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                conn.close()


def _consume_one(
    conn: pika.BlockingConnection,
    rq: RabbitQueue,
    max_attempts: int,
    program: Sequence[str],
    stop: Stop,
    termination_log: str | None,
) -> int:
    summary: dict[str, Any] = {"mode": "rabbitmq", "queue": rq.name}
    ch = conn.channel()
    try:
        ch.queue_declare(queue=rq.name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code != 404:
            raise
        log(f"queue {rq.name!r} does not exist: was it pre-filled (QueuePrefillOperator)?")
        return EXIT_USAGE
    ch.confirm_delivery()
    ch.basic_qos(prefetch_count=1)
    if stop.requested:  # stopped before taking anything: nothing to release
        return EXIT_TERMINATED
    method, props, body = ch.basic_get(rq.name, auto_ack=False)
    deadline = time.monotonic() + EMPTY_GRACE_SECONDS
    while method is None and time.monotonic() < deadline and not stop.requested:
        # An item in flight elsewhere (unacknowledged, so invisible) may come back: a worker whose
        # acknowledgement was lost, or whose connection just dropped. Look again for a while.
        conn.process_data_events(time_limit=0.5)
        method, props, body = ch.basic_get(rq.name, auto_ack=False)
    if method is None:
        # Its item was done by a Pod that died after acknowledging: succeed, so the Job completes.
        write_summary(termination_log, {**summary, "item_id": None, "exit_code": 0, "outcome": "empty"})
        return 0
    env = parse_envelope(body)
    headers = dict(props.headers or {})
    attempt = _int(headers.get(ATTEMPTS_HEADER)) + 1
    summary.update(item_id=env.id, attempt=attempt)
    result_file = new_result_file()
    try:
        code = run_program(
            program,
            env.item_bytes,
            program_env(env.item, {"ITEM_ID": env.id, RESULT_ENV: result_file}),
            stop,
            idle=lambda seconds: conn.process_data_events(time_limit=seconds),
        )
    except ProgramStartError as e:
        log(str(e))
        _release(ch, method.delivery_tag)
        write_summary(termination_log, {**summary, "exit_code": e.exit_code, "outcome": "released"})
        return e.exit_code
    finally:
        value, error = item_result(result_file, f"item {env.id}")
    if code == 0 and error is not None:  # an unusable result fails the item like an exit code
        log(error)
        code = EXIT_BAD_RESULT
    if code == 0:
        try:
            if value is not None:  # confirmed before the ack: a done item never lacks its result
                declare(ch, rq.results)
                props = pika.BasicProperties(delivery_mode=PERSISTENT, content_type="application/json")
                ch.basic_publish("", rq.results, result_record(env, value).encode(), props, mandatory=True)
            ch.basic_ack(method.delivery_tag)
        except pika.exceptions.AMQPError as e:
            log(f"item {env.id} processed, but its ack failed ({type(e).__name__}); it will be redelivered")
            write_summary(termination_log, {**summary, "exit_code": EXIT_UNACKED, "outcome": "unacked"})
            return EXIT_UNACKED
        write_summary(termination_log, {**summary, "exit_code": 0, "outcome": "acked"})
        return 0
    if stop.requested:
        _release(ch, method.delivery_tag)
        log(f"stopped: item {env.id} released to the queue")
        write_summary(termination_log, {**summary, "exit_code": EXIT_TERMINATED, "outcome": "released"})
        return EXIT_TERMINATED
    headers[ATTEMPTS_HEADER] = attempt
    headers[EXIT_CODE_HEADER] = code
    dead = attempt >= max_attempts
    target = rq.dead if dead else rq.name
    if dead:
        declare(ch, rq.dead)
    out = pika.BasicProperties(
        delivery_mode=PERSISTENT, content_type=props.content_type or "application/json", headers=headers
    )
    ch.basic_publish("", target, body, out, mandatory=True)  # waits for the broker's confirm
    ch.basic_ack(method.delivery_tag)
    outcome = "dead" if dead else "retry"
    if dead:
        log(f"item {env.id} failed (exit {code}) {attempt} times: moved to {rq.dead!r}")
    else:
        log(f"item {env.id} failed (exit {code}), attempt {attempt} of {max_attempts}: requeued")
    write_summary(termination_log, {**summary, "exit_code": code, "outcome": outcome})
    return code


def _release(ch: Any, delivery_tag: int) -> None:
    """Give the message back (nack, requeue); with the connection gone the broker does it anyway."""
    with contextlib.suppress(pika.exceptions.AMQPError):
        ch.basic_nack(delivery_tag, requeue=True)


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0

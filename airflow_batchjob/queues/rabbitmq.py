"""The RabbitMQ work queue: a durable queue of envelopes, its dead letters, results and pre-fill.

Used by the pre-fill operator and by the ``rabbitmq`` mode of the in-Pod worker
(``worker/rabbitmq_mode.py``), which counts failed attempts in :data:`ATTEMPTS_HEADER`. The
pre-fill publishes through :class:`_ConfirmedPublisher`, which keeps many messages unconfirmed at
once. pika is imported where used (see ``queues/urls.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_batchjob.queues.envelope import (
    DEAD_ITEMS_SHOWN,
    encode_envelopes,
    fingerprint,
    marker_matches,
    parse_envelope,
)

if TYPE_CHECKING:
    import pika

# Headers of a failed item's message as the worker publishes it again: attempts so far, last exit code.
ATTEMPTS_HEADER = "x-batchjob-attempts"
EXIT_CODE_HEADER = "x-batchjob-exit-code"
QUEUE_ARGUMENTS = {"x-queue-type": "classic"}
PERSISTENT = 2  # pika's delivery_mode: the broker keeps the message on disk


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

        # When the broker drops a connection between the TCP connect and pika's first look at the
        # socket, pika (1.3) raises a bare ValueError ("Expected connected socket ...") that its
        # own connection_attempts do not retry: seen in CI under load (a pre-fill task failed its
        # try). It is retried here the way pika retries its other connect errors.
        attempts = max(1, int(self.params.connection_attempts or 1))
        for attempt in range(1, attempts + 1):
            try:
                return pika.BlockingConnection(self.params)
            except ValueError as e:
                if "Expected connected socket" not in str(e) or attempt == attempts:
                    raise
                time.sleep(float(self.params.retry_delay or 1))
        raise AssertionError("unreachable")

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
        return marker_matches(body, print_)

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
    """Close the connection if it is still open; an error closing it changes nothing for the caller."""
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

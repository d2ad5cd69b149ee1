"""Broker side of the queue patterns: Redis and RabbitMQ queues of work items, without Airflow.

Used by the pre-fill operator (in an Airflow worker) and by the in-Pod worker (no Airflow there),
so this package imports only the standard library, ``redis`` and ``pika`` (each where used: a
RabbitMQ worker need not load redis, nor a Redis one pika).

- ``envelope``: the message format (envelopes, item ids, the pre-fill fingerprint);
- ``urls``: broker URLs (and their TLS options) to clients, and their redaction for messages;
- ``redis`` and ``redis_lua``: the Redis queue with leases, and the Lua scripts that move its items;
- ``rabbitmq``: the RabbitMQ queue and its confirmed pre-fill publisher.

Delivery is at least once: an item whose worker died after finishing it but before saying so is
processed again. The names below are the package's API; the modules' other names are theirs.
"""

from __future__ import annotations

from airflow_batchjob.queues.envelope import (
    Envelope,
    encode_envelopes,
    fingerprint,
    item_id,
    make_envelope,
    parse_envelope,
    result_record,
)
from airflow_batchjob.queues.rabbitmq import (
    ATTEMPTS_HEADER,
    EXIT_CODE_HEADER,
    PERSISTENT,
    RabbitQueue,
    declare,
)
from airflow_batchjob.queues.redis import RedisQueue
from airflow_batchjob.queues.urls import rabbit_params_from_url, redact_url, redis_from_url

__all__ = [
    "ATTEMPTS_HEADER",
    "EXIT_CODE_HEADER",
    "PERSISTENT",
    "Envelope",
    "RabbitQueue",
    "RedisQueue",
    "declare",
    "encode_envelopes",
    "fingerprint",
    "item_id",
    "make_envelope",
    "parse_envelope",
    "rabbit_params_from_url",
    "redact_url",
    "redis_from_url",
    "result_record",
]

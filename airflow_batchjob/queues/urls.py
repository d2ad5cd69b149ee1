"""Broker URLs to clients: a Redis client or pika's parameters from a URL, TLS included.

``core/brokerconn.py`` writes these URLs from an Airflow connection (the operator puts them in the
Pods' environment); here they are read back on either side, without Airflow. redis and pika are
imported where used: a RabbitMQ worker need not load redis, nor a Redis one pika.
"""

from __future__ import annotations

import ast
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pika
    import redis


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


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages: credentials are never printed."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # as written: port, IPv6 brackets
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))

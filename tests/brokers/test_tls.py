"""Both brokers over TLS, for real: the local cluster's redis-server and rabbitmq-server listen a
second time with TLS and require a client certificate of their CA (``localcluster/brokers.py``).

Pre-fill goes through ``QueuePrefillOperator`` and the ``redis_tls`` / ``rabbitmq_tls`` connections
(certificate files as paths, or their PEM text inline); workers get what a Pod gets: the Secret's
files in a directory (mode 0440) and the Secret's URL naming them. A client without the client
certificate, with one of another CA, or trusting another CA is refused.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
import pytest
import redis

from airflow_batchjob import queues
from airflow_batchjob.core.brokerconn import BrokerConn
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.queue import QueuePrefillOperator
from localcluster import brokers, certs
from localcluster import cluster as lc

from . import RECORDER, Workers, recorded, recorder_dir, unique

pytestmark = pytest.mark.cluster
PROGRAM = ["sh", "-c", RECORDER]
FRUITS = ["apple", "banana", "cherry", "date", "fig", "grape"]
CONN_ID = {"redis": "redis_tls", "rabbitmq": "rabbitmq_tls"}


@pytest.fixture(scope="module")
def tls(local_cluster: lc.State, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's broker PKI, plus another CA and a client certificate it signed (for refusals)."""
    if not brokers.has_tls(local_cluster):
        pytest.fail(f"the cluster in {local_cluster.dir} predates the brokers' TLS listeners: restart it")
    d = tmp_path_factory.mktemp("other-pki")
    certs.make_ca(d, "someone-else")
    certs.issue(d, "client", "stranger", "extendedKeyUsage=clientAuth\n")
    return d


def connection(broker: str, inline: bool = False) -> SimpleNamespace:
    """The exported TLS connection (``AIRFLOW_CONN_*_TLS``); ``inline``: its files as PEM text."""
    doc = json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID[broker].upper()}"])
    extra = dict(doc.get("extra") or {})
    if inline:
        extra.update({k: Path(v).read_text() for k, v in extra.items() if k.endswith(("_certs", "file"))})
    return SimpleNamespace(**{"login": None, "schema": None, **doc, "extra_dejson": extra})


def secret_values(local_cluster: lc.State) -> list[str]:
    """What must never be printed: the passwords and the body of the client's private key."""
    key = (Path(local_cluster.dir) / "broker-tls" / "client.key").read_text().splitlines()
    return [local_cluster.redis_password, local_cluster.rabbitmq_password, key[1], key[-2]]


def mount(conn: BrokerConn, d: Path) -> str:
    """What the Pod gets: the Secret's PEM files in ``d`` (mode 0440, as mounted) and its URL."""
    d.mkdir()
    data = conn.secret_data(str(d))
    for name, text in data.items():
        if name != "url":
            (d / name).write_text(text)
            (d / name).chmod(0o440)
    return data["url"]


@pytest.fixture
def cleanup(local_cluster: lc.State) -> Iterator[list[str]]:
    """Queue names to delete afterwards, through the plain listeners."""
    names: list[str] = []
    yield names
    client = redis.Redis.from_url(
        f"redis://:{local_cluster.redis_password}@127.0.0.1:{local_cluster.ports['redis']}/0"
    )
    for name in names:
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()
    url = f"amqp://{local_cluster.rabbitmq_user}:{local_cluster.rabbitmq_password}@127.0.0.1:{local_cluster.ports['rabbitmq']}/%2F"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for name in names:
        for q in (name, f"{name}.dead", f"{name}.prefill", f"{name}.results"):
            ch.queue_delete(q)
    conn.close()


def prefill(broker: str, name: str, items: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    """Pre-fill through the operator and its TLS connection; what it printed (its log goes to stdout)."""
    op = QueuePrefillOperator(
        task_id="prefill", broker=broker, items=items, queue_name=name, conn_id=CONN_ID[broker]
    )  # type: ignore[arg-type]
    assert op.execute({})["count"] == len(items)  # type: ignore[arg-type]
    printed = "".join(capfd.readouterr())
    assert f"queue {name} on {broker}" in printed and "over TLS" in printed, "the log was captured"
    return printed


@pytest.mark.parametrize("inline", [False, True], ids=["files", "inline-pem"])
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_prefill_and_consume_over_tls(
    local_cluster: lc.State,
    tls: Path,
    tmp_path: Path,
    cleanup: list[str],
    capfd: pytest.CaptureFixture[str],
    broker: str,
    inline: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = connection(broker, inline)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID[broker].upper()}",
        json.dumps({k: v for k, v in vars(doc).items() if k != "extra_dejson"} | {"extra": doc.extra_dejson}),
    )
    name = unique(f"tls-{broker}")
    cleanup.append(name)
    printed = prefill(broker, name, FRUITS, capfd)
    conn = BrokerConn.from_connection(broker, CONN_ID[broker], doc)  # type: ignore[arg-type]
    url = mount(conn, tmp_path / "tls")
    assert url.startswith("rediss://" if broker == "redis" else "amqps://") and "BEGIN" not in url
    r = recorder_dir(tmp_path)
    env_name = "BATCHJOB_REDIS_URL" if broker == "redis" else "BATCHJOB_AMQP_URL"
    workers = Workers(tmp_path, broker, {env_name: url, "R": str(r)}, secrets=secret_values(local_cluster))
    try:
        if broker == "redis":
            opts = ["--queue", name, "--poll-seconds", "0.2"]
            codes = [w.wait(120) for w in [workers.start(opts, PROGRAM) for _ in range(2)]]
        else:  # one Pod per item
            codes = [workers.start(["--queue", name], PROGRAM).wait(120) for _ in FRUITS]
    finally:
        workers.cleanup()
    assert codes == [0] * len(codes), [w.output() for w in workers.started]
    seen = recorded(r)
    assert sorted(v[0].decode() for v in seen.values()) == sorted(FRUITS) and all(
        len(v) == 1 for v in seen.values()
    )
    with conn.local_url() as here:
        q = (
            queues.RedisQueue(queues.redis_from_url(here), name)
            if broker == "redis"
            else queues.RabbitQueue(queues.rabbit_params_from_url(here), name)
        )
        stats = q.stats()
    assert stats["pending"] == 0 and stats["dead"] == 0 and stats.get("done", len(FRUITS)) == len(FRUITS)
    workers.assert_no_secret_printed()
    printed += "".join(capfd.readouterr())
    for secret in secret_values(local_cluster):
        assert secret not in printed, "a credential in the operator's log output"


def refused_urls(tls: Path, local_cluster: lc.State, broker: str) -> dict[str, str]:
    """URLs that must not get in: no client certificate, another CA's client certificate, and a
    client that trusts another CA (so it refuses the server)."""
    conn = BrokerConn.from_connection(broker, CONN_ID[broker], connection(broker))  # type: ignore[arg-type]
    mine = dict(conn.paths)
    return {
        "no client certificate": conn.url({"ssl_ca_certs": mine["ssl_ca_certs"]}),
        "client certificate of another CA": conn.url(
            {**mine, "ssl_certfile": str(tls / "client.crt"), "ssl_keyfile": str(tls / "client.key")}
        ),
        "trusting another CA": conn.url({**mine, "ssl_ca_certs": str(tls / "ca.crt")}),
        "accepted (the control)": conn.url(mine),
    }


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_clients_without_the_right_certificates_are_refused(
    local_cluster: lc.State,
    tls: Path,
    tmp_path: Path,
    cleanup: list[str],
    broker: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    name = unique(f"tls-refused-{broker}")
    cleanup.append(name)
    prefill(broker, name, ["only"], capfd)
    outcomes: dict[str, Any] = {}
    for case, url in refused_urls(tls, local_cluster, broker).items():
        try:
            if broker == "redis":
                client = queues.redis_from_url(url)
                outcomes[case] = client.llen(name)
                client.close()
            else:
                conn = pika.BlockingConnection(queues.rabbit_params_from_url(url))
                outcomes[case] = conn.channel().queue_declare(name, passive=True).method.message_count
                conn.close()
        # pika raises the client's own verification failure as it is (ssl.SSLCertVerificationError)
        except (redis.exceptions.ConnectionError, pika.exceptions.AMQPConnectionError, ssl.SSLError):
            outcomes[case] = "refused"
    assert outcomes == {
        "no client certificate": "refused",
        "client certificate of another CA": "refused",
        "trusting another CA": "refused",
        "accepted (the control)": 1,
    }


@pytest.mark.parametrize("case", ["no client certificate", "trusting another CA"])
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_worker_without_the_right_certificates_takes_nothing(
    local_cluster: lc.State,
    tls: Path,
    tmp_path: Path,
    cleanup: list[str],
    broker: str,
    case: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    name = unique(f"tls-nocert-{broker}")
    cleanup.append(name)
    prefill(broker, name, ["untouched"], capfd)
    url = refused_urls(tls, local_cluster, broker)[case]
    env_name = "BATCHJOB_REDIS_URL" if broker == "redis" else "BATCHJOB_AMQP_URL"
    workers = Workers(
        tmp_path,
        broker,
        {env_name: url, "R": str(recorder_dir(tmp_path))},
        secrets=secret_values(local_cluster),
    )
    try:
        w = workers.start(["--queue", name], PROGRAM)
        assert w.wait(120) == 1, w.output()
        assert "broker error" in w.output()
    finally:
        workers.cleanup()
    workers.assert_no_secret_printed()
    conn = BrokerConn.from_connection(broker, CONN_ID[broker], connection(broker))  # type: ignore[arg-type]
    with conn.local_url() as here:
        q = (
            queues.RedisQueue(queues.redis_from_url(here), name)
            if broker == "redis"
            else queues.RabbitQueue(queues.rabbit_params_from_url(here), name)
        )
        assert q.stats()["pending"] == 1, "the refused worker took nothing"


def test_missing_certificate_file_fails_before_the_queue_exists(
    local_cluster: lc.State, tls: Path, cleanup: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(os.environ["AIRFLOW_CONN_REDIS_TLS"])
    doc["extra"]["ssl_certfile"] = "/nonexistent/client.crt"
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_BADTLS", json.dumps(doc))
    name = unique("tls-bad")
    cleanup.append(name)
    op = QueuePrefillOperator(
        task_id="p", broker="redis", items=["x"], queue_name=name, conn_id="redis_badtls"
    )
    with pytest.raises(
        InvalidJobTemplateError, match=r"extra ssl_certfile: /nonexistent/client\.crt is not a file"
    ):
        op.execute({})  # type: ignore[arg-type]
    client = redis.Redis.from_url(
        f"redis://:{local_cluster.redis_password}@127.0.0.1:{local_cluster.ports['redis']}/0"
    )
    assert not client.exists(name) and not client.exists(f"{name}:prefill")
    client.close()

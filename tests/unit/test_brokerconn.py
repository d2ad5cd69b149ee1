"""Broker connections with and without TLS (``core/brokerconn.py``), no broker needed.

Certificates are real (``openssl``, ``localcluster/certs.py``): a connection whose files cannot work
is refused here, with a message naming the extra and what to do, before anything is created.
The brokers themselves are in ``tests/brokers/test_tls.py``.
"""

from __future__ import annotations

import os
import ssl
import stat
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_batchjob import queues
from airflow_batchjob.core.brokerconn import TLS_FILE_MODE, BrokerConfigError, BrokerConn
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.queue import QueueJobOperator
from localcluster import certs

PASSWORD = "s3cret/p@ss"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    certs.make_ca(d, "test-ca")
    certs.issue(d, "client", "client", "extendedKeyUsage=clientAuth\n")
    certs.make_ca(d, "other-ca", name="other")
    certs.issue(d, "stranger", "stranger", "extendedKeyUsage=clientAuth\n", ca="other")
    return d


def conn(conn_type: str = "redis", **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(
        conn_type=conn_type,
        host="broker.example",
        port=None,
        login="user",
        password=PASSWORD,
        schema="jobs",
        extra_dejson=extra,
    )


def tls_extra(pki: Path, **more: Any) -> dict[str, Any]:
    return {
        "ssl": True,
        "ssl_ca_certs": str(pki / "ca.crt"),
        "ssl_certfile": str(pki / "client.crt"),
        "ssl_keyfile": str(pki / "client.key"),
        **more,
    }


def test_plain_urls_are_unchanged() -> None:
    r = BrokerConn.from_connection("redis", "r", conn(db=3))
    assert r.url() == "redis://user:s3cret%2Fp%40ss@broker.example:6379/3" and not r.tls
    a = BrokerConn.from_connection("rabbitmq", "a", conn("amqp"))
    assert a.url() == "amqp://user:s3cret%2Fp%40ss@broker.example:5672/jobs"
    assert a.secret_data() == {"url": a.url()} and a.pod_volume("s") is None


def test_redis_tls_urls_secret_and_volume(pki: Path) -> None:
    c = BrokerConn.from_connection("redis", "r", conn(**tls_extra(pki), db=2))
    here = urllib.parse.urlsplit(c.url(c.paths))
    assert here.scheme == "rediss" and here.port == 6379 and here.path == "/2"
    q = dict(urllib.parse.parse_qsl(here.query))
    assert q == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": "true",  # checked unless the extras say otherwise
        "ssl_ca_certs": str(pki / "ca.crt"),
        "ssl_certfile": str(pki / "client.crt"),
        "ssl_keyfile": str(pki / "client.key"),
    }
    pod = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(c.pod_url("/tls")).query))
    assert (pod["ssl_ca_certs"], pod["ssl_certfile"], pod["ssl_keyfile"]) == (
        "/tls/ca.crt",
        "/tls/tls.crt",
        "/tls/tls.key",
    )
    data = c.secret_data("/tls")
    assert (
        data["ca.crt"] == (pki / "ca.crt").read_text() and data["tls.key"] == (pki / "client.key").read_text()
    )
    assert "BEGIN" not in data["url"]
    volume, mount = c.pod_volume("job-broker", "/tls") or ({}, {})
    assert volume["secret"]["defaultMode"] == TLS_FILE_MODE == 0o440
    assert {i["key"] for i in volume["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}, "never the url"
    assert mount == {"name": volume["name"], "mountPath": "/tls", "readOnly": True}


def test_rabbitmq_tls_by_extra_or_conn_type(pki: Path) -> None:
    by_extra = BrokerConn.from_connection("rabbitmq", "a", conn("amqp", **tls_extra(pki)))
    extra = tls_extra(pki)
    del extra["ssl"]
    by_type = BrokerConn.from_connection("rabbitmq", "a", conn("amqps", **extra))
    assert by_extra == by_type and by_extra.port == 5671
    url = by_extra.url(by_extra.paths)
    assert url.startswith("amqps://user:s3cret%2Fp%40ss@broker.example:5671/jobs?ssl_options=")
    params = queues.rabbit_params_from_url(url)
    assert params.ssl_options is not None
    ctx = params.ssl_options.context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(BrokerConfigError, match="type amqps but extra ssl=false"):
        BrokerConn.from_connection("rabbitmq", "a", conn("amqps", ssl=False))


def test_hostname_check_and_verification_can_be_relaxed(pki: Path) -> None:
    c = BrokerConn.from_connection(
        "rabbitmq", "a", conn("amqp", **tls_extra(pki, ssl_check_hostname="false"))
    )
    ctx = queues.rabbit_params_from_url(c.url(c.paths)).ssl_options.context  # type: ignore[union-attr]
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    none = BrokerConn.from_connection("rabbitmq", "a", conn("amqps", ssl_cert_reqs="none"))
    ctx = queues.rabbit_params_from_url(none.url()).ssl_options.context  # type: ignore[union-attr]
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_NONE
    r = BrokerConn.from_connection("redis", "r", conn(**tls_extra(pki, ssl_check_hostname=False)))
    client = queues.redis_from_url(r.url(r.paths))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_check_hostname"] is False and kwargs["ssl_certfile"] == str(pki / "client.crt")


def test_inline_pem_goes_to_private_temporary_files(pki: Path) -> None:
    extra = {name: Path(path).read_text() for name, path in tls_extra(pki).items() if name != "ssl"}
    c = BrokerConn.from_connection("redis", "r", conn(ssl="true", **extra))
    assert c.paths == {} and set(c.pem) == {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile"}
    with c.local_files() as files:
        for path in files.values():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(files["ssl_keyfile"])).st_mode) == 0o700
        assert Path(files["ssl_keyfile"]).read_text() == (pki / "client.key").read_text()
    assert not any(os.path.exists(p) for p in files.values()), "removed after use"
    assert "BEGIN" not in c.pod_url() and "BEGIN" not in repr(c) and PASSWORD not in repr(c)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ssl_ca_certs": "/nonexistent/ca.pem"}, "extra ssl_ca_certs: /nonexistent/ca.pem is not a file"),
        ({"ssl_cert_reqs": "require"}, "ssl_cert_reqs='require': use one of required, optional, none"),
        ({"ssl": "maybe"}, "extra ssl='maybe': use true or false"),
        ({"ssl_certfile": None, "ssl_keyfile": "KEY"}, "ssl_keyfile without ssl_certfile"),
        ({"ssl_keyfile": None}, "ssl_certfile holds no private key and ssl_keyfile is not set"),
        ({"ssl_keyfile": "STRANGER_KEY"}, "the key does not belong to the certificate"),
        ({"ssl_ca_certs": "CLIENT_KEY"}, "extra ssl_ca_certs .*no PEM certificate"),
        ({"ssl_cert_reqs": "none", "ssl_check_hostname": True}, "set ssl_cert_reqs to required"),
        ({"db": "two"}, "extra db='two': use a number"),
    ],
)
def test_bad_combinations_say_what_to_fix(pki: Path, extra: dict[str, Any], message: str) -> None:
    values = {"KEY": str(pki / "client.key"), "STRANGER_KEY": str(pki / "stranger.key")}
    values["CLIENT_KEY"] = values["KEY"]
    merged = {k: values.get(v, v) if isinstance(v, str) else v for k, v in tls_extra(pki, **extra).items()}
    merged = {k: v for k, v in merged.items() if v is not None}
    with pytest.raises(BrokerConfigError, match=message) as e:
        BrokerConn.from_connection("redis", "redis_tls", conn(**merged))
    assert "'redis_tls'" in str(e.value) and PASSWORD not in str(e.value)
    assert "PRIVATE KEY-----\n" not in str(e.value)


def test_files_without_tls_are_refused(pki: Path) -> None:
    extra = tls_extra(pki)
    del extra["ssl"]
    with pytest.raises(BrokerConfigError, match='TLS is off: add "ssl": true'):
        BrokerConn.from_connection("redis", "r", conn(**extra))


def test_job_mounts_only_the_pem_read_only(pki: Path) -> None:
    c = BrokerConn.from_connection("redis", "r", conn(**tls_extra(pki)))
    op = QueueJobOperator(task_id="t", mode="variable", queue_name="q", image="worker", cmds=["true"])
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    body = op.build({"ti": ti}, "ns", broker=c)  # type: ignore[arg-type]
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret = op.secret_name(body["metadata"]["name"])
    assert [v["secret"]["secretName"] for v in pod["volumes"]] == [secret]
    assert container["volumeMounts"] == [
        {"name": "batchjob-broker-tls", "mountPath": "/etc/batchjob/broker-tls", "readOnly": True}
    ]
    assert "BEGIN" not in str(body) and PASSWORD not in str(body)
    clash = {"volume_mounts": [{"name": "mine", "mountPath": "/etc/batchjob/broker-tls"}]}
    clash["volumes"] = [{"name": "mine", "emptyDir": {}}]  # type: ignore[list-item]
    op2 = QueueJobOperator(task_id="t", mode="variable", queue_name="q", image="w", cmds=["true"], **clash)
    with pytest.raises(InvalidJobTemplateError, match="pass another broker_tls_mount_path"):
        op2.build({"ti": ti}, "ns", broker=c)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobTemplateError, match="absolute directory path"):
        QueueJobOperator(task_id="t", mode="variable", queue_name="q", broker_tls_mount_path="tls")

"""The local cluster's brokers: ``redis-server`` and ``rabbitmq-server``, each listening in plain
text and with TLS (client certificates required), and the Airflow connections that reach them.

``up`` (``cluster.py``) calls :func:`make_tls` (a CA, a server certificate for every address the
brokers bind, a client certificate; ``openssl``, in ``<dir>/broker-tls``), then :func:`start_redis`
and :func:`start_rabbitmq`. :func:`connections` gives ``redis_default`` / ``rabbitmq_default``
(plain) and ``redis_tls`` / ``rabbitmq_tls`` (TLS, the client certificate as file paths).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcluster import certs, launch

if TYPE_CHECKING:
    from localcluster.state import State

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
PORTS = ("redis", "redis_tls", "rabbitmq", "rabbitmq_tls", "rabbitmq_dist", "epmd")
CA_NAME = "batchjob-broker-ca"


def broker_addresses(st: State) -> list[str]:
    """Where the brokers listen: loopback, and with a real node also the Pods' bridge address."""
    if st.node == "real":
        from localcluster import realnode

        return ["127.0.0.1", realnode.NODE_IP]
    return ["127.0.0.1"]


def tls_dir(st: State) -> Path:
    return Path(st.dir) / "broker-tls"


def has_tls(st: State) -> bool:
    """Whether this cluster's brokers listen with TLS (a cluster started before they did does not)."""
    return "redis_tls" in st.ports and (tls_dir(st) / "client.crt").exists()


# -- certificates ----------------------------------------------------------------------------


def make_tls(st: State) -> None:
    """The brokers' CA, a server certificate naming every address they bind, a client certificate."""
    d = tls_dir(st)
    certs.make_ca(d, CA_NAME)
    sans = ",".join([*(f"IP:{a}" for a in broker_addresses(st)), "DNS:localhost"])
    certs.issue(d, "server", "batchjob-broker", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    certs.issue(d, "client", "batchjob-client", "extendedKeyUsage=clientAuth\n")


# -- the servers -----------------------------------------------------------------------------


def _spawn(st: State, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    launch.spawn(st, name, cmd, env)


def start_redis(st: State) -> None:
    d = Path(st.dir) / "redis"
    d.mkdir()
    tls = tls_dir(st)
    conf = d / "redis.conf"
    conf.write_text(
        f"bind {' '.join(broker_addresses(st))}\nport {st.ports['redis']}\nrequirepass {st.redis_password}\n"
        f'dir {d}\nappendonly yes\nappendfsync everysec\nsave ""\ndaemonize no\n'
        'protected-mode yes\nlogfile ""\n'
        # The same server on a second port with TLS; a client without a certificate of the CA is refused.
        f"tls-port {st.ports['redis_tls']}\ntls-cert-file {tls / 'server.crt'}\n"
        f"tls-key-file {tls / 'server.key'}\ntls-ca-cert-file {tls / 'ca.crt'}\ntls-auth-clients yes\n"
    )
    conf.chmod(0o600)
    _spawn(st, "redis", [shutil.which("redis-server") or "redis-server", str(conf)])


def start_rabbitmq(st: State) -> None:
    d = Path(st.dir) / "rabbitmq"
    d.mkdir()
    tls = tls_dir(st)
    conf = d / "rabbitmq.conf"
    plain, tls_port = st.ports["rabbitmq"], st.ports["rabbitmq_tls"]
    listeners = "".join(
        f"listeners.tcp.{i} = {a}:{plain}\nlisteners.ssl.{i} = {a}:{tls_port}\n"
        for i, a in enumerate(broker_addresses(st), 1)
    )
    conf.write_text(
        listeners + f"default_user = {st.rabbitmq_user}\ndefault_pass = {st.rabbitmq_password}\n"
        "loopback_users = none\nlog.console = true\nlog.console.level = warning\nlog.file = false\n"
        f"ssl_options.cacertfile = {tls / 'ca.crt'}\nssl_options.certfile = {tls / 'server.crt'}\n"
        f"ssl_options.keyfile = {tls / 'server.key'}\nssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
    )
    conf.chmod(0o600)
    (d / "enabled_plugins").write_text("[].\n")
    env = {
        "HOME": str(d),
        "RABBITMQ_NODENAME": f"batchjob{st.ports['rabbitmq']}@localhost",
        "RABBITMQ_DIST_PORT": str(st.ports["rabbitmq_dist"]),
        "ERL_EPMD_PORT": str(st.ports["epmd"]),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        # Erlang distribution (rabbitmqctl's way in) on loopback too, not on every interface.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
        "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
        "RABBITMQ_LOG_BASE": str(d / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
        "RABBITMQ_USE_LONGNAME": "false",
    }
    (d / "env.json").write_text(json.dumps(env))
    # The Debian wrapper in /usr/sbin switches to the rabbitmq user; run the real script as ourselves.
    _spawn(st, "rabbitmq", [RABBITMQ_SERVER], env=env)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def redis_ping(st: State) -> bool:
    with socket.create_connection(("127.0.0.1", st.ports["redis"]), timeout=1) as s:
        s.sendall(f"AUTH {st.redis_password}\r\nPING\r\n".encode())
        time.sleep(0.05)
        return b"+PONG" in s.recv(100)


def rabbitmq_ready(st: State) -> bool:
    """Both listeners accept connections (the TLS one is absent on a cluster made before it existed)."""
    return all(_port_open(st.ports[p]) for p in ("rabbitmq", "rabbitmq_tls") if p in st.ports)


# -- Airflow connections ---------------------------------------------------------------------


def connections(st: State) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` of the brokers: plain (``*_DEFAULT``) and, where they listen, TLS (``*_TLS``)."""
    host = broker_addresses(st)[-1]  # the address Pods reach (the bridge's, on a real node)
    redis: dict[str, Any] = {
        "conn_type": "redis",
        "host": host,
        "port": st.ports["redis"],
        "password": st.redis_password,
        "extra": {"db": 0},
    }
    rabbit: dict[str, Any] = {
        "conn_type": "amqp",
        "host": host,
        "port": st.ports["rabbitmq"],
        "login": st.rabbitmq_user,
        "password": st.rabbitmq_password,
        "schema": "/",
    }
    out = {
        "AIRFLOW_CONN_REDIS_DEFAULT": json.dumps(redis),
        "AIRFLOW_CONN_RABBITMQ_DEFAULT": json.dumps(rabbit),
    }
    if not has_tls(st):
        return out
    d = tls_dir(st)
    tls = {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": str(d / "ca.crt"),
        "ssl_certfile": str(d / "client.crt"),
        "ssl_keyfile": str(d / "client.key"),
    }
    redis_tls = {**redis, "port": st.ports["redis_tls"], "extra": {"db": 0, **tls}}
    rabbit_tls = {**rabbit, "port": st.ports["rabbitmq_tls"], "extra": tls}
    out["AIRFLOW_CONN_REDIS_TLS"] = json.dumps(redis_tls)
    out["AIRFLOW_CONN_RABBITMQ_TLS"] = json.dumps(rabbit_tls)
    return out

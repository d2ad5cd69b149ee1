"""Broker connections: an Airflow connection's fields and extras, as URLs for here and for Pods.

Pure (no Airflow, no broker client): the operators hand in the connection; the in-Pod worker
uses :func:`client_ssl_context` to read the TLS options of an ``amqps://`` URL.

TLS extras follow the Airflow Redis provider's names, for both brokers: ``ssl`` (true),
``ssl_cert_reqs`` (required, optional, none), ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_check_hostname``; a RabbitMQ connection of type ``amqps`` is TLS too. The three file extras
take a path on the Airflow worker or the PEM text itself. Pods get the PEM through the Job's
Secret, mounted at :data:`TLS_MOUNT_PATH`, and a URL naming those files; the PEM is never part of
a URL, an env value or a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

Broker = Literal["rabbitmq", "redis"]
TLS_MOUNT_PATH = "/etc/batchjob/broker-tls"
TLS_FILE_MODE = 0o440  # read-only; group-readable so a non-root Pod reads them through its fsGroup
TLS_VOLUME = "batchjob-broker-tls"
# Extra -> its key in the Secret and its file name in the Pod (the kubernetes.io/tls names).
TLS_FILES = {"ssl_ca_certs": "ca.crt", "ssl_certfile": "tls.crt", "ssl_keyfile": "tls.key"}
CERT_REQS = ("required", "optional", "none")
_VERIFY = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


# The RabbitMQ connection form (Airflow's field behaviour): provider info and the hooks share it.
RABBITMQ_FORM: dict[str, Any] = {
    "hidden_fields": [],
    "relabeling": {"schema": "Virtual host", "login": "User"},
    "placeholders": {
        "port": "5672 (5671 with TLS)",
        "schema": "/",
        "extra": '{"ssl": true, "ssl_ca_certs": "/etc/ssl/broker/ca.crt"}',
    },
}


class BrokerConfigError(ValueError):
    """A broker connection that cannot work; the message names the connection and what to fix."""


def _flag(conn_id: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in _TRUE:
        return True
    if str(value).strip().lower() in _FALSE:
        return False
    raise BrokerConfigError(f"connection {conn_id!r}: extra {name}={value!r}: use true or false")


def _pem(conn_id: str, name: str, value: Any) -> tuple[str, str | None]:
    """The PEM text of a file extra and the path it came from (None: given inline)."""
    if not isinstance(value, str) or not value.strip():
        raise BrokerConfigError(
            f"connection {conn_id!r}: extra {name} is empty: give a file path or PEM text"
        )
    where = f"connection {conn_id!r}: extra {name}"
    if value.lstrip().startswith("-----BEGIN"):
        text, path = value.strip() + "\n", None
    else:
        path = os.path.expanduser(value.strip())
        if not os.path.isfile(path):
            raise BrokerConfigError(
                f"{where}: {path} is not a file on this Airflow worker; give a path that exists here "
                "or the PEM text itself (starting with -----BEGIN)"
            )
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise BrokerConfigError(f"{where}: cannot read {path}: {type(e).__name__}") from None
        where += f" ({path})"
    wanted = "PRIVATE KEY-----" if name == "ssl_keyfile" else "-----BEGIN CERTIFICATE-----"
    if wanted not in text:
        what = "private key" if name == "ssl_keyfile" else "certificate"
        raise BrokerConfigError(f"{where}: no PEM {what} in it ({wanted.strip('-')} block)")
    if "ENCRYPTED" in text and name != "ssl_ca_certs":
        raise BrokerConfigError(f"{where}: the private key is encrypted; give an unencrypted key")
    return text, path


def client_ssl_context(
    ca_certs: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    cert_reqs: str = "required",
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context: the CA file (else the system's CAs), the client certificate, the checks."""
    ctx = ssl.create_default_context(cafile=ca_certs)
    ctx.check_hostname = bool(check_hostname) and cert_reqs != "none"
    ctx.verify_mode = _VERIFY[cert_reqs]
    if certfile:
        ctx.load_cert_chain(certfile, keyfile or None)
    return ctx


@dataclasses.dataclass(frozen=True)
class BrokerConn:
    """One broker connection, checked: where it is, who logs in, and its TLS material."""

    broker: Broker
    conn_id: str
    host: str
    port: int
    login: str = ""
    password: str = dataclasses.field(default="", repr=False)  # never in a message
    vhost: str = "/"  # RabbitMQ
    db: int = 0  # Redis
    tls: bool = False
    cert_reqs: str = "required"
    check_hostname: bool = True
    # File extra -> its PEM text, and -> its path on this worker (for those given as paths).
    pem: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    paths: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_connection(cls, broker: Broker, conn_id: str, conn: Any) -> BrokerConn:
        """From an Airflow connection (``host``, ``port``, ``login``, ``password``, ``schema``,
        ``conn_type``, ``extra_dejson``); :class:`BrokerConfigError` says what to fix."""
        extra = dict(getattr(conn, "extra_dejson", None) or {})
        conn_type = str(getattr(conn, "conn_type", "") or "").lower()
        tls = _flag(conn_id, "ssl", extra.get("ssl", False))
        if broker == "rabbitmq" and conn_type == "amqps":
            if "ssl" in extra and not tls:
                raise BrokerConfigError(
                    f"connection {conn_id!r}: type amqps but extra ssl=false: drop one of them"
                )
            tls = True
        files = [name for name in TLS_FILES if extra.get(name) not in (None, "")]
        if not tls:
            if files:
                raise BrokerConfigError(
                    f"connection {conn_id!r}: extras {', '.join(files)} are set but TLS is off: "
                    'add "ssl": true to the extras'
                    + (" (or use conn type amqps)" if broker == "rabbitmq" else "")
                )
            return cls._plain(broker, conn_id, conn, extra)
        cert_reqs = str(extra.get("ssl_cert_reqs") or "required").strip().lower()
        if cert_reqs not in CERT_REQS:
            raise BrokerConfigError(
                f"connection {conn_id!r}: extra ssl_cert_reqs={extra['ssl_cert_reqs']!r}: "
                f"use one of {', '.join(CERT_REQS)}"
            )
        if "ssl_check_hostname" in extra:
            check = _flag(conn_id, "ssl_check_hostname", extra["ssl_check_hostname"])
            if check and cert_reqs == "none":
                raise BrokerConfigError(
                    f"connection {conn_id!r}: ssl_check_hostname=true needs the server's certificate "
                    "checked: set ssl_cert_reqs to required, or ssl_check_hostname to false"
                )
        else:
            check = cert_reqs != "none"
        if "ssl_keyfile" in files and "ssl_certfile" not in files:
            raise BrokerConfigError(
                f"connection {conn_id!r}: extra ssl_keyfile without ssl_certfile: add the client certificate"
            )
        pem: dict[str, str] = {}
        paths: dict[str, str] = {}
        for name in files:
            pem[name], path = _pem(conn_id, name, extra[name])
            if path is not None:
                paths[name] = path
        if (
            "ssl_certfile" in pem
            and "ssl_keyfile" not in pem
            and "PRIVATE KEY-----" not in pem["ssl_certfile"]
        ):
            raise BrokerConfigError(
                f"connection {conn_id!r}: extra ssl_certfile holds no private key and ssl_keyfile is "
                "not set: add ssl_keyfile"
            )
        plain = cls._plain(broker, conn_id, conn, extra, tls=True)
        out = dataclasses.replace(plain, cert_reqs=cert_reqs, check_hostname=check, pem=pem, paths=paths)
        out._check_material()
        return out

    @classmethod
    def _plain(
        cls, broker: Broker, conn_id: str, conn: Any, extra: Mapping[str, Any], tls: bool = False
    ) -> BrokerConn:
        host = str(getattr(conn, "host", None) or "localhost")
        default_port = (5671 if tls else 5672) if broker == "rabbitmq" else 6379
        port = int(getattr(conn, "port", None) or default_port)
        db_text = extra.get("db", 0)
        try:
            db = int(db_text if db_text not in (None, "") else 0)
        except (TypeError, ValueError):
            raise BrokerConfigError(f"connection {conn_id!r}: extra db={db_text!r}: use a number") from None
        if db < 0:
            raise BrokerConfigError(f"connection {conn_id!r}: extra db={db}: must be >= 0")
        return cls(
            broker=broker,
            conn_id=conn_id,
            host=host,
            port=port,
            login=str(getattr(conn, "login", None) or ""),
            password=str(getattr(conn, "password", None) or ""),
            vhost=str(getattr(conn, "schema", None) or "/"),
            db=db,
            tls=tls,
        )

    def _check_material(self) -> None:
        """Load the CA and the client key pair once, so a mismatch fails here, not in a Pod."""
        with self.local_files() as files:
            try:
                client_ssl_context(
                    files.get("ssl_ca_certs"),
                    files.get("ssl_certfile"),
                    files.get("ssl_keyfile"),
                    self.cert_reqs,
                    self.check_hostname,
                )
            except ssl.SSLError as e:
                what = "ssl_certfile / ssl_keyfile" if "ssl_certfile" in files else "ssl_ca_certs"
                reason = (
                    "the key does not belong to the certificate"
                    if "KEY_VALUES_MISMATCH" in str(e)
                    else e.reason
                )
                raise BrokerConfigError(f"connection {self.conn_id!r}: extras {what}: {reason}") from None

    # -- URLs ------------------------------------------------------------------------------

    def url(self, files: Mapping[str, str] | None = None) -> str:
        """The broker URL, credentials included; ``files``: file extra -> where its PEM lies."""
        files = files or {}
        user = urllib.parse.quote(self.login, safe="")
        password = urllib.parse.quote(self.password, safe="")
        auth = f"{user}:{password}@" if (user or password) else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.broker == "rabbitmq":
            vhost = urllib.parse.quote(self.vhost, safe="")
            base = f"{'amqps' if self.tls else 'amqp'}://{auth}{host}:{self.port}/{vhost}"
            if not self.tls:
                return base
            # pika's own ssl_options names; it ignores cert_reqs and check_hostname, which
            # queues.rabbit_params_from_url applies (pika cannot turn either off from a URL).
            opts: dict[str, Any] = {
                key: files[name]
                for name, key in (
                    ("ssl_ca_certs", "ca_certs"),
                    ("ssl_certfile", "certfile"),
                    ("ssl_keyfile", "keyfile"),
                )
                if name in files
            }
            opts.update(cert_reqs=self.cert_reqs, check_hostname=self.check_hostname)
            return f"{base}?{urllib.parse.urlencode({'ssl_options': repr(opts)})}"
        base = f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}"
        if not self.tls:
            return base
        query = {"ssl_cert_reqs": self.cert_reqs, "ssl_check_hostname": str(self.check_hostname).lower()}
        query.update({name: files[name] for name in TLS_FILES if name in files})
        return f"{base}?{urllib.parse.urlencode(query)}"

    def pod_url(self, mount_path: str = TLS_MOUNT_PATH) -> str:
        """The URL for Pods: the TLS files where the Secret volume puts them."""
        return self.url({name: f"{mount_path.rstrip('/')}/{TLS_FILES[name]}" for name in self.pem})

    def secret_data(self, mount_path: str = TLS_MOUNT_PATH) -> dict[str, str]:
        """What the Job's Secret holds: ``url`` and each PEM under its file name."""
        return {"url": self.pod_url(mount_path), **{TLS_FILES[name]: text for name, text in self.pem.items()}}

    def pod_volume(
        self, secret_name: str, mount_path: str = TLS_MOUNT_PATH
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The Secret volume (the PEM keys, never ``url``) and its read-only mount; None without files."""
        if not self.pem:
            return None
        items = [{"key": TLS_FILES[name], "path": TLS_FILES[name]} for name in TLS_FILES if name in self.pem]
        volume = {
            "name": TLS_VOLUME,
            "secret": {"secretName": secret_name, "items": items, "defaultMode": TLS_FILE_MODE},
        }
        return volume, {"name": TLS_VOLUME, "mountPath": mount_path, "readOnly": True}

    @contextlib.contextmanager
    def local_files(self) -> Iterator[dict[str, str]]:
        """File extra -> a path on this machine: the given path, or the inline PEM in a private
        temporary file (mode 600, removed on exit: client libraries read certificates from files)."""
        files = dict(self.paths)
        inline = [name for name in self.pem if name not in files]
        if not inline:
            yield files
            return
        tmp = tempfile.mkdtemp(prefix="batchjob-tls-")  # mode 700
        try:
            for name in inline:
                path = os.path.join(tmp, TLS_FILES[name])
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(self.pem[name])
                files[name] = path
            yield files
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def local_url(self) -> Iterator[str]:
        """The URL for this machine (the Airflow worker), valid inside the ``with`` block."""
        with self.local_files() as files:
            yield self.url(files)

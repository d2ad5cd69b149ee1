"""A fault-injecting HTTPS reverse proxy in front of the real kube-apiserver, for fault tests.

Everything is forwarded to the apiserver unchanged (credentials included, watch streams passed
through chunk by chunk), except requests matching a :class:`Rule`: those get an error answer
(429 with ``Retry-After``, 500, 503, ...; status 0 drops the connection unanswered) instead,
``times`` times. With ``after_forward`` the
request first reaches the apiserver and only its answer is replaced: the write happened but the
client never hears of it, as when a connection drops after the apiserver committed.
``hold()`` black-holes everything (a network partition): connections stay open and nothing is
answered, new requests wait unsent and open watch streams deliver nothing; ``restore()`` lets
all of it through again, as packets flow once a partition heals.

TLS uses a certificate of the cluster's own CA (the apiserver's, whose names cover 127.0.0.1), so
a kubeconfig for the proxy differs from the apiserver's only in its port. Runs in a thread of the
test process::

    proxy = FaultProxy(state).start()
    proxy.add(Rule("POST", r"/apis/batch/v1/namespaces/[^/]+/jobs$", status=429, times=3))
    ...
    proxy.stop()
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localcluster.cluster import State

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
_REASONS = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}


@dataclass
class Rule:
    """Answer ``times`` requests matching ``method`` and ``path`` (a regex; ``query`` too) with ``status``."""

    method: str
    path: str
    status: int = 503
    times: int = 1
    query: str | None = None
    retry_after: int | None = None
    after_forward: bool = False
    used: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        return (
            self.used < self.times
            and method == self.method
            and re.search(self.path, path) is not None
            and (self.query is None or re.search(self.query, query) is not None)
        )


@dataclass
class Seen:
    method: str
    path: str
    query: str
    status: int
    injected: bool


@dataclass
class FaultProxy:
    state: State
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Set while traffic flows; cleared by hold(). Waited on before forwarding and per chunk.
    _flowing: threading.Event = field(default_factory=threading.Event)
    held: int = 0  # requests that arrived while held

    def hold(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def requests(
        self, method: str, path: str, injected: bool | None = None, query: str | None = None
    ) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if s.method == method
                and re.search(path, s.path)
                and (injected is None or s.injected == injected)
                and (query is None or re.search(query, s.query) is not None)
            ]

    def _take(self, method: str, path: str, query: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, query):
                    rule.used += 1
                    return rule
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def start(self) -> FaultProxy:
        self._flowing.set()
        pki = Path(self.state.dir) / "pki"
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
        upstream_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        upstream_port = self.state.ports["apiserver"]
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not proxy._flowing.is_set():
                    with proxy._lock:
                        proxy.held += 1
                    proxy._flowing.wait()
                rule = proxy._take(self.command, path, query)
                if rule is not None and not rule.after_forward:
                    self._inject(rule, path, query)
                    return
                up = http.client.HTTPSConnection(
                    "127.0.0.1", upstream_port, context=upstream_ctx, timeout=600
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    up.request(self.command, self.path, body=body, headers=headers)
                    resp = up.getresponse()
                    if rule is not None:  # the apiserver acted; its answer is lost
                        resp.read()
                        self._inject(rule, path, query)
                        return
                    proxy._record(Seen(self.command, path, query, resp.status, False))
                    proxy._flowing.wait()  # an answer that comes while held waits too
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_HEADERS:
                            self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    while True:
                        chunk = resp.read1(65536)
                        if not chunk:
                            break
                        proxy._flowing.wait()  # held: the stream goes silent, the connection stays
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (OSError, http.client.HTTPException):
                    self.close_connection = True
                finally:
                    up.close()

            def _inject(self, rule: Rule, path: str, query: str) -> None:
                proxy._record(Seen(self.command, path, query, rule.status, True))
                if rule.status == 0:  # the connection drops: no answer at all
                    self.close_connection = True
                    return
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"fault injected by the test proxy ({rule.status})",
                    "reason": _REASONS.get(rule.status, "InternalError"),
                    "code": rule.status,
                }
                data = json.dumps(status).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if rule.retry_after is not None:
                    self.send_header("Retry-After", str(rule.retry_after))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, addr = super().get_request()
                return server_ctx.wrap_socket(sock, server_side=True), addr

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._flowing.set()  # let held handler threads finish
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

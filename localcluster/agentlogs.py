"""The node agent's log endpoint: ``/containerLogs/<ns>/<pod>/<container>`` as the kubelet serves it.

The apiserver proxies ``kubectl logs`` (and the provider's Pod log reads) here; the agent's
container output is already in CRI records (``crilog``), so this only selects and follows them.
"""

from __future__ import annotations

import http.server
import logging
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcluster import crilog

if TYPE_CHECKING:
    from localcluster.nodeagent import NodeAgent

log = logging.getLogger("nodeagent")


class LogHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``/containerLogs/<ns>/<pod>/<container>`` as the kubelet does, for the apiserver."""

    agent: NodeAgent
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if url.path in ("/healthz", "/readyz", "/livez"):
            return self.reply(200, b"ok")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self.reply(404, b"not found")
        _, ns, pod, container = parts
        found = self.agent.find_log(ns, pod, container, previous=q.get("previous") == "true")
        if found is None:
            return self.reply(404, f"no logs for {ns}/{pod}/{container}".encode())
        path, runner = found
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        query = crilog.Query(q)
        data = crilog.complete_prefix(path.read_bytes())
        out = query.render(data)
        if query.limit is not None:
            out = out[: query.limit]
        self.wfile.write(out)
        if q.get("follow") == "true" and query.limit is None:
            offset = len(data)
            while (
                runner is not None
                and runner.is_alive()
                and not self.agent.container_finished(runner, container)
            ):
                time.sleep(0.2)
                offset = self.copy_from(path, offset, query)
            c = (
                next((c for c in runner.inits + runner.containers if c.name == container), None)
                if runner
                else None
            )
            if c is not None and c.copier is not None:
                c.copier.join(timeout=5)
            self.copy_from(path, offset, query)

    def copy_from(self, path: Path, offset: int, query: crilog.Query) -> int:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = crilog.complete_prefix(f.read())
        out = query.render(chunk, tail=False)
        if out:
            self.wfile.write(out)
            self.wfile.flush()
        return offset + len(chunk)

    def reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

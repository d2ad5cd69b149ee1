"""A read-only OCI registry on loopback, serving the images built here (``images.py``).

The real node's containerd resolves every registry to it (``hosts.toml`` ``_default``), so a pull
is a real pull over the distribution API (the kubelet always pulls ``:latest`` images), an
image not built here is a real 404 (ErrImagePull), and nothing leaves the machine.

Served: ``GET /v2/``; ``GET|HEAD /v2/<name>/manifests/<tag|digest>`` (the registry host comes
from containerd's ``?ns=`` query); ``GET|HEAD /v2/<name>/blobs/<digest>``. The store is a
directory of blobs by digest plus ``refs.json`` (full image name -> manifest digest), filled from
the OCI archives by ``add_archive``.
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def add_archive(store: Path, archive: Path) -> None:
    """Copy an OCI archive's blobs into the store (once each) and record its image names."""
    blobs = store / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    refs_file = store / "refs.json"
    refs = json.loads(refs_file.read_text()) if refs_file.exists() else {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.startswith("blobs/sha256/") and member.isfile():
                target = blobs / ("sha256:" + member.name.rsplit("/", 1)[1])
                if not target.exists():
                    data = tar.extractfile(member)
                    assert data is not None
                    tmp = target.with_suffix(".part")
                    tmp.write_bytes(data.read())
                    tmp.rename(target)
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        for manifest in json.load(index_file)["manifests"]:
            name = (manifest.get("annotations") or {}).get("io.containerd.image.name")
            if name:
                refs[name] = manifest["digest"]
    refs_file.write_text(json.dumps(refs, indent=1, sort_keys=True))


class _Handler(BaseHTTPRequestHandler):
    store: Path

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self.send_response(code)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _unknown(self, what: str, head: bool) -> None:
        body = json.dumps({"errors": [{"code": what, "message": f"{self.path}: not built here"}]}).encode()
        self._send(404, body, {"Content-Type": "application/json"}, head)

    def _serve(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path, ns = url.path, dict(urllib.parse.parse_qsl(url.query)).get("ns", "docker.io")
        if path in ("/v2", "/v2/"):
            self._send(200, b"{}", {"Content-Type": "application/json"}, head)
            return
        if m := _MANIFEST.match(path):
            ref = m["ref"]
            if ref.startswith("sha256:"):
                digest = ref
            else:
                refs = json.loads((self.store / "refs.json").read_text())
                digest = refs.get(f"{ns}/{m['name']}:{ref}", "")
            blob = self.store / "blobs" / digest
            if not digest or not blob.is_file():
                self._unknown("MANIFEST_UNKNOWN", head)
                return
            headers = {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": digest}
            self._send(200, blob.read_bytes(), headers, head)
            return
        if m := _BLOB.match(path):
            blob = self.store / "blobs" / m["digest"]
            if not blob.is_file():
                self._unknown("BLOB_UNKNOWN", head)
                return
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": m["digest"]}
            self._send(200, blob.read_bytes(), headers, head)
            return
        self._unknown("NAME_UNKNOWN", head)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m localcluster.registry")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    handler = type("Handler", (_Handler,), {"store": a.store})
    ThreadingHTTPServer(("127.0.0.1", a.port), handler).serve_forever()


if __name__ == "__main__":
    main()

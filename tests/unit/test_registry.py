"""The local OCI registry and archive writer: an image written by images.py is served back intact."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from localcluster import images, registry


@pytest.fixture
def served(tmp_path: Path) -> str:
    image = images.Image(
        names=["docker.io/library/tiny:latest"], layers=[images.layer({"hello": b"hi"})], cmd=["x"]
    )
    archive = tmp_path / "tiny.tar"
    images.write_oci_archive(image, archive)
    registry.add_archive(tmp_path / "store", archive)
    handler = type("H", (registry._Handler,), {"store": tmp_path / "store"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_manifest_and_blobs_resolve_by_name_and_digest(served: str) -> None:
    with urllib.request.urlopen(f"{served}/v2/library/tiny/manifests/latest?ns=docker.io") as r:
        body, digest = r.read(), r.headers["Docker-Content-Digest"]
        assert r.headers["Content-Type"] == registry.MANIFEST_TYPE
    assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
    manifest = json.loads(body)
    for desc in [manifest["config"], *manifest["layers"]]:
        with urllib.request.urlopen(f"{served}/v2/library/tiny/blobs/{desc['digest']}") as r:
            blob = r.read()
        assert len(blob) == desc["size"] and "sha256:" + hashlib.sha256(blob).hexdigest() == desc["digest"]


@pytest.mark.parametrize(
    "path", ["/v2/library/other/manifests/latest?ns=docker.io", "/v2/library/tiny/manifests/2"]
)
def test_an_image_not_built_here_is_a_404(served: str, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(served + path)
    assert err.value.code == 404


def test_worker_image_requirements_follow_the_image_python() -> None:
    """Markers are read for the image's Python, not this one: Debian 12's 3.11.2 needs async-timeout."""
    old = images.requirements_for(["redis"], "3.11.2")
    new = images.requirements_for(["redis"], "3.12.0")
    assert any(r.startswith("async-timeout") for r in old), old
    assert not any(r.startswith("async-timeout") for r in new), new
    assert old[0].startswith("redis==")


def test_rootfs_python_version_is_read_from_dpkg(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: python3\nVersion: 3.11.2-1+b1\n\n"
        "Package: python3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u8\n"
    )
    assert images.rootfs_python_version(tmp_path) == "3.11.2"

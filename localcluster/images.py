"""Container images built here without Docker or a registry, as OCI archives for containerd.

An image is a list of layers (tar archives of a root filesystem) and a config (entrypoint, env).
``write_oci_archive`` writes the OCI image layout as one tar that ``ctr images import`` reads; the
name containerd gives it comes from the ``io.containerd.image.name`` annotation. Layers are
written deterministically (sorted, owner root, mtime 0), so the same input gives the same digest
and a warm cache skips the import.

- ``busybox:1.36`` (also ``busybox``, ``busybox:latest``): Debian's ``busybox-static`` binary and
  a link per applet, as the example DAGs and tests name it.
- ``localcluster.local/pause:1``: the sandbox image, our ``pause`` binary (``build_node.sh``).
- ``ghcr.io/airflow-batchjob/worker:0.1.0`` (also ``worker``): what ``docker/worker.Dockerfile``
  makes, built without Docker: a Debian 12 root filesystem with its Python 3.11 (debootstrap from
  the Debian mirror), pika and redis (pip, ``--target``), and this repository's package, with
  ``python -m airflow_batchjob.worker`` as the entrypoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAUSE_IMAGE = "localcluster.local/pause:1"
WORKER_NAMES = ("ghcr.io/airflow-batchjob/worker:0.1.0", "docker.io/library/worker:latest")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ROOT = Path(__file__).resolve().parent.parent
BUSYBOX_NAMES = ("docker.io/library/busybox:1.36", "docker.io/library/busybox:latest")


@dataclass
class Image:
    names: Sequence[str]
    layers: list[bytes]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    workdir: str = "/"


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer(files: dict[str, bytes | str], modes: dict[str, int] | None = None) -> bytes:
    """A layer tar: path -> bytes (a file) or str (a symlink target); parent directories added."""
    modes = modes or {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    _add(tar, info)
            value = files[path]
            info = tarfile.TarInfo(path)
            if isinstance(value, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, value, 0o777
                _add(tar, info)
            else:
                info.size, info.mode = len(value), modes.get(path, 0o755)
                _add(tar, info, value)
    return buf.getvalue()


def layer_from_dir(root: Path) -> bytes:
    """A layer tar of a directory tree (a root filesystem), deterministic."""
    buf = io.BytesIO()
    paths: list[Path] = []
    for top, dirs, files in os.walk(root):  # never into symlinked directories (/bin -> usr/bin)
        paths += [Path(top) / n for n in (*dirs, *files)]
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(paths):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            if info is None:  # a socket: not part of an image
                continue
            if info.isfile():
                with path.open("rb") as fh:
                    _add(tar, info, fh.read())
            else:
                _add(tar, info)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def write_oci_archive(image: Image, out: Path) -> str:
    """Write ``image`` as an OCI image-layout tar at ``out``; returns the manifest digest."""
    blobs: dict[str, bytes] = {}
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data in image.layers]
    layers = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(blobs, data)} for data in image.layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": image.env,
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd,
            "WorkingDir": image.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(blobs, json.dumps(config, sort_keys=True).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }
    manifest_desc = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }
            for name in image.names
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        entries: dict[str, bytes] = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index, sort_keys=True).encode(),
        }
        for digest, data in blobs.items():
            entries["blobs/sha256/" + digest.split(":", 1)[1]] = data
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size = len(entries[name])
            _add(tar, info, entries[name])
    return str(manifest_desc["digest"])


def busybox_binary(cache: Path) -> Path:
    """Debian's static busybox, from the ``busybox-static`` package (downloaded once)."""
    target = cache / "busybox-static" / "bin" / "busybox"
    if not target.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["apt-get", "download", "busybox-static"], cwd=tmp, check=True, capture_output=True
            )
            (deb,) = Path(tmp).glob("busybox-static_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "busybox-static")], check=True)
    return target


def busybox_image(cache: Path) -> Image:
    binary = busybox_binary(cache)
    applets = subprocess.run(
        [str(binary), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    files: dict[str, bytes | str] = {"bin/busybox": binary.read_bytes()}
    for applet in applets:
        if applet != "busybox":
            files[f"bin/{applet}"] = "busybox"
    files["tmp/.keep"] = b""
    return Image(names=BUSYBOX_NAMES, layers=[layer(files)], cmd=["sh"])


def pause_image(node_bin: Path) -> Image:
    return Image(
        names=[PAUSE_IMAGE],
        layers=[layer({"pause": (node_bin / "pause").read_bytes()})],
        entrypoint=["/pause"],
    )


def debian_rootfs(cache: Path) -> Path:
    """A Debian 12 minbase root filesystem with python3 (debootstrap, once; cached)."""
    target = cache / "rootfs-bookworm-python3"
    if not (target / ".complete").exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(target), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
        )
        for cached in ("var/cache/apt/archives", "var/lib/apt/lists"):
            subprocess.run(["find", str(target / cached), "-type", "f", "-delete"], check=False)
        (target / ".complete").write_text("")
    return target


def rootfs_python_version(rootfs: Path) -> str:
    """The Python version (``3.11.2``) the root filesystem's Debian ``python3.X-minimal`` package has."""
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text()
    for stanza in status.split("\n\n"):
        if re.search(r"^Package: python3\.\d+-minimal$", stanza, re.M):
            m = re.search(r"^Version: (\d+\.\d+\.\d+)", stanza, re.M)
            if m:
                return m[1]
    raise RuntimeError(f"no python3.X-minimal package in {rootfs}")


def requirements_for(names: list[str], python: str) -> list[str]:
    """``names`` pinned to this environment's versions, plus the dependencies their markers give
    on ``python`` (pip evaluates markers on the Python it runs on: redis needs async-timeout
    below 3.11.3, which Debian 12's 3.11.2 is and this venv's Python may not be)."""
    import importlib.metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(python_full_version=python, python_version=python.rsplit(".", 1)[0])
    env["extra"] = ""
    out: list[str] = []
    seen: set[str] = set()
    todo = [Requirement(n) for n in names]
    while todo:
        req = todo.pop(0)
        if req.name.lower() in seen:
            continue
        seen.add(req.name.lower())
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{req.name}{req.specifier}")  # needed only on the image's Python: pip picks
            continue
        out.append(f"{dist.name}=={dist.version}")
        deps = map(Requirement, dist.requires or [])
        todo += [r for r in deps if r.marker is None or r.marker.evaluate(env)]
    return out


def worker_image(cache: Path) -> Image:
    import shutil

    base = debian_rootfs(cache)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "opt" / "batchjob" / "lib"
        pins = requirements_for(["pika", "redis"], rootfs_python_version(base))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(lib), *pins],
            check=True,
        )
        shutil.copytree(
            ROOT / "airflow_batchjob", lib / "airflow_batchjob", ignore=shutil.ignore_patterns("__pycache__")
        )
        (Path(tmp) / "usr" / "local" / "bin").mkdir(parents=True)
        (Path(tmp) / "opt" / "batchjob" / "bin").mkdir(parents=True)
        (Path(tmp) / "usr" / "local" / "bin" / "python").symlink_to("/usr/bin/python3")  # as python:3.11 has
        (Path(tmp) / "app").mkdir()
        # The static Go worker the operators inject into other images (core/inject.py WORKER_BINARY).
        shutil.copy(injector_binary(), Path(tmp) / "opt" / "batchjob" / "bin" / "batchjob-worker")
        app = layer_from_dir(Path(tmp))
    rootfs = layer_from_dir(base)
    return Image(
        names=WORKER_NAMES,
        layers=[rootfs, app],
        entrypoint=["python3", "-m", "airflow_batchjob.worker"],
        env=[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH=/opt/batchjob/lib",
            "PYTHONUNBUFFERED=1",
        ],
        workdir="/app",
    )


def injector_binary() -> Path:
    """The injected worker, built (and cached) by ``scripts/build_injector.sh``."""
    script = ROOT / "scripts" / "build_injector.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _source_digest() -> str:
    """What the worker image holds of this repository and how it is built: rebuilt when the
    package or this module changes."""
    h = hashlib.sha256()
    injector = sorted(p for p in (ROOT / "injector").glob("*") if p.is_file())
    for path in [Path(__file__), *sorted((ROOT / "airflow_batchjob").rglob("*.py")), *injector]:
        h.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return h.hexdigest()[:12]


def build_all(cache: Path, node_bin: Path) -> list[Path]:
    """Write the local images' archives under ``cache/images`` (skipping those already there)."""
    out = []
    for key, make in (
        ("pause", lambda: pause_image(node_bin)),
        ("busybox", lambda: busybox_image(cache)),
        (f"worker-{_source_digest()}", lambda: worker_image(cache)),
    ):
        path = cache / "images" / f"{key}.tar"
        if not path.exists():
            write_oci_archive(make(), path)
            # An image rebuilt for changed code replaces the old one (175 MB each), and the
            # registry's store (localcluster/registry.py) is refilled from the current archives.
            for stale in (cache / "images").glob(f"{key.split('-')[0]}-*.tar"):
                if stale != path:
                    stale.unlink()
            subprocess.run(["rm", "-rf", str(cache / "images" / "store")], check=True)
        out.append(path)
    return out


def import_all(ctr: Path, address: str, archives: Iterable[Path]) -> None:
    for archive in archives:
        subprocess.run(
            [
                str(ctr),
                "--address",
                address,
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--no-unpack",
                str(archive),
            ],
            check=True,
            capture_output=True,
        )

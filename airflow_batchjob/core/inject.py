"""Injecting the worker into any image: an init container copies a static binary into the Pod.

The queue patterns and the Indexed worker wrap the user's program with the worker. Without
injection the user's image must hold Python and this package. With it (the default whenever the
main container's image is not the worker image) the Pod gains:

- an ``emptyDir`` volume ``batchjob-worker`` (:data:`INJECT_DIR` in both containers);
- a first init container ``batchjob-worker-install`` running the worker image's static Go binary
  (:data:`WORKER_BINARY`, built from ``injector/`` by ``scripts/build_injector.sh``) as
  ``batchjob-worker install /batchjob/worker``: it copies itself into the volume and makes a
  writable ``tmp/`` there. It needs no shell, runs with a read-only root filesystem, and takes
  the main container's resources (so the Pod's effective request does not grow);
- in the main container, that mount and ``BATCHJOB_TMPDIR`` (the worker's result files live
  there, so a read-only root filesystem works); its command becomes
  ``/batchjob/worker/batchjob-worker <mode> ... -- <program>`` in the user's unchanged image.

The Go binary behaves as ``python -m airflow_batchjob.worker`` in every mode (``tests/conformance``
runs one suite against both).

Pure: dicts in the API's form, no Airflow, no client.
"""

from __future__ import annotations

import copy
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError

# The image the local cluster builds (localcluster/images.py) and the example DAGs name.
WORKER_IMAGE = "ghcr.io/airflow-batchjob/worker:0.1.0"
WORKER_BINARY = "/opt/batchjob/bin/batchjob-worker"  # in the worker image
PYTHON_WORKER = ("python", "-m", "airflow_batchjob.worker")  # the operators' default worker_command
VOLUME = "batchjob-worker"
INIT_CONTAINER = "batchjob-worker-install"
INJECT_DIR = "/batchjob/worker"
INJECTED_COMMAND = (f"{INJECT_DIR}/batchjob-worker",)
TMPDIR_ENV = "BATCHJOB_TMPDIR"
INJECTABLE_MODES = frozenset({"redis", "rabbitmq", "indexed"})  # the Go worker's modes


def image_name(ref: str) -> str:
    """An image reference in one spelling: Docker Hub's implicit host and ``library/`` made explicit,
    ``:latest`` where no tag or digest is given (``busybox`` is ``docker.io/library/busybox:latest``)."""
    ref = ref.strip()
    name, at, digest = ref.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + name  # no registry host: Docker Hub
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = "docker.io/library/" + name.split("/", 1)[1]
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


def should_inject(
    inject: bool | None, mode: str, image: str | None, worker_image: str, worker_command: list[str]
) -> bool:
    """Whether to inject: as given, else when the main container's image is not the worker image
    (:func:`is_worker_image`).

    Not by default when ``worker_command`` was changed (the user said how their image runs the
    Python worker) nor for a mode the Go worker does not have.
    """
    if inject is not None:
        return inject
    if mode not in INJECTABLE_MODES or tuple(worker_command) != PYTHON_WORKER or not image:
        return False
    return not is_worker_image(image, worker_image)


def repository(ref: str) -> str:
    """The last part of an image's name, without registry, tag or digest (``worker``)."""
    return image_name(ref).partition("@")[0].rsplit("/", 1)[-1].rsplit(":", 1)[0]


def is_worker_image(image: str, worker_image: str) -> bool:
    """Whether ``image`` is the worker image: the same name as ``worker_image`` once its last part
    is compared (another tag, a mirror in another registry), or ``airflow-batchjob-worker``, the
    name ``docker/worker.Dockerfile`` suggests. Anything else is taken to lack the Python worker."""
    name = repository(image)
    return name in (repository(worker_image), "airflow-batchjob-worker")


def inject_worker(template: dict[str, Any], worker_image: str) -> list[str]:
    """Add the volume, the init container and the main container's mount to a Pod template (in
    place); return the worker command for the main container."""
    spec = template.setdefault("spec", {})
    main = spec["containers"][0]
    volumes = spec.setdefault("volumes", [])
    inits = spec.setdefault("initContainers", [])
    clash = (
        [f"volume {VOLUME!r}" for v in volumes if v.get("name") == VOLUME]
        + [f"init container {INIT_CONTAINER!r}" for c in inits if c.get("name") == INIT_CONTAINER]
        + [
            f"mount {m.get('mountPath')!r}"
            for m in main.get("volumeMounts") or []
            if str(m.get("mountPath", "")).rstrip("/") == INJECT_DIR
        ]
    )
    if clash:
        raise InvalidJobSpecError(
            f"the injected worker needs {clash[0]}, which the Pod already has: rename yours, or pass "
            "inject_worker=False with an image that holds the worker"
        )
    volumes.append({"name": VOLUME, "emptyDir": {"sizeLimit": "64Mi"}})
    mount = {"name": VOLUME, "mountPath": INJECT_DIR}
    init: dict[str, Any] = {
        "name": INIT_CONTAINER,
        "image": worker_image,
        "command": [WORKER_BINARY, "install", INJECT_DIR],
        "volumeMounts": [dict(mount)],
        # It only copies a file into the volume: what Pod Security's restricted profile asks of a
        # container holds in any namespace (the Pod's user settings, set or not, apply as they are).
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if main.get("resources"):
        init["resources"] = copy.deepcopy(main["resources"])
    inits.insert(0, init)
    main.setdefault("volumeMounts", []).append(dict(mount))
    env = main.setdefault("env", [])
    if not any(e.get("name") == TMPDIR_ENV for e in env):
        env.append({"name": TMPDIR_ENV, "value": f"{INJECT_DIR}/tmp"})
    return list(INJECTED_COMMAND)


def worker_for(
    template: dict[str, Any], inject: bool | None, mode: str, worker_image: str, worker_command: list[str]
) -> list[str]:
    """The main container's worker command; injects the worker into ``template`` first if
    :func:`should_inject` says so (the operators' one call)."""
    image = template["spec"]["containers"][0].get("image")
    if should_inject(inject, mode, image, worker_image, worker_command):
        return inject_worker(template, worker_image)
    return list(worker_command)

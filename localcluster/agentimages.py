"""What stands in for images on the node agent, which runs a container's command on the host.

- An image under the reserved registry ``unpullable.invalid/`` never pulls: the agent reports
  ``ErrImagePull`` / ``ImagePullBackOff`` as the kubelet does (for the diagnostics' tests).
- The injected worker (``airflow_batchjob/core/inject.py``) is copied by an init container that
  runs ``/opt/batchjob/bin/batchjob-worker`` from the worker image; on the host that path is the
  binary ``scripts/build_injector.sh`` built, so injected Pods run on the agent as on a real node.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

UNPULLABLE_REGISTRY = "unpullable.invalid/"
IMAGE_WORKER_BINARY = "/opt/batchjob/bin/batchjob-worker"  # in the worker image


@functools.cache
def injector_binary() -> str:
    """The host's build of the injected worker (a warm cache answers at once)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "build_injector.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def host_argv(argv: list[str]) -> list[str]:
    """The command line to run on the host for a container's ``argv``."""
    if argv and argv[0] == IMAGE_WORKER_BINARY and not Path(argv[0]).exists():
        return [injector_binary(), *argv[1:]]
    return argv


def pull_error(image: str, attempt: int) -> dict[str, Any] | None:
    """The container's ``waiting`` state while its image cannot be pulled, or None if it can."""
    if not image.startswith(UNPULLABLE_REGISTRY):
        return None
    msg = (
        f'failed to pull and unpack image "{image}": failed to resolve reference: '
        f"{UNPULLABLE_REGISTRY.rstrip('/')} is a reserved unpullable registry"
    )
    if attempt % 2 == 0:
        return {"reason": "ErrImagePull", "message": msg}
    return {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}": ErrImagePull: {msg}'}

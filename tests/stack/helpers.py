"""What the stack tests share."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from kubernetes import client

from localcluster import cluster as lc


@contextlib.contextmanager
def own_namespace(local_cluster: lc.State, api_client: Any, prefix: str) -> Iterator[str]:
    """A new namespace, granted to the suite's least-privileged identity, deleted afterwards."""
    core = client.CoreV1Api(api_client)
    namespace = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    lc.grant(local_cluster, namespace)
    yield namespace
    core.delete_namespace(namespace, propagation_policy="Background")

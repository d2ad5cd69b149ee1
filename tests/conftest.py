"""Shared fixtures: the real local cluster and brokers (started once per session, or reused)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import cluster as lc


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[lc.State]:
    """The running local cluster named by $BATCHJOB_CLUSTER_DIR, or one started for this session."""
    d = (
        lc.default_dir(f"pytest-{os.getpid()}")
        if "BATCHJOB_CLUSTER_DIR" not in os.environ
        else Path(os.environ["BATCHJOB_CLUSTER_DIR"])
    )
    existing = lc.State.load(d)
    reuse = existing is not None and lc.alive(existing)
    st = lc.up(d)
    saved = {k: os.environ.get(k) for k in st.connections()}
    os.environ.update(st.connections())
    yield st
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if not reuse:
        lc.down(d)


@pytest.fixture(scope="session")
def api_client(local_cluster: lc.State):  # type: ignore[no-untyped-def]
    from kubernetes import config

    return config.new_client_from_config(config_file=local_cluster.kubeconfig)


@pytest.fixture
def namespace(api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace per test (deleted afterwards), ready once its default ServiceAccount exists."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    core.delete_namespace(name, propagation_policy="Background")

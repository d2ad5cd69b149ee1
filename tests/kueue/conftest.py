"""Kueue on the local cluster, started once per run (``localcluster/kueue.py``), and a queue per test.

Each test gets its own namespace (the ``namespace`` fixture), a ClusterQueue that admits only
that namespace, and a LocalQueue ``q`` in it; the Airflow identity gets deploy/rbac/kueue-role.yaml
there besides role.yaml. Kueue's own objects are created as admin, as a cluster operator would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import cluster as lc
from localcluster import kueue as lk

pytestmark = pytest.mark.kueue

KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
FLAVOR = "batchjob-flavor"  # not the peer example's "default-flavor": it creates its own
KUEUE_ROLE = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "kueue-role.yaml"


@pytest.fixture(scope="package")
def kueue(local_cluster: lc.State) -> Iterator[lc.State]:
    """Kueue running against the session's cluster for this package's tests, then stopped with its
    webhooks removed: the lane's later tests (the Airflow stacks) share the cluster, and their Job
    creations must not wait on Kueue's webhook on a loaded machine."""
    lk.up(Path(local_cluster.dir))
    lc.api_send(
        local_cluster,
        "POST",
        f"{KUEUE}/resourceflavors",
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
    )
    yield local_cluster
    lk.down(Path(local_cluster.dir))


def cluster_queue(name: str, namespace: str, cpu: str, **spec: Any) -> dict[str, Any]:
    """A ClusterQueue admitting ``namespace`` only, with ``cpu`` of quota in the default flavor."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory"],
                    "flavors": [
                        {
                            "name": FLAVOR,
                            "resources": [
                                {"name": "cpu", "nominalQuota": cpu},
                                {"name": "memory", "nominalQuota": "64Gi"},
                            ],
                        }
                    ],
                }
            ],
            **spec,
        },
    }


@pytest.fixture
def make_queue(kueue: lc.State, namespace: str) -> Iterator[Callable[..., str]]:
    """``make_queue(cpu="2", **cluster_queue_spec)``: a ClusterQueue for this test's namespace and
    its LocalQueue ``q``; returns the LocalQueue's name. Deleted after the test."""
    made: list[str] = []

    def make(cpu: str = "2", name: str = "q", **spec: Any) -> str:
        cq = f"cq-{namespace}-{name}"
        lc.api_send(kueue, "POST", f"{KUEUE}/clusterqueues", cluster_queue(cq, namespace, cpu, **spec))
        made.append(cq)
        lq = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cq},
        }
        lc.api_send(kueue, "POST", f"{KUEUE}/namespaces/{namespace}/localqueues", lq)
        return name

    yield make
    for cq in made:
        with contextlib.suppress(RuntimeError):
            lc.api_send(kueue, "DELETE", f"{KUEUE}/clusterqueues/{cq}", {}, ok_conflict=True)


@pytest.fixture
def kueue_grant(kueue: lc.State, namespace: str) -> str:
    """deploy/rbac/kueue-role.yaml bound to the Airflow identity in the test's namespace."""
    role = yaml.safe_load(KUEUE_ROLE.read_text())
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    lc.api_send(kueue, "POST", f"{base}/roles", role)
    name = role["metadata"]["name"]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": lc.AIRFLOW_SA, "namespace": lc.AIRFLOW_SA_NAMESPACE}],
    }
    lc.api_send(kueue, "POST", f"{base}/rolebindings", binding)
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{lc.AIRFLOW_SA_NAMESPACE}:{lc.AIRFLOW_SA}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{lc.AIRFLOW_SA_NAMESPACE}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "watch",
                "group": "kueue.x-k8s.io",
                "resource": "workloads",
            },
        },
    }
    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    lc.wait_for(
        f"Kueue RBAC grant in {namespace}",
        lambda: bool(lc.api_send(kueue, "POST", sar, review, ok_conflict=False)["status"]["allowed"]),  # type: ignore[index]
        30,
    )
    return namespace

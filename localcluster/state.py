"""The local cluster's paths, versions and saved state: what ``up`` started, in ``<dir>/cluster.json``.

The lowest layer of ``localcluster``: every other module reads a cluster through :class:`State`.
``cluster.py`` re-exports these names (``lc.State``, ``lc.BIN`` ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# brokers.py needs State only for type hints, so importing it here makes no circle.
from localcluster import brokers

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BATCHJOB_CACHE", Path.home() / ".cache" / "airflow-batchjob"))
K8S_VERSION = os.environ.get("K8S_VERSION", "v1.37.2")
# The etcd k8s.io/kubernetes itself requires: build.sh builds both in one module.
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.7.0")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.8.0")
BIN = CACHE / f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}" / "bin"
NODE_NAME = "batchjob-node"


def default_dir(name: str = "default") -> Path:
    return Path(os.environ.get("BATCHJOB_CLUSTER_DIR", CACHE / "clusters" / name))


@dataclass
class State:
    """What ``up`` started, saved in ``<dir>/cluster.json`` so ``down`` and tests find it."""

    dir: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)  # to restart a component (fault tests)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    token: str = ""
    redis_password: str = ""
    rabbitmq_user: str = "batchjob"
    rabbitmq_password: str = ""
    node: str = "agent"  # "agent": localcluster/nodeagent.py; "real": kubelet + containerd (realnode.py)

    @property
    def kubeconfig(self) -> str:
        return str(Path(self.dir) / "admin.kubeconfig")

    @property
    def env_file(self) -> str:
        return str(Path(self.dir) / "cluster.env")

    def save(self) -> None:
        path = Path(self.dir) / "cluster.json"
        path.write_text(json.dumps(asdict(self), indent=1))
        path.chmod(0o600)

    @classmethod
    def load(cls, d: Path) -> State | None:
        path = d / "cluster.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def connections(self, kubeconfig: str | None = None) -> dict[str, str]:
        """Airflow connections (``AIRFLOW_CONN_*``) and KUBECONFIG for tests and the demo.

        ``kubeconfig`` is the one ``kubernetes_default`` uses (default: admin; the tests pass the
        least-privilege one from :func:`airflow_identity`); KUBECONFIG stays admin.
        """
        kube = {
            "conn_type": "kubernetes",
            "extra": {"kube_config_path": kubeconfig or self.kubeconfig, "namespace": "default"},
        }
        return {
            "KUBECONFIG": self.kubeconfig,
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(kube),
            **brokers.connections(self),
            "BATCHJOB_CLUSTER_DIR": self.dir,
        }

"""The local cluster's control plane: its PKI, then etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the node (the node agent, or kubelet + containerd from ``realnode.py``), and
the checks that say it is up.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from localcluster import certs
from localcluster.access import api_get
from localcluster.launch import spawn, wait_for
from localcluster.state import BIN, CACHE, NODE_NAME, ROOT, State

CONTROLLERS = ",".join(
    [
        "job-controller",
        "garbage-collector-controller",
        "ttl-after-finished-controller",
        "pod-garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "root-ca-certificate-publisher-controller",
        "resourcequota-controller",
        "cronjob-controller",
    ]
)


def make_pki(pki: Path) -> None:
    """A CA, the apiserver's serving cert, the node agent's kubelet cert, the SA signing key."""
    certs.make_ca(pki, "batchjob-local-ca")
    for name, cn in (("apiserver", "kube-apiserver"), ("kubelet", NODE_NAME)):
        ext = (
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
            f"DNS:kubernetes.default,DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        certs.issue(pki, name, cn, ext)
    certs.openssl("genrsa", "-out", str(pki / "sa.key"), "2048")


def start_control_plane(st: State) -> None:
    d = Path(st.dir)
    p = st.ports
    pki = d / "pki"
    spawn(
        st,
        "etcd",
        [
            str(BIN / "etcd"),
            "--name=node0",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--listen-peer-urls=http://127.0.0.1:{p['etcd_peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd_peer']}",
            f"--initial-cluster=node0=http://127.0.0.1:{p['etcd_peer']}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--listen-metrics-urls=",
            "--quota-backend-bytes=8589934592",
        ],
    )
    wait_for(
        "etcd",
        lambda: b"true" in urllib.request.urlopen(f"http://127.0.0.1:{p['etcd']}/health", timeout=2).read(),
        30,
        d / "logs" / "etcd.log",
        st.pids["etcd"],
    )
    (d / "tokens.csv").write_text(f'{st.token},admin,admin,"system:masters"\n')
    (d / "tokens.csv").chmod(0o600)
    spawn(
        st,
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--anonymous-auth=false",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--disable-admission-plugins=TaintNodesByCondition",
            f"--kubelet-client-certificate={pki / 'apiserver.crt'}",
            f"--kubelet-client-key={pki / 'apiserver.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=1",
        ],
    )
    wait_for(
        "kube-apiserver",
        lambda: api_get(st, "/readyz") == b"ok",
        90,
        d / "logs" / "kube-apiserver.log",
        st.pids["kube-apiserver"],
    )
    spawn(
        st,
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            f"--kubeconfig={st.kubeconfig}",
            "--leader-elect=false",
            f"--secure-port={p['controller_manager']}",
            "--bind-address=127.0.0.1",
            "--use-service-account-credentials=false",
            f"--controllers={CONTROLLERS}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--authentication-kubeconfig={st.kubeconfig}",
            f"--authorization-kubeconfig={st.kubeconfig}",
            "--concurrent-job-syncs=10",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    spawn(
        st,
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            f"--kubeconfig={st.kubeconfig}",
            "--leader-elect=false",
            f"--secure-port={p['scheduler']}",
            "--bind-address=127.0.0.1",
            f"--authentication-kubeconfig={st.kubeconfig}",
            f"--authorization-kubeconfig={st.kubeconfig}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    if st.node == "real":
        from localcluster import realnode

        realnode.start(st, spawn, CACHE, BIN / "kubelet", NODE_NAME)
        return
    spawn(
        st,
        "nodeagent",
        [
            sys.executable,
            "-m",
            "localcluster.nodeagent",
            f"--kubeconfig={st.kubeconfig}",
            f"--node-name={NODE_NAME}",
            f"--workdir={d / 'node'}",
            f"--port={p['kubelet']}",
            f"--cert={pki / 'kubelet.crt'}",
            f"--key={pki / 'kubelet.key'}",
        ],
        env={"PYTHONPATH": str(ROOT)},
    )


def node_ready(st: State) -> bool:
    node = json.loads(api_get(st, f"/api/v1/nodes/{NODE_NAME}"))
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def default_sa(st: State) -> bool:
    api_get(st, "/api/v1/namespaces/default/serviceaccounts/default")
    return True


def alive(st: State) -> bool:
    for pid in st.pids.values():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
    try:
        return api_get(st, "/readyz") == b"ok"
    except Exception:
        return False

"""Start and stop the embedded local cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the node agent, RabbitMQ and Redis (``brokers.py``: plain and TLS), all on loopback.

``python -m localcluster up`` starts everything (free ports, generated credentials), writes a
kubeconfig and an env file with Airflow connections, and returns once the Node is Ready and
the brokers answer. ``python -m localcluster down`` stops every process it started and removes
its data directory. The binaries come from ``localcluster/build.sh`` (a versioned cache).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcluster import brokers, certs, procs
from localcluster.brokers import (  # noqa: F401  (public names of this module before brokers.py)
    RABBITMQ_SERVER,
    broker_addresses,
    redis_ping,
    start_rabbitmq,
    start_redis,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BATCHJOB_CACHE", Path.home() / ".cache" / "airflow-batchjob"))
K8S_VERSION = os.environ.get("K8S_VERSION", "v1.37.2")
# The etcd k8s.io/kubernetes itself requires: build.sh builds both in one module.
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.7.0")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.8.0")
BIN = CACHE / f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}" / "bin"
NODE_NAME = "batchjob-node"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, logs: Path | None = None, pid: int | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not procs.exists(pid):
            timeout = 0
            break
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = ""
    if logs and logs.exists():
        tail = "\n".join(logs.read_text(errors="replace").splitlines()[-30:])
    why = "exited" if timeout == 0 else f"not ready after {timeout:.0f}s"
    raise RuntimeError(f"localcluster: {what} {why}; last lines of {logs}:\n{tail}")


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


def write_kubeconfig(st: State) -> None:
    """The admin kubeconfig (the cluster's static admin token)."""
    write_client_kubeconfig(st, Path(st.kubeconfig), st.token, user="admin")


def spawn(st: State, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    st.commands[name] = cmd
    st.envs[name] = env or {}
    logs = Path(st.dir) / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=st.dir,
        )
    st.pids[name] = proc.pid
    st.save()


def api_get(st: State, path: str) -> bytes:
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}", headers={"Authorization": f"Bearer {st.token}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return bytes(r.read())


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


# -- least privilege: the identity Airflow uses in tests (deploy/rbac/role.yaml, nothing more) --
AIRFLOW_SA_NAMESPACE = "batchjob-airflow"
AIRFLOW_SA = "airflow"
RBAC_ROLE = ROOT / "deploy" / "rbac" / "role.yaml"


def api_send(st: State, method: str, path: str, body: object, ok_conflict: bool = True) -> dict[str, object]:
    """An admin request with a JSON body; 409 AlreadyExists counts as done when ``ok_conflict``."""
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {st.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        if e.code == 409 and ok_conflict:
            return {}
        raise RuntimeError(f"localcluster: {method} {path}: {e.code} {e.read()[:300]!r}") from None


def grant(st: State, namespace: str) -> None:
    """Apply deploy/rbac/role.yaml in ``namespace`` and bind it to the Airflow ServiceAccount."""
    import yaml

    role = yaml.safe_load(RBAC_ROLE.read_text())
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    api_send(st, "POST", f"{base}/roles", role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": AIRFLOW_SA, "namespace": AIRFLOW_SA_NAMESPACE}],
    }
    api_send(st, "POST", f"{base}/rolebindings", binding)
    # The RBAC authorizer works from an informer cache: wait until the grant is in effect.
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{AIRFLOW_SA_NAMESPACE}:{AIRFLOW_SA}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{AIRFLOW_SA_NAMESPACE}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "create",
                "group": "batch",
                "resource": "jobs",
            },
        },
    }
    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    wait_for(
        f"RBAC grant in {namespace}",
        lambda: bool(api_send(st, "POST", sar, review, ok_conflict=False)["status"]["allowed"]),  # type: ignore[index]
        30,
    )


def write_client_kubeconfig(
    st: State, path: Path, token: str, server: str | None = None, user: str = "airflow"
) -> str:
    """A kubeconfig (mode 600) for ``token`` against the apiserver (or ``server``, e.g. a fault proxy)."""
    ca = base64.b64encode((Path(st.dir) / "pki" / "ca.crt").read_bytes()).decode()
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "batchjob",
        "clusters": [
            {
                "name": "batchjob",
                "cluster": {
                    "server": server or f"https://127.0.0.1:{st.ports['apiserver']}",
                    "certificate-authority-data": ca,
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "batchjob",
                "context": {"cluster": "batchjob", "user": user, "namespace": "default"},
            }
        ],
    }
    # Created private: the token must never be readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(kc, indent=1))
    return str(path)


def airflow_identity(st: State) -> str:
    """Token of the ServiceAccount ``batchjob-airflow/airflow``, which holds no rights until ``grant``.

    Written to ``<dir>/airflow.token`` (and ``airflow.kubeconfig``) once; tokens are signed with
    the cluster's key, so they survive apiserver restarts.
    """
    token_file = Path(st.dir) / "airflow.token"
    if token_file.exists():
        return token_file.read_text()
    api_send(st, "POST", "/api/v1/namespaces", {"metadata": {"name": AIRFLOW_SA_NAMESPACE}})
    sa_path = f"/api/v1/namespaces/{AIRFLOW_SA_NAMESPACE}/serviceaccounts"
    api_send(st, "POST", sa_path, {"metadata": {"name": AIRFLOW_SA}})
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 30 * 86400},
    }
    resp = api_send(st, "POST", f"{sa_path}/{AIRFLOW_SA}/token", req, ok_conflict=False)
    token = str(resp["status"]["token"])  # type: ignore[index]
    token_file.write_text(token)
    token_file.chmod(0o600)
    write_client_kubeconfig(st, Path(st.dir) / "airflow.kubeconfig", token)
    return token


def up(d: Path, node: str | None = None) -> State:
    """Start everything, or return the running cluster if ``d`` already holds a live one.

    ``node``: "agent" (the node agent runs Pods as host processes) or "real" (kubelet and
    containerd run them in containers, ``realnode.py``). None: a live cluster's, whichever it
    is (the test fixtures reuse it), else ``$BATCHJOB_NODE``, else "agent".
    """
    existing = State.load(d)
    if existing and alive(existing) and node in (None, existing.node):
        return existing
    node = node or os.environ.get("BATCHJOB_NODE") or "agent"
    if existing:
        down(d)
    if not (BIN / "kube-apiserver").exists():
        raise SystemExit(f"localcluster: binaries missing in {BIN}; run localcluster/build.sh first")
    for tool in ("unshare", "openssl", "redis-server", RABBITMQ_SERVER):
        if not shutil.which(tool):
            raise SystemExit(f"localcluster: {tool} not found; run scripts/setup.sh first")
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    names = (
        "etcd",
        "etcd_peer",
        "apiserver",
        "controller_manager",
        "scheduler",
        "kubelet",
        *brokers.PORTS,
    )
    st = State(
        dir=str(d),
        ports={n: free_port() for n in names},
        token=secrets.token_hex(24),
        redis_password=secrets.token_hex(16),
        rabbitmq_password=secrets.token_hex(16),
        node=node,
    )
    if node == "real":
        from localcluster import realnode

        why = realnode.available(CACHE, BIN / "kubelet")
        if why:
            raise SystemExit(f"localcluster: no real node: {why}")
    st.save()
    t0 = time.monotonic()
    if node == "real":
        from localcluster import realnode

        realnode.bridge()  # the brokers listen on its address too
    make_pki(d / "pki")
    write_kubeconfig(st)
    brokers.make_tls(st)
    start_redis(st)
    start_rabbitmq(st)
    try:
        start_control_plane(st)
        node_proc = "kubelet" if node == "real" else "nodeagent"
        wait_for("node", lambda: node_ready(st), 90, d / "logs" / f"{node_proc}.log", st.pids[node_proc])
        wait_for(
            "default service account", lambda: default_sa(st), 60, d / "logs" / "kube-controller-manager.log"
        )
        wait_for("redis", lambda: redis_ping(st), 30, d / "logs" / "redis.log", st.pids["redis"])
        wait_for(
            "rabbitmq",
            lambda: brokers.rabbitmq_ready(st),
            90,
            d / "logs" / "rabbitmq.log",
            st.pids["rabbitmq"],
        )
    except BaseException:
        down(d)
        raise
    lines = [f"export {k}={shell_quote(v)}" for k, v in st.connections().items()]
    Path(st.env_file).write_text("\n".join(lines) + "\n")
    Path(st.env_file).chmod(0o600)
    print(
        f"localcluster: up in {time.monotonic() - t0:.1f}s (apiserver https://127.0.0.1:{st.ports['apiserver']},"
        f" kubeconfig {st.kubeconfig}, env {st.env_file})",
        file=sys.stderr,
    )
    return st


def shell_quote(v: str) -> str:
    return "'" + v.replace("'", "'\"'\"'") + "'"


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


def restart(st: State, name: str, down_seconds: float = 0.0) -> None:
    """Stop one component (SIGTERM, then SIGKILL) and start it again with the same command line."""
    procs.stop_group(st.pids[name])
    time.sleep(down_seconds)
    spawn(st, name, st.commands[name], st.envs[name])
    logs = Path(st.dir) / "logs" / f"{name}.log"
    if name == "redis":
        wait_for("redis", lambda: redis_ping(st), 30, logs, st.pids[name])
    elif name == "rabbitmq":
        wait_for("rabbitmq", lambda: brokers.rabbitmq_ready(st), 90, logs, st.pids[name])
    if name == "kube-apiserver":
        wait_for(
            "kube-apiserver",
            lambda: api_get(st, "/readyz") == b"ok",
            90,
            Path(st.dir) / "logs" / f"{name}.log",
            st.pids[name],
        )


def down(d: Path) -> None:
    """Stop every process ``up`` started (their whole process groups) and remove the data dir."""
    st = State.load(d)
    if st:
        groups = list(st.pids.values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + 10
            while (
                sig == signal.SIGTERM and time.monotonic() < deadline and any(procs.exists(p) for p in groups)
            ):
                time.sleep(0.1)
        sweep_containers(d)
        if st.node == "real":
            from localcluster import realnode

            realnode.sweep(d)
        epmd = shutil.which("epmd")
        if epmd and "epmd" in st.ports:
            subprocess.run(
                [epmd, "-kill"],
                env={**os.environ, "ERL_EPMD_PORT": str(st.ports["epmd"])},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    remove_later(d)


def remove_later(d: Path) -> None:
    """Remove the data dir without waiting for it: it is renamed away at once and deleted by a
    detached ``rm``. On a filesystem mounted with ``discard`` (this VM's) deleting the tens of
    thousands of files a suite leaves takes minutes, every one of them waited for."""
    if not d.exists():
        return
    resolved = str(d.resolve())
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(f" {resolved}/" in m for m in mounts):  # something still mounted inside: delete here
        shutil.rmtree(d, ignore_errors=True)
        return
    trash = d.with_name(f".{d.name}.removing-{os.getpid()}")
    try:
        d.rename(trash)
    except OSError:
        shutil.rmtree(d, ignore_errors=True)
        return
    delete_in_background(trash)


def delete_in_background(path: Path) -> None:
    """``rm -rf`` ``path`` in a detached process that outlives this one (``localcluster/stale.py``
    starts it again if a killed run took it down)."""
    subprocess.Popen(
        ["rm", "-rf", "--one-file-system", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def sweep_containers(d: Path) -> None:
    """Kill container process groups the node agent left running (it records each in ``node/pids``),
    then any process still working in the data dir (a component restarted by a session whose
    state file was later overwritten would otherwise outlive ``down``)."""
    for f in (d / "node" / "pids").glob("*"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(f.name), signal.SIGKILL)
    root = str(d.resolve())
    spare = _ancestors()  # never this process or the shell that runs it, even from inside the dir
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            cwd = os.readlink(proc / "cwd").removesuffix(" (deleted)")
            if (cwd == root or cwd.startswith(root + "/")) and int(proc.name) not in spare:
                os.kill(int(proc.name), signal.SIGKILL)


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent pid
        except (OSError, ValueError, IndexError):
            break
    return pids


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down", "env", "status"])
    p.add_argument(
        "--dir", type=Path, default=None, help="data dir (default $BATCHJOB_CLUSTER_DIR or the cache)"
    )
    p.add_argument(
        "--kwok",
        type=int,
        default=0,
        metavar="N",
        help="up: also start kwok with N fake Nodes (localcluster/kwok.py)",
    )
    p.add_argument(
        "--node",
        choices=["agent", "real"],
        default=None,
        help="up: the node agent (host processes) or kubelet + containerd (default $BATCHJOB_NODE or agent)",
    )
    a = p.parse_args(argv)
    d = (a.dir or default_dir()).resolve()
    if a.command == "up":
        st = up(d, a.node)
        if a.kwok:
            from localcluster import kwok

            kwok.up(d, a.kwok)
        print(st.env_file)
    elif a.command == "down":
        down(d)
    elif a.command == "env":
        st0 = State.load(d)
        if not st0:
            raise SystemExit(f"localcluster: no cluster in {d}")
        print(Path(st0.env_file).read_text(), end="")
    else:
        st0 = State.load(d)
        print("up" if st0 and alive(st0) else "down")
        sys.exit(0 if st0 and alive(st0) else 1)


if __name__ == "__main__":
    main()

"""Start and stop the embedded local cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the node agent, RabbitMQ and Redis (``brokers.py``: plain and TLS), all on loopback.

``python -m localcluster up`` starts everything (free ports, generated credentials), writes a
kubeconfig and an env file with Airflow connections, and returns once the Node is Ready and
the brokers answer. ``python -m localcluster down`` stops every process it started and removes
its data directory. The binaries come from ``localcluster/build.sh`` (a versioned cache).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from localcluster import brokers, procs

# The names below were defined here before the split (issue 27); other code reaches them as
# ``lc.<name>``, so they stay importable from this module.
from localcluster.access import (  # noqa: F401
    AIRFLOW_SA,
    AIRFLOW_SA_NAMESPACE,
    RBAC_ROLE,
    airflow_identity,
    api_get,
    api_send,
    grant,
    write_client_kubeconfig,
    write_kubeconfig,
)
from localcluster.brokers import (  # noqa: F401  (public names of this module before brokers.py)
    RABBITMQ_SERVER,
    broker_addresses,
    redis_ping,
    start_rabbitmq,
    start_redis,
)
from localcluster.controlplane import (  # noqa: F401
    CONTROLLERS,
    alive,
    default_sa,
    make_pki,
    node_ready,
    start_control_plane,
)
from localcluster.launch import free_port, port_open, spawn, wait_for  # noqa: F401
from localcluster.state import (  # noqa: F401
    BIN,
    CACHE,
    ETCD_VERSION,
    K8S_VERSION,
    KWOK_VERSION,
    NODE_NAME,
    ROOT,
    State,
    default_dir,
)


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

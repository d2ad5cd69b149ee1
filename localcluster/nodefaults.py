"""What the node fault tests (tests/faults/test_node_faults.py) do to a real-node cluster: SIGKILL
the kubelet, containerd or etcd and start them again, turn on the controllers that notice a lost
node, and keep a second real node on this machine out of the first one's way.

A second real node (``BATCHJOB_NODE_PRIVATE=1`` when it starts, ``start_private``): the kubelet
treats every Pod cgroup under its cgroup root and every Pod log directory under its log dir that
it does not know as an orphan and deletes it, processes included. Two kubelets with the defaults
(``/kubepods``, ``/var/log/pods``) would kill each other's Pods. A private node gets a cgroup root
and a log dir of its own; the bridge, its subnet and host-local's address store are shared, so
their Pods' addresses never collide.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster import cluster as lc
from localcluster import procs

CGROUP_FS = Path("/sys/fs/cgroup")
# The node-lifecycle controller marks a silent node Unknown after the grace period and taints
# it; the taint-eviction controller then evicts Pods whose toleration ran out. Kubernetes'
# defaults are 50 s and 300 s; a test shortens both (the Pods' tolerationSeconds for the latter).
NODE_MONITOR_GRACE_SECONDS = 20
NODE_MONITOR_PERIOD_SECONDS = 2
NODE_CONTROLLERS = ("node-lifecycle-controller", "taint-eviction-controller")


def _cgroup_root(d: Path) -> str:
    return "/batchjob-" + hashlib.sha256(str(d.resolve()).encode()).hexdigest()[:10]


def _hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies the kubelet uses (its cgroup root must exist in each)."""
    return [p for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "unified"]


def private_kubelet(d: Path) -> dict[str, object]:
    """KubeletConfiguration fields for a node that shares this machine with another real node."""
    root = _cgroup_root(d)
    for h in _hierarchies():
        (h / root.lstrip("/")).mkdir(exist_ok=True)
    logs = d / "realnode" / "pod-logs"
    logs.mkdir(parents=True, exist_ok=True)
    (d / "realnode" / "cgroup-root").write_text(root)
    return {"cgroupRoot": root, "podLogsDir": str(logs)}


def remove_cgroups(d: Path) -> None:
    """After ``down``: the private cgroup root's (now empty) directories, deepest first."""
    marker = d / "realnode" / "cgroup-root"
    if not marker.exists():
        return
    root = marker.read_text().strip().lstrip("/")
    for h in _hierarchies():
        top = h / root
        if not top.exists():
            continue
        for sub in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def start_private(d: Path) -> lc.State:
    """Start a real-node cluster in ``d`` that leaves any other real node on this machine alone."""
    saved = os.environ.get("BATCHJOB_NODE_PRIVATE")
    os.environ["BATCHJOB_NODE_PRIVATE"] = "1"
    try:
        return lc.up(d, node="real")
    finally:
        if saved is None:
            os.environ.pop("BATCHJOB_NODE_PRIVATE", None)
        else:
            os.environ["BATCHJOB_NODE_PRIVATE"] = saved


def _ctr(st: lc.State) -> list[str]:
    from localcluster import realnode

    base = realnode.node_dir(lc.CACHE)
    return [str(base / "bin" / "ctr"), "--address", str(Path(st.dir) / "realnode" / "containerd.sock")]


def _containerd_answers(st: lc.State) -> bool:
    return subprocess.run([*_ctr(st), "version"], capture_output=True, timeout=10).returncode == 0


def _etcd_healthy(st: lc.State) -> bool:
    url = f"http://127.0.0.1:{st.ports['etcd']}/health"
    return b'"health":"true"' in urllib.request.urlopen(url, timeout=2).read()


def node(st: lc.State) -> dict[str, Any]:
    return dict(json.loads(lc.api_get(st, f"/api/v1/nodes/{lc.NODE_NAME}")))


def lease_renewed(st: lc.State) -> str:
    """The node's Lease renewTime (the kubelet's heartbeat)."""
    lease = json.loads(
        lc.api_get(st, f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{lc.NODE_NAME}")
    )
    return str(lease["spec"].get("renewTime", ""))


def ready(st: lc.State) -> str:
    """The node's Ready condition status: "True", "False" or "Unknown" (the kubelet went silent)."""
    conditions = node(st)["status"]["conditions"]
    return next((str(c["status"]) for c in conditions if c["type"] == "Ready"), "")


def kill(st: lc.State, name: str) -> None:
    """SIGKILL component ``name`` (its own process only: containerd's shims, and the containers
    under them, live on as they do when the real daemon crashes)."""
    pid = st.pids[name]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    lc.wait_for(f"{name} to die", lambda: not procs.exists(pid), 10)


def start(st: lc.State, name: str, timeout: float = 120) -> float:
    """Start ``name`` again with its command line; wait until it does its job again. Returns the
    seconds that took: the kubelet once it renewed the node's Lease and the node is Ready,
    containerd once it answers, etcd once healthy and the apiserver ready again."""
    t0 = time.monotonic()
    before = _retrying(lambda: lease_renewed(st), timeout) if name == "kubelet" else ""
    lc.spawn(st, name, st.commands[name], st.envs[name])
    logs = Path(st.dir) / "logs" / f"{name}.log"
    pid = st.pids[name]
    if name == "kubelet":
        lc.wait_for(
            "kubelet", lambda: lease_renewed(st) != before and ready(st) == "True", timeout, logs, pid
        )
    elif name == "containerd":
        lc.wait_for("containerd", lambda: _containerd_answers(st), timeout, logs, pid)
    elif name == "etcd":
        lc.wait_for("etcd", lambda: _etcd_healthy(st), timeout, logs, pid)
        lc.wait_for("kube-apiserver", lambda: lc.api_get(st, "/readyz") == b"ok", timeout)
    return time.monotonic() - t0


def _retrying(read: Callable[[], str], timeout: float) -> str:
    """``read()``, tried again on an error until ``timeout``: one refused or reset API call,
    under load, must not leave a killed daemon down."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure(st: lc.State, name: str, attempts: int = 3) -> None:
    """Start ``name`` if it is not running: a failed test must not leave the node broken (nor a
    DAG waiting for ever on it). Each failed start is printed, then stopped and tried again."""
    for attempt in range(1, attempts + 1):
        if procs.exists(st.pids[name]):
            return
        try:
            start(st, name)
            return
        except Exception as e:
            print(
                f"localcluster: starting {name} again, try {attempt} of {attempts}: {e}",
                file=sys.stderr,
                flush=True,
            )
            procs.stop_group(st.pids[name])
            if attempt == attempts:
                raise


def _controller_manager_healthy(st: lc.State) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # its own self-signed serving cert
    url = f"https://127.0.0.1:{st.ports['controller_manager']}/healthz"
    return urllib.request.urlopen(url, context=ctx, timeout=2).read() == b"ok"


def watch_nodes(st: lc.State) -> None:
    """Restart kube-controller-manager with the node-lifecycle and taint-eviction controllers,
    and a short grace (``NODE_MONITOR_GRACE_SECONDS``), so a lost node is noticed in seconds;
    add one kwok Node (tainted: nothing runs there) that stays Ready. With every Node not Ready
    the node-lifecycle controller assumes the control plane is cut off ("master disruption
    mode") and evicts nothing, so a one-node cluster never evicts."""
    from localcluster import kwok

    kwok.up(Path(st.dir), 1)
    cmd = st.commands["kube-controller-manager"]
    if any(c in arg for arg in cmd for c in NODE_CONTROLLERS):
        return
    cmd = [f"{arg},{','.join(NODE_CONTROLLERS)}" if arg.startswith("--controllers=") else arg for arg in cmd]
    cmd += [
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}s",
        f"--node-monitor-period={NODE_MONITOR_PERIOD_SECONDS}s",
        "--node-startup-grace-period=30s",
    ]
    st.commands["kube-controller-manager"] = cmd
    lc.restart(st, "kube-controller-manager")
    logs = Path(st.dir) / "logs" / "kube-controller-manager.log"
    lc.wait_for("kube-controller-manager", lambda: _controller_manager_healthy(st), 60, logs)

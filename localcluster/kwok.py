"""kwok on the local cluster: fake Nodes whose Pods run no process and finish after a fixed time.

``python -m localcluster.kwok up --dir D --nodes N`` starts kwok (built by ``build.sh``) against
the running cluster in ``D`` and creates ``N`` Nodes named ``kwok-node-<i>``. kwok manages only
Nodes carrying the label ``batchjob.local/kwok=true`` (``--manage-nodes-with-label-selector``):
it marks them Ready, renews their Leases, and plays the Pods bound to them through the stages
written here: Pending -> Running at once, Running -> Succeeded after ``--pod-seconds`` (per Pod:
the annotation ``pod-complete.stage.kwok.x-k8s.io/delay``, a Go duration such as ``"90s"``).

The Nodes are tainted ``batchjob.local/kwok=true:NoSchedule``, so only Pods that carry the
matching toleration and ``nodeSelector`` (:func:`pod_placement`) land there; every other Pod
still goes to the node agent's ``batchjob-node`` and runs as a real process. kwok runs under a
watchdog that ends it when ``python -m localcluster down`` removes the cluster's dir.
``python -m localcluster.kwok down --dir D`` stops kwok and deletes its Nodes only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import procs
from localcluster.controlplane import alive
from localcluster.launch import wait_for
from localcluster.state import BIN, State, default_dir

LABEL = "batchjob.local/kwok"  # on kwok's Nodes (kwok manages exactly these) and in the taint
NODE_PREFIX = "kwok-node-"
DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"  # per-Pod run time, a Go duration
STAGES_FILE = BIN.parent / "kwok-stages.yaml"  # the default stages build.sh took from the module
POD_CIDR = "10.244.0.1/16"  # kwok hands out Pod IPs from here (its default /24 has 254 addresses)


def pod_placement() -> dict[str, Any]:
    """Pod spec fields that send a Pod to the kwok Nodes (merge into ``template.spec``)."""
    return {
        "nodeSelector": {LABEL: "true"},
        "tolerations": [{"key": LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }


def stages(pod_seconds: float, source: Path = STAGES_FILE) -> str:
    """build.sh's default stages, with a fixed delay (overridable per Pod) before a Pod completes."""
    docs = [d.strip("\n") for d in source.read_text().split("\n---") if d.strip(" \n-")]
    names = []
    out = []
    for doc in docs:
        name = next((ln.split(":", 1)[1].strip() for ln in doc.splitlines() if ln.startswith("  name:")), "")
        names.append(name)
        if name == "pod-complete":
            if "\n  next:" not in doc or "\n  delay:" in doc:
                raise RuntimeError(f"localcluster.kwok: unexpected pod-complete stage in {source}")
            delay = (
                "  delay:\n"
                f"    durationMilliseconds: {round(pod_seconds * 1000)}\n"
                "    durationFrom:\n"
                f"      expressionFrom: '.metadata.annotations[\"{DELAY_ANNOTATION}\"]'\n"
            )
            doc = doc.replace("\n  next:", "\n" + delay + "  next:", 1)
        out.append(doc)
    missing = {"node-initialize", "pod-ready", "pod-complete", "pod-delete"} - set(names)
    if missing:
        raise RuntimeError(f"localcluster.kwok: stages {sorted(missing)} missing from {source}")
    config = (
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
        "kind: KwokConfiguration\n"
        "options:\n"
        "  podPlayStageParallelism: 16\n"
        "  nodePlayStageParallelism: 4\n"
        "  nodeLeaseParallelism: 4\n"
        "  podsOnNodeSyncParallelism: 1\n"
    )
    return "\n---\n".join([config, *out]) + "\n"


def _request(st: State, method: str, path: str, body: Any = None) -> Any:
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {st.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.loads(r.read() or b"null")


def node_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {LABEL: "true", "kubernetes.io/hostname": name, "type": "kwok"},
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [{"key": LABEL, "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "1000", "memory": "1Ti", "pods": "100000"},
            "capacity": {"cpu": "1000", "memory": "1Ti", "pods": "100000"},
        },
    }


def kwok_nodes(st: State) -> list[dict[str, Any]]:
    return list(_request(st, "GET", f"/api/v1/nodes?labelSelector={LABEL}%3Dtrue")["items"])


def _ready(node: dict[str, Any]) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def up(d: Path, nodes: int = 1, pod_seconds: float = 1.0) -> State:
    """Start kwok against the running cluster in ``d`` (or keep the running one) with ``nodes`` Nodes."""
    st = State.load(d)
    if st is None or not alive(st):
        raise SystemExit(f"localcluster.kwok: no running cluster in {d}: python -m localcluster up --dir {d}")
    if not (BIN / "kwok").exists() or not STAGES_FILE.exists():
        raise SystemExit(f"localcluster.kwok: kwok missing in {BIN}; run localcluster/build.sh first")
    kdir = Path(st.dir) / "kwok"
    pid = running_pid(st)
    if pid is None:
        kdir.mkdir(exist_ok=True)
        (kdir / "kwok.yaml").write_text(stages(pod_seconds))
        args = [
            f"--kubeconfig={st.kubeconfig}",
            f"--config={kdir / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-label-selector={LABEL}=true",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
            "--v=WARN",
        ]
        # Not in the cluster's State (a dead kwok must not make the cluster look dead, and a State
        # saved by another process would drop it): a watchdog shell ends kwok when the cluster's
        # state file goes away, which ``python -m localcluster down`` does when it removes the dir.
        watchdog = (
            '"$0" "$@" & k=$!; trap \'kill $k 2>/dev/null; exit 0\' TERM INT; '
            "while [ -e cluster.json ] && kill -0 $k 2>/dev/null; do sleep 2; done; "
            "kill $k 2>/dev/null; wait $k"
        )
        logs = Path(st.dir) / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / "kwok.log", "ab") as out:
            proc = subprocess.Popen(
                ["sh", "-c", watchdog, str(BIN / "kwok"), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=st.dir,
            )
        pid = proc.pid
        (kdir / "pid").write_text(str(pid))
    have = {n["metadata"]["name"] for n in kwok_nodes(st)}
    for i in range(nodes):
        name = f"{NODE_PREFIX}{i}"
        if name not in have:
            with contextlib.suppress(urllib.error.HTTPError):  # 409: created meanwhile
                _request(st, "POST", "/api/v1/nodes", node_body(name))
    wanted = {f"{NODE_PREFIX}{i}" for i in range(nodes)}
    wait_for(
        f"{nodes} kwok nodes Ready",
        lambda: wanted <= {n["metadata"]["name"] for n in kwok_nodes(st) if _ready(n)},
        60,
        Path(st.dir) / "logs" / "kwok.log",
        pid,
    )
    return st


def running_pid(st: State) -> int | None:
    """kwok's process group (the watchdog shell) if it runs, from ``<dir>/kwok/pid``."""
    return procs.recorded_pid(Path(st.dir) / "kwok" / "pid")


def down(d: Path) -> None:
    """Stop kwok and delete its Nodes (their Pods are then deleted by the garbage collector)."""
    st = State.load(d)
    if st is None:
        return
    pid = running_pid(st)
    if pid is not None:
        procs.stop_group(pid)
    with contextlib.suppress(Exception):
        for n in kwok_nodes(st):
            with contextlib.suppress(urllib.error.HTTPError):
                _request(st, "DELETE", f"/api/v1/nodes/{n['metadata']['name']}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m localcluster.kwok", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down"])
    p.add_argument("--dir", type=Path, default=None, help="the running cluster's data dir")
    p.add_argument("--nodes", type=int, default=1, help="how many kwok Nodes (default 1)")
    p.add_argument(
        "--pod-seconds",
        type=float,
        default=1.0,
        help="how long a Pod on a kwok Node runs before it succeeds (default 1.0; applies when kwok starts)",
    )
    a = p.parse_args(argv)
    d = (a.dir or default_dir()).resolve()
    if a.command == "up":
        t0 = time.monotonic()
        up(d, a.nodes, a.pod_seconds)
        print(
            f"localcluster.kwok: {a.nodes} kwok nodes Ready in {time.monotonic() - t0:.1f}s", file=sys.stderr
        )
    else:
        down(d)


if __name__ == "__main__":
    main()

"""A real node for the local cluster: containerd (CRI, overlayfs, runc) and kubelet v1.37 (issue 18).

``python -m localcluster up --node real`` starts these instead of the node agent. The kubelet
registers the Node and writes every Pod status; nothing of ours does. Images come from
``localcluster/images.py`` (imported into containerd's ``k8s.io`` namespace, pulled never);
any other image name fails with the kubelet's own ErrImagePull. Pods use the node's network
(``hostNetwork``) or a CNI bridge the cluster makes (``batchjob0``, 10.88.0.0/16), whose traffic
stays on this machine.

Facts of this VM the configuration follows: cgroup v1 (the kubelet must be told
``failCgroupV1: false``), no systemd (``cgroupDriver: cgroupfs``), overlay in the kernel, swap
possibly on (``failSwapOn: false``), and root without CAP_SYS_RESOURCE (containerd's
``restrict_oom_score_adj``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from localcluster import images, registry

if TYPE_CHECKING:
    from localcluster.state import State

CONTAINERD_VERSION = "v2.4.2"
CNI_VERSION = "v1.10.0"
BRIDGE = "batchjob0"
POD_SUBNET = "10.88.0.0/16"
# The bridge's own address: the Node's InternalIP (the kubelet refuses a loopback node IP, and
# this VM has no dummy links) and the Pods' gateway to this machine.
NODE_IP = "10.88.0.1"
# Small, so a test can make the kubelet rotate a running container's log several times.
LOG_MAX_BYTES = 1 << 20


def node_dir(cache: Path) -> Path:
    """containerd, its shim, ctr, pause and the CNI plugins (localcluster/build_node.sh). The kubelet
    is built with the control plane (localcluster/build.sh), whose dependencies it shares."""
    return cache / f"node-containerd-{CONTAINERD_VERSION}-cni-{CNI_VERSION}"


def available(cache: Path, kubelet: Path) -> str | None:
    """Why the real node cannot start here, or None."""
    base = node_dir(cache)
    if not (base / ".built").exists():
        return f"node binaries missing in {base}: run localcluster/build_node.sh"
    if not kubelet.exists():
        return f"{kubelet} missing: run localcluster/build.sh"
    if not shutil.which("runc"):
        return "runc not found: apt-get install runc (scripts/setup.sh does)"
    if os.geteuid() != 0:
        return "the kubelet and containerd need root"
    return None


def _containerd_config(d: Path, cni_bin: Path) -> str:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return f"""version = 3
root = "{d / "containerd" / "root"}"
state = "{d / "containerd" / "state"}"

[grpc]
  address = "{d / "containerd.sock"}"

[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{d / "registries"}"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{images.PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # This VM's root lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj to -998
  # ("failed to update /proc/self/oom_score_adj: Permission denied"); keep it at containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{d / "runc"}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{d / "cni" / "net.d"}"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
"""


def _cni_config() -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "batchjob",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves this machine: no NAT to the outside
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]], "routes": []},
            },
            {"type": "loopback"},
        ],
    }


def _kubelet_config(st: State, d: Path, pki: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": st.ports["kubelet"],
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
            "webhook": {"enabled": False},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{d / 'containerd.sock'}",
        "imageServiceEndpoint": f"unix://{d / 'containerd.sock'}",
        "staticPodPath": "",
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "registerNode": True,
        "makeIPTablesUtilChains": False,
        "enforceNodeAllocatable": [],
        "cgroupsPerQOS": True,
        "localStorageCapacityIsolation": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "containerLogMaxSize": f"{LOG_MAX_BYTES >> 20}Mi",
        "containerLogMaxFiles": 5,
        "containerLogMonitorInterval": "3s",
        "syncFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
    }


def bridge() -> None:
    """The Pods' bridge, made before the kubelet starts so the Node has its address at once."""
    ip = ["ip"]
    if subprocess.run([*ip, "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run([*ip, "link", "add", BRIDGE, "type", "bridge"], check=True, capture_output=True)
    subprocess.run([*ip, "addr", "replace", f"{NODE_IP}/16", "dev", BRIDGE], check=True, capture_output=True)
    subprocess.run([*ip, "link", "set", BRIDGE, "up"], check=True, capture_output=True)


def start(st: State, spawn: object, cache: Path, kubelet: Path, node_name: str) -> None:
    """Start containerd, import the local images, start the kubelet (``spawn`` is launch.spawn)."""
    from collections.abc import Callable

    assert callable(spawn)
    run: Callable[..., None] = spawn
    base = node_dir(cache)
    d = Path(st.dir) / "realnode"
    for sub in ("containerd/root", "containerd/state", "cni/net.d", "kubelet", "logs", "runc"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    bridge()
    # Every registry resolves to ours on loopback (localcluster/registry.py), serving the images
    # built here: pulls are real pulls, an image not built here is a real ErrImagePull, and no
    # pull leaves this machine (not even its DNS lookup).
    from localcluster.launch import free_port
    from localcluster.state import ROOT

    archives = images.build_all(cache, base / "bin")
    store = cache / "images" / "store"
    for archive in archives:
        registry.add_archive(store, archive)
    port = st.ports.setdefault("registry", free_port())
    run(
        st,
        "registry",
        [sys.executable, "-m", "localcluster.registry", "--store", str(store), "--port", str(port)],
        env={"PYTHONPATH": str(ROOT)},
    )
    server = f"http://127.0.0.1:{port}"
    (d / "registries" / "_default").mkdir(parents=True, exist_ok=True)
    (d / "registries" / "_default" / "hosts.toml").write_text(
        f'server = "{server}"\n\n[host."{server}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    (d / "containerd.toml").write_text(_containerd_config(d, base / "cni"))
    (d / "cni" / "net.d" / "10-batchjob.conflist").write_text(json.dumps(_cni_config(), indent=1))
    run(
        st,
        "containerd",
        [str(base / "bin" / "containerd"), "--config", str(d / "containerd.toml")],
        env={"PATH": f"{base / 'bin'}:{os.environ.get('PATH', '')}"},
    )
    sock = d / "containerd.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"containerd did not start: see {Path(st.dir) / 'logs' / 'containerd.log'}")
        time.sleep(0.1)
    images.import_all(base / "bin" / "ctr", str(sock), archives)
    pki = Path(st.dir) / "pki"
    kubelet_config = _kubelet_config(st, d, pki)
    if os.environ.get("BATCHJOB_NODE_PRIVATE"):  # a second real node on this machine (nodefaults.py)
        from localcluster import nodefaults

        kubelet_config.update(nodefaults.private_kubelet(Path(st.dir)))
    (d / "kubelet.yaml").write_text(json.dumps(kubelet_config, indent=1))
    run(
        st,
        "kubelet",
        [
            str(kubelet),
            f"--config={d / 'kubelet.yaml'}",
            f"--kubeconfig={st.kubeconfig}",
            f"--root-dir={d / 'kubelet'}",
            f"--hostname-override={node_name}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
        env={"PATH": f"{base / 'bin'}:{os.environ.get('PATH', '')}"},
    )


def sweep(d: Path) -> None:
    """After ``down`` killed containerd and the kubelet: stop the shims and the containers they
    ran and unmount what they mounted under the data dir. The bridge stays (one real node per
    machine at a time: the bridge and its subnet are fixed)."""
    root = str((d / "realnode").resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmdline and root in cmdline:
            subprocess.run(["kill", "-9", "--", f"-{proc.name}"], check=False, capture_output=True)
            subprocess.run(["kill", "-9", proc.name], check=False, capture_output=True)
    # The runc shim keeps each containerd namespace's containers under <root>/<namespace> (k8s.io).
    runc_root = d / "realnode" / "runc"
    for ns_root in [p for p in runc_root.iterdir() if p.is_dir()] if runc_root.exists() else []:
        for container in ns_root.iterdir():
            subprocess.run(
                ["runc", "--root", str(ns_root), "delete", "--force", container.name],
                check=False,
                capture_output=True,
            )
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(root)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    from localcluster import nodefaults

    nodefaults.remove_cgroups(d)

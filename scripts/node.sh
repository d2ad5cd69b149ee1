# Sourced by demo.sh and test.sh (after the venv is on PATH): whether this machine can run the
# real node (kubelet + containerd, localcluster/realnode.py).
#
# real_node_why: prints why the real node cannot run here, or nothing when it can.
real_node_why() {
  python -c 'from localcluster import cluster, realnode; print(realnode.available(cluster.CACHE, cluster.BIN / "kubelet") or "")'
}

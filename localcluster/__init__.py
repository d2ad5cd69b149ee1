"""The embedded local cluster: a real Kubernetes control plane, a node agent and brokers on loopback."""

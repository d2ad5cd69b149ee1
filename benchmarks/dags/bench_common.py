"""Shared by the benchmark's DAG files (one DAG per file, so a task parses only its own)."""

from __future__ import annotations

import os

ITEMS = int(os.environ.get("BENCH_ITEMS", "3"))
PEER_SIZES = [int(x) for x in os.environ.get("BENCH_PEER_SIZES", "2").split(",") if x]
LARGE_ITEMS = int(os.environ.get("BENCH_LARGE_ITEMS", "5"))
LARGE_PARALLELISM = int(os.environ.get("BENCH_LARGE_PARALLELISM", "500"))
POD_SECONDS = os.environ.get("BENCH_POD_SECONDS", "1")
ENABLED = os.environ.get("BENCH_ENABLE", "") != ""
KWOK_LABEL = "batchjob.local/kwok"  # localcluster.kwok.LABEL (not imported: keeps parsing cheap)
NODE_SELECTOR = {KWOK_LABEL: "true"}
TOLERATIONS = [{"key": KWOK_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
ANNOTATIONS = {"pod-complete.stage.kwok.x-k8s.io/delay": f"{POD_SECONDS}s"}  # kwok's run time per Pod
COMMAND = ["sh", "-c", "echo $ITEM"]
IMAGE = "busybox:1.36"
NAMESPACE = "{{ " + "dag_run.conf['namespace'] }}"  # a fresh namespace per run, made by the benchmark


def items(n: int) -> list[str]:
    return [f"item-{i:05d}" for i in range(n)]


def job_template() -> dict[str, object]:
    pod = {
        "restartPolicy": "Never",
        "nodeSelector": NODE_SELECTOR,
        "tolerations": TOLERATIONS,
        "containers": [{"name": "main", "image": IMAGE}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"metadata": {"annotations": ANNOTATIONS}, "spec": pod}},
    }

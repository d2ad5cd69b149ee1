"""Smoke runs of the kwok benchmarks with tiny sizes, so they cannot rot (no timing is asserted).

Each runs the benchmark's own command against the session's local cluster; the benchmark starts
kwok itself (``localcluster/kwok.py``). Exit code 1 means a target was missed, which at these
sizes says nothing; 2 or a traceback means the benchmark is broken.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as lc

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module", autouse=True)
def _no_kwok_nodes_after(local_cluster: lc.State) -> Iterator[None]:
    """Stop kwok and delete its Nodes after these tests: later tests see only the node agent's Node."""
    yield
    from localcluster import kwok

    kwok.down(Path(local_cluster.dir))


def run(script: str, st: lc.State, tmp_path: Path, *args: str, timeout: float) -> dict[str, Any]:
    out_json = tmp_path / f"{script}.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--dir", st.dir, "--json", str(out_json), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    report = f"exit {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}"
    assert out.returncode in (0, 1), report
    assert "x" in out.stdout.strip().splitlines()[-1], report  # the last line states the ratio
    return dict(json.loads(out_json.read_text()))


def test_kwok_nodes_take_only_tolerating_pods(
    local_cluster: lc.State, api_client: Any, namespace: str
) -> None:
    """A Job's Pod with the kwok placement succeeds on a kwok Node; the node agent's Node has no taint."""
    from kubernetes import client

    from localcluster import kwok

    kwok.up(Path(local_cluster.dir), 1)
    core = client.CoreV1Api(api_client)
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert lc.NODE_NAME in nodes and f"{kwok.NODE_PREFIX}0" in nodes
    taints = nodes[f"{kwok.NODE_PREFIX}0"].spec.taints or []
    assert [(t.key, t.effect) for t in taints] == [(kwok.LABEL, "NoSchedule")]
    assert not nodes[lc.NODE_NAME].spec.taints
    job = {
        "metadata": {"name": "on-kwok"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {kwok.DELAY_ANNOTATION: "1s"}},
                "spec": {
                    "restartPolicy": "Never",
                    **kwok.pod_placement(),
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["false"]}],
                },
            },
        },
    }
    client.BatchV1Api(api_client).create_namespaced_job(namespace, job)
    seen: set[str] = set()
    pod = None
    for _ in range(300):
        pods = core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=on-kwok"
        ).items
        if pods:
            pod = pods[0]
            seen.add(pod.status.phase)
            if pod.status.phase == "Succeeded":
                break
        time.sleep(0.1)
    assert pod is not None and pod.spec.node_name.startswith(kwok.NODE_PREFIX)
    assert pod.status.phase == "Succeeded" and "Running" in seen  # `false` never ran: kwok played it


def test_fanout_smoke(local_cluster: lc.State, tmp_path: Path) -> None:
    r = run(
        "fanout.py",
        local_cluster,
        tmp_path,
        "--items", "3", "--peer-items", "2", "--large-items", "4", "--parallelism", "4",
        "--pod-seconds", "0.2", "--rounds", "1", "--no-warmup",
        timeout=240,
    )  # fmt: skip
    res = r["results"]
    assert set(res) == {"bare#1", "jobgroup#1", "indexed#1", "large", "peer2"}
    for kind, one in res.items():
        if kind != "peer2":  # Airflow may fail a mapped task of the peer's (see fanout.py); not ours
            assert one["state"] == "success", (kind, one)
    assert res["large"]["xcom_bytes"] > 0
    assert set(r["ratios"]) == {"peer/jobgroup", "peer/indexed", "jobgroup/bare", "indexed/bare"}


def test_trigger_memory_smoke(local_cluster: lc.State, tmp_path: Path) -> None:
    r = run("trigger_memory.py", local_cluster, tmp_path, "--jobs", "3", "--hold", "1", timeout=180)
    for contender in ("ours", "ours-logs", "peer"):
        one = r["results"][contender]
        assert one["events"] == 3, one
        assert one["rss_peak_mb"] > 0
    assert r["results"]["ours"]["statuses"] == {"met/succeeded": 3}
    assert r["results"]["ours-logs"]["statuses"] == {"met/succeeded": 3}

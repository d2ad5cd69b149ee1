"""Shared helpers of the benchmarks: the running local cluster, its connections, tables, statistics.

Importing this module puts the repository root on ``sys.path`` (for ``localcluster``) and gives
Airflow a private ``AIRFLOW_HOME`` before anything imports Airflow. The benchmarks never start a
cluster themselves: start one with ``python -m localcluster up --dir D`` and pass ``--dir D``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if "AIRFLOW_HOME" not in os.environ:  # one private home for every run, not a new temp dir each time
    _home = Path(tempfile.gettempdir()) / "batchjob-bench-airflow"
    _home.mkdir(mode=0o700, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(_home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from localcluster import cluster as lc  # noqa: E402  (needs the path above)

State = lc.State


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("BATCHJOB_CLUSTER_DIR", "/tmp/bench")),
        help="data dir of a running local cluster (python -m localcluster up --dir D); "
        "default $BATCHJOB_CLUSTER_DIR or /tmp/bench",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    return p


def load_cluster(d: Path) -> lc.State:
    """The running cluster in ``d``, with its connections exported to this process's environment."""
    st = lc.State.load(d.resolve())
    if st is None or not lc.alive(st):
        raise SystemExit(
            f"no running local cluster in {d}: start one with python -m localcluster up --dir {d}"
        )
    os.environ.update(st.connections())
    return st


def api_get(st: lc.State, path: str) -> bytes:
    return lc.api_get(st, path)


def redis_url(st: lc.State) -> str:
    return f"redis://:{st.redis_password}@127.0.0.1:{st.ports['redis']}/0"


def amqp_url(st: lc.State) -> str:
    return f"amqp://{st.rabbitmq_user}:{st.rabbitmq_password}@127.0.0.1:{st.ports['rabbitmq']}/%2F"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- Kubernetes -----------------------------------------------------------------------------


def sync_api(st: lc.State) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=st.kubeconfig)


@contextmanager
def namespace(st: lc.State, prefix: str) -> Iterator[str]:
    """A fresh namespace (ready once its default ServiceAccount exists), deleted afterwards."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = sync_api(st)
    core = client.CoreV1Api(api)
    name = unique(prefix)
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def peer_trigger(name: str, namespace: str, **kwargs: Any) -> Any:
    """The peer's ``KubernetesJobTrigger`` on one Job, as ``KubernetesJobOperator`` defers to it
    (its default ``poll_interval``, 10 s; no Pods of its own to follow)."""
    from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger

    return KubernetesJobTrigger(
        job_name=name,
        job_namespace=namespace,
        pod_names=[],
        pod_namespace=namespace,
        base_container_name="main",
        kubernetes_conn_id="kubernetes_default",
        **kwargs,
    )


def sleeper_job(name: str, seconds: int) -> dict[str, Any]:
    """A Job whose one Pod runs ``sleep <seconds>`` (a real process started by the node agent)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "main", "image": "busybox:1.36", "command": ["sleep", str(seconds)]}
                    ],
                }
            },
        },
    }


# -- statistics and output ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default); NaN for no values."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes into RESULTS.md as is); floats formatted by the caller."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            + " |"
        )

    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def header(title: str) -> None:
    m = machine()
    print(f"# {title}")
    print(
        f"machine: nproc={m['nproc']} ({m['cpu']}), RAM {m['ram_gib']} GiB, kernel {m['kernel']}, "
        f"Python {m['python']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print()

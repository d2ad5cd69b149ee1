"""Waiting on N Jobs at once in one triggerer-like process: RSS and open connections to the apiserver.

For each contender, N Jobs are created in a fresh namespace, each with one Pod on a kwok Node
(``localcluster/kwok.py``) that runs ``--hold`` seconds and then succeeds. A separate child
process then does what a triggerer does with N deferred tasks: one asyncio task per trigger,
iterating ``trigger.run()`` until it yields its event:

- ours: ``airflow_batchjob.triggers.job.JobTrigger`` with ``diagnostics=True``, as the operators defer it
  (``--no-diagnostics``: the trigger's own default); all share one namespace watch;
- ours-logs: the same with the Pod log streams of ``get_logs=True`` (operators' default): at most
  5 streams per trigger and 50 per process (``triggers/podlogs.py``). kwok serves no container
  logs, so each stream is refused and retried until its Pod ends: this measures the budget
  (connections, RSS of the stream machinery), not log throughput;
- peer: ``airflow.providers.cncf.kubernetes.triggers.job.KubernetesJobTrigger`` with its
  default ``poll_interval=10`` (what ``KubernetesJobOperator(deferrable=True)`` defers to).

The child samples itself every 0.25 s: RSS (``VmRSS``), and its TCP connections to the
apiserver's port (psutil). It reports the RSS after the imports (the baseline: Airflow's trigger
base, the kubernetes clients), the peak while waiting, the connections (max and mean), its CPU
time, and the events. A real triggerer also holds Airflow's job runner, DB session and
supervisor; the baseline here is the floor, the increment is the triggers' own cost.

Usage: ``python benchmarks/trigger_memory.py --dir /tmp/bench [--jobs 1000] [--hold 45]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common as c

from localcluster import kwok
from localcluster.state import KWOK_VERSION

TARGET_RSS_MB = 150.0
MAX_CONNECTIONS = 3


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(contender: str, namespace: str, n: int, port: int, timeout: float, diagnostics: bool = True) -> int:
    """Run N triggers of ``contender`` in this process; print one JSON line of measurements."""
    import psutil

    for name in ("airflow", "kubernetes_asyncio", "airflow_batchjob", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from airflow_batchjob.triggers.job import JobTrigger

    proc = psutil.Process()

    def conns() -> int:
        return sum(
            1
            for k in proc.net_connections(kind="tcp")
            if k.raddr and k.raddr.port == port and k.status == psutil.CONN_ESTABLISHED
        )

    baseline = rss_mb()
    names = [f"job-{i:05d}" for i in range(n)]

    logs = {"containers": None, "max_streams": 5, "max_lines": 1000, "tail_lines": 50}

    def make(name: str) -> Any:
        if contender == "ours":  # as the operators defer: diagnostics on unless --no-diagnostics
            return JobTrigger(namespace=namespace, job_name=name, diagnostics=diagnostics)
        if contender == "ours-logs":  # and with the Pod log streams operators turn on (get_logs)
            return JobTrigger(namespace=namespace, job_name=name, diagnostics=diagnostics, logs=logs)
        return c.peer_trigger(name, namespace)

    async def main() -> dict[str, Any]:
        events: dict[str, Any] = {}
        samples: list[tuple[float, float, int]] = []
        t0 = time.monotonic()

        async def one(name: str) -> None:
            async for ev in make(name).run():
                events[name] = ev.payload
                return

        async def sampler() -> None:
            while len(events) < n:
                samples.append((time.monotonic() - t0, rss_mb(), conns()))
                await asyncio.sleep(0.25)

        s = asyncio.create_task(sampler())
        tasks = [asyncio.create_task(one(nm)) for nm in names]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await s
        samples.append((time.monotonic() - t0, rss_mb(), conns()))
        statuses: dict[str, int] = {}
        for ev in events.values():
            key = str(ev.get("status"))
            if contender.startswith("ours") and ev.get("job"):
                key += "/" + str(ev["job"].get("state"))
            statuses[key] = statuses.get(key, 0) + 1
        return {
            "seconds": time.monotonic() - t0,
            "events": len(events),
            "statuses": statuses,
            "samples": samples,
        }

    out = asyncio.run(main())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    conn_values = [s[2] for s in out["samples"]]
    out.update(
        contender=contender,
        jobs=n,
        rss_baseline_mb=baseline,
        rss_peak_mb=max(s[1] for s in out["samples"]),
        vm_hwm_mb=_hwm_mb(),
        connections_max=max(conn_values),
        connections_mean=sum(conn_values) / len(conn_values),
        cpu_seconds=ru.ru_utime + ru.ru_stime,
    )
    print(json.dumps(out), flush=True)
    return 0


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def job_body(name: str, hold: float) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {kwok.DELAY_ANNOTATION: f"{hold:g}s"}},
                "spec": {
                    "restartPolicy": "Never",
                    **kwok.pod_placement(),
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
        },
    }


def run_contender(
    st: c.State, d: Path, contender: str, n: int, hold: float, timeout: float, no_diag: bool = False
) -> dict[str, Any]:
    from kubernetes import client

    with c.namespace(st, f"bench-trig-{contender}") as ns:
        batch = client.BatchV1Api(c.sync_api(st))
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(lambda i: batch.create_namespaced_job(ns, job_body(f"job-{i:05d}", hold)), range(n))
            )
        created = time.monotonic() - t0
        load = os.getloadavg()
        out = subprocess.run(
            [sys.executable, __file__, "--dir", str(d), "--child", contender, "--namespace", ns,
             "--jobs", str(n), "--timeout", str(timeout), *(["--no-diagnostics"] if no_diag else [])],
            capture_output=True, text=True, timeout=timeout + 120, check=False,
        )  # fmt: skip
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"{contender} child failed ({out.returncode}): {out.stderr[-3000:]}")
        r: dict[str, Any] = json.loads(lines[-1])
        r.update(create_seconds=created, load_before=load)
        return r


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--hold", type=float, default=45.0, help="seconds each Pod runs on kwok (default 45)")
    p.add_argument("--timeout", type=float, default=600.0, help="per contender (s)")
    p.add_argument("--kwok-nodes", type=int, default=2)
    p.add_argument("--only", default="ours,ours-logs,peer")
    p.add_argument(
        "--no-diagnostics", action="store_true", help="ours without wait diagnostics (the trigger's default)"
    )
    p.add_argument("--child", choices=["ours", "ours-logs", "peer"], help=argparse_hidden())
    p.add_argument("--namespace", help=argparse_hidden())
    a = p.parse_args()
    st = c.load_cluster(a.dir)
    port = st.ports["apiserver"]
    if a.child:
        return child(a.child, a.namespace, a.jobs, port, a.timeout, not a.no_diagnostics)
    c.header(f"Waiting on {a.jobs} Jobs at once in one process: RSS and connections to the apiserver")
    kwok.up(a.dir.resolve(), a.kwok_nodes)
    k8s = json.loads(c.api_get(st, "/version"))["gitVersion"]
    print(f"kube-apiserver {k8s}, kwok {KWOK_VERSION}; Pods on kwok run {a.hold:g}s\n")
    results: dict[str, Any] = {}
    for contender in a.only.split(","):
        print(f"  {contender}: {a.jobs} triggers ... (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        r = run_contender(st, a.dir, contender, a.jobs, a.hold, a.timeout, a.no_diagnostics)
        results[contender] = r
        print(
            f"    RSS {r['rss_baseline_mb']:.0f} -> {r['rss_peak_mb']:.0f} MB, "
            f"connections max {r['connections_max']}, events {r['events']} {r['statuses']}",
            file=sys.stderr,
        )
    rows = [
        [
            k,
            str(r["jobs"]),
            f"{r['rss_baseline_mb']:.1f}",
            f"{r['rss_peak_mb']:.1f}",
            f"{r['rss_peak_mb'] - r['rss_baseline_mb']:.1f}",
            str(r["connections_max"]),
            f"{r['connections_mean']:.1f}",
            f"{r['cpu_seconds']:.1f}",
            f"{r['seconds']:.1f}",
            json.dumps(r["statuses"], sort_keys=True),
            f"{r['load_before'][0]:.2f}",
        ]
        for k, r in results.items()
    ]
    head = [
        "contender",
        "triggers",
        "RSS after imports (MB)",
        "peak RSS (MB)",
        "increment (MB)",
        "conns max",
        "conns mean",
        "CPU s",
        "wall s",
        "events",
        "load",
    ]
    print(c.table(head, rows))
    print()
    for r in results.values():
        r["samples"] = r["samples"][:: max(1, len(r["samples"]) // 400)]  # keep the JSON small
    c.write_json(a.json, {"machine": c.machine(), "kubernetes": k8s, "args": vars(a), "results": results})
    ok = all(r["events"] == r["jobs"] for r in results.values())
    ours = results.get("ours")
    if ours is None:
        return 0 if ok else 2
    # bounded: one watch per kind (Jobs; with diagnostics Pods and Events too), whatever the trigger count
    met = ours["rss_peak_mb"] < TARGET_RSS_MB and ours["connections_max"] <= MAX_CONNECTIONS
    line = (
        f"ours: peak RSS {ours['rss_peak_mb']:.0f} MB (target < {TARGET_RSS_MB:g}), "
        f"connections max {ours['connections_max']} (target <= {MAX_CONNECTIONS}) -> {c.verdict(met)}"
    )
    peer = results.get("peer")
    if peer:
        line += (
            f"; peer/ours: RSS increment {_ratio(peer, ours, 'inc')}x, "
            f"connections max {peer['connections_max']} vs {ours['connections_max']}, "
            f"CPU {peer['cpu_seconds'] / max(ours['cpu_seconds'], 0.01):.1f}x"
        )
    print(line)
    if not ok:
        return 2
    return 0 if met else 1


def _ratio(peer: dict[str, Any], ours: dict[str, Any], what: str) -> str:
    pi = peer["rss_peak_mb"] - peer["rss_baseline_mb"]
    oi = ours["rss_peak_mb"] - ours["rss_baseline_mb"]
    return f"{pi / oi:.1f}" if oi > 0 else "inf"


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())

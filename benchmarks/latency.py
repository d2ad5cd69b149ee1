"""Completion latency: from the Job's decisive condition to the moment the waiter returns.

Each Job runs ``sleep 1`` as a real process on the node agent. Jobs are created ``--stagger``
seconds apart; each waiter starts right after its Job is created, as an operator would.

- ours: ``airflow_batchjob.triggers.job.wait_for_job`` (all waiters of the phase share the one
  namespace watch, as in a triggerer), timed from ``SuccessCriteriaMet``, the condition it acts on;
- peer: ``airflow.providers.cncf.kubernetes.triggers.job.KubernetesJobTrigger`` with its default
  ``poll_interval`` (10 s: it calls ``AsyncKubernetesHook.wait_until_job_complete``), timed from
  ``Complete``, the condition it waits for (and, for reference, from ``SuccessCriteriaMet``).

Two clocks for "the condition happened":
- ``lastTransitionTime``: written by the Job controller with 1 s resolution (truncated), so a
  latency measured from it overstates the true latency by 0 to 1 s;
- a watch in a separate process (``--watcher``), which records when the event carrying the
  condition arrived (``time.time()``, same host clock): the finer reference.

Usage: ``python benchmarks/latency.py --dir /tmp/bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common as c

JOBS = 20
SLEEP_SECONDS = 1


# -- the reference watcher (a separate process) ---------------------------------------------


def watcher(d: Path, namespace: str) -> int:
    """Print one JSON line per (Job, condition type) when a watch event first shows it True."""
    from kubernetes import client

    st = c.load_cluster(d)
    batch = client.BatchV1Api(c.sync_api(st))
    seen: set[tuple[str, str]] = set()
    rv = batch.list_namespaced_job(namespace).metadata.resource_version
    print(json.dumps({"ready": True}), flush=True)
    while True:
        resp = batch.list_namespaced_job(
            namespace, watch=True, resource_version=rv, timeout_seconds=600, _preload_content=False
        )
        buf = b""
        for chunk in resp.stream(65536):
            arrived = time.time()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                ev = json.loads(line)
                obj = ev["object"]
                if ev["type"] == "ERROR":
                    return 1
                rv = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                for cond in (obj.get("status") or {}).get("conditions") or []:
                    key = (name, cond["type"])
                    if cond["status"] == "True" and key not in seen:
                        seen.add(key)
                        out = {
                            "t": arrived,
                            "job": name,
                            "type": cond["type"],
                            "ltt": cond["lastTransitionTime"],
                        }
                        print(json.dumps(out), flush=True)


class Watcher:
    """Runs :func:`watcher` in a child process and collects its lines."""

    def __init__(self, d: Path, namespace: str) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--dir", str(d), "--watcher", namespace]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first or not json.loads(first).get("ready"):
            raise RuntimeError("the reference watcher did not start")
        self.events: dict[tuple[str, str], float] = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events[(ev["job"], ev["type"])] = ev["t"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)


# -- the two waiters ------------------------------------------------------------------------


async def _create(api: Any, namespace: str, name: str) -> str:
    from kubernetes_asyncio import client as aclient

    job = await aclient.BatchV1Api(api).create_namespaced_job(namespace, c.sleeper_job(name, SLEEP_SECONDS))
    return str(job.metadata.uid)


async def run_ours(namespace: str, jobs: int, stagger: float) -> dict[str, dict[str, Any]]:
    from airflow_batchjob.hooks.batchjob import async_api_client
    from airflow_batchjob.triggers.job import wait_for_job

    async with async_api_client("kubernetes_default") as api:

        async def one(k: int) -> tuple[str, dict[str, Any]]:
            await asyncio.sleep(k * stagger)
            name = f"ours-{k:02d}"
            await _create(api, namespace, name)
            # No job_uid: with it, a waiter that joins the already-open shared watch before the
            # watch delivered its Job's ADDED event finds the Job missing from the watch's snapshot
            # and returns "deleted" at once (seen here; see RESULTS.md). By name it waits for it.
            event = await wait_for_job(namespace=namespace, job_name=name)
            returned = time.time()
            if event["job"] is None:
                raise RuntimeError(f"{name}: {event}")
            return name, {"returned": returned, "status": event["status"], "state": event["job"]["state"]}

        return dict(await asyncio.gather(*(one(k) for k in range(jobs))))


async def run_peer(namespace: str, jobs: int, stagger: float, jitter: float) -> dict[str, dict[str, Any]]:

    from airflow_batchjob.hooks.batchjob import async_api_client

    rng = random.Random(1)
    async with async_api_client("kubernetes_default") as api:

        async def one(k: int) -> tuple[str, dict[str, Any]]:
            await asyncio.sleep(k * stagger)
            name = f"peer-{k:02d}"
            await _create(api, namespace, name)
            if jitter:  # a deferral delay: the trigger starts polling at a random phase
                await asyncio.sleep(rng.uniform(0, jitter))
            trigger = c.peer_trigger(name, namespace, get_logs=False, do_xcom_push=False)
            async for event in trigger.run():
                returned = time.time()
                return name, {
                    "returned": returned,
                    "status": event.payload["status"],
                    "poll_interval": trigger.poll_interval,
                }
            raise RuntimeError(f"{name}: the trigger yielded nothing")

        return dict(await asyncio.gather(*(one(k) for k in range(jobs))))


# -- analysis -------------------------------------------------------------------------------


def conditions(st: c.State, namespace: str) -> dict[str, dict[str, float]]:
    """lastTransitionTime (epoch seconds) of each True condition of each Job, read at the end."""
    from kubernetes import client

    out: dict[str, dict[str, float]] = {}
    for job in client.BatchV1Api(c.sync_api(st)).list_namespaced_job(namespace).items:
        out[job.metadata.name] = {
            cond.type: cond.last_transition_time.timestamp()
            for cond in job.status.conditions or []
            if cond.status == "True"
        }
    return out


def latencies(
    waits: dict[str, dict[str, Any]],
    ltt: dict[str, dict[str, float]],
    seen: dict[tuple[str, str], float],
    condition: str,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ltt": [], "watch": []}
    for name, w in sorted(waits.items()):
        out["ltt"].append(w["returned"] - ltt[name][condition])
        out["watch"].append(w["returned"] - seen[(name, condition)])
    return out


def fmt(x: float) -> str:
    return f"{x * 1000:,.0f} ms" if abs(x) < 10 else f"{x:.1f} s"


def stats_row(label: str, values: list[float]) -> list[str]:
    return [
        label,
        str(len(values)),
        fmt(c.percentile(values, 50)),
        fmt(c.percentile(values, 95)),
        fmt(min(values)),
        fmt(max(values)),
    ]


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=JOBS)
    p.add_argument("--stagger", type=float, default=1.0, help="seconds between Job creations")
    p.add_argument(
        "--peer-start-jitter",
        type=float,
        default=0.0,
        help="start each peer trigger a random 0..S s after its Job's creation (default 0: right after, "
        "so its 10 s polls have a fixed phase relative to a Job of fixed duration)",
    )
    p.add_argument("--watcher", metavar="NAMESPACE", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.watcher:
        return watcher(a.dir, a.watcher)
    logging.getLogger("airflow").setLevel(logging.WARNING)
    st = c.load_cluster(a.dir)
    c.header("Completion latency: decisive condition -> waiter returns")
    import airflow.providers.cncf.kubernetes as peer_pkg

    from airflow_batchjob import __version__ as ours_version

    k8s = json.loads(c.api_get(st, "/version"))["gitVersion"]
    print(
        f"versions: kube-apiserver/kube-controller-manager {k8s}, airflow-batchjob {ours_version}, "
        f"apache-airflow-providers-cncf-kubernetes {peer_pkg.__version__}"
    )
    print(f"{a.jobs} Jobs per waiter, each one Pod running `sleep {SLEEP_SECONDS}` (a real process), "
          f"created {a.stagger:g} s apart; peer triggers start {a.peer_start_jitter:g} s (max, uniform) "
          "after creation\n")  # fmt: skip
    with c.namespace(st, "bench-lat") as ns:
        w = Watcher(a.dir, ns)
        try:
            t0 = time.monotonic()
            ours = asyncio.run(run_ours(ns, a.jobs, a.stagger))
            t_ours = time.monotonic() - t0
            print(f"  ours: {a.jobs} Jobs in {t_ours:.1f} s", file=sys.stderr)
            t0 = time.monotonic()
            peer = asyncio.run(run_peer(ns, a.jobs, a.stagger, a.peer_start_jitter))
            t_peer = time.monotonic() - t0
            print(f"  peer: {a.jobs} Jobs in {t_peer:.1f} s", file=sys.stderr)
            time.sleep(1)  # let the watcher's last lines in
        finally:
            w.stop()
        ltt = conditions(st, ns)
    bad = [n for n, r in ours.items() if (r["status"], r["state"]) != ("met", "succeeded")]
    bad += [n for n, r in peer.items() if r["status"] != "success"]
    if bad:
        print(f"unexpected outcomes: {bad}")
        return 1
    ours_l = latencies(ours, ltt, w.events, "SuccessCriteriaMet")
    peer_l = latencies(peer, ltt, w.events, "Complete")
    peer_scm = latencies(peer, ltt, w.events, "SuccessCriteriaMet")
    names = sorted(ltt)
    gap_watch = [w.events[(n, "Complete")] - w.events[(n, "SuccessCriteriaMet")] for n in names]
    gap_ltt = [ltt[n]["Complete"] - ltt[n]["SuccessCriteriaMet"] for n in names]
    head = ["waiter, measured from", "n", "p50", "p95", "min", "max"]
    rows = [
        stats_row("ours (wait_for_job): SuccessCriteriaMet lastTransitionTime (1 s res.)", ours_l["ltt"]),
        stats_row("ours (wait_for_job): SuccessCriteriaMet watch-event arrival", ours_l["watch"]),
        stats_row("peer (KubernetesJobTrigger, 10 s poll): Complete lastTransitionTime", peer_l["ltt"]),
        stats_row("peer (KubernetesJobTrigger, 10 s poll): Complete watch-event arrival", peer_l["watch"]),
        stats_row("peer (KubernetesJobTrigger, 10 s poll): SuccessCriteriaMet watch-event arrival",
                  peer_scm["watch"]),
    ]  # fmt: skip
    print(c.table(head, rows))
    print()
    print(
        "SuccessCriteriaMet -> Complete gap (all 40 Jobs): watch arrival p50 "
        f"{fmt(c.percentile(gap_watch, 50))}, max {fmt(max(gap_watch))}; lastTransitionTime equal in "
        f"{sum(1 for g in gap_ltt if g == 0)}/{len(gap_ltt)}"
    )
    for ref, label in (("ltt", "lastTransitionTime"), ("watch", "watch-event arrival")):
        ratio_p50 = c.percentile(peer_l[ref], 50) / c.percentile(ours_l[ref], 50)
        ratio_p95 = c.percentile(peer_l[ref], 95) / c.percentile(ours_l[ref], 95)
        print(f"ratio peer / ours, each from its {label}: p50 {ratio_p50:,.0f}x, p95 {ratio_p95:,.0f}x")
    c.write_json(
        a.json,
        {
            "machine": c.machine(),
            "kubernetes": k8s,
            "ours": ours,
            "peer": peer,
            "ltt": ltt,
            "watch_arrival": {f"{k[0]}/{k[1]}": v for k, v in w.events.items()},
            "latency": {"ours": ours_l, "peer_complete": peer_l, "peer_scm": peer_scm},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

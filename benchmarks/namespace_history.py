"""What a wait costs in a namespace full of finished Jobs: one wait, and 1,000, beside the peer's.

A daily 1,000-item ``JobGroupOperator`` with the default ``delete_on_finish="never"`` and no TTL
leaves 1,000 finished Jobs (and their Pods) a day. This script fills namespaces with ``H``
finished Jobs each (``--history``, default 0, 5,000 and 50,000), each with its Pod on a kwok Node,
labelled as a ``JobGroupOperator``'s (one group of 1,000 a "day"). The namespaces are kept
(``hist-<H>``) and reused by the next run; ``--cleanup`` deletes them.

Then, in each namespace, a fresh child process does what a triggerer does, and measures itself:

- ``one``: one wait on a new Job of the same kind, already finished when the wait starts (what
  is measured is the wait's own cost, not the Job's run time);
- ``many``: ``--waits`` (1,000) waits at once on new Jobs whose Pods run ``--hold`` seconds.

Contenders: ours, ``JobTrigger(diagnostics=True)`` as the operators defer it; ``ours-logs``, the
same with the Pod log streams ``get_logs=True`` adds (it joins the Pod watch at once); the peer,
``KubernetesJobTrigger`` (its default ``poll_interval=10``, what ``KubernetesJobOperator
(deferrable=True)`` defers to). The child reports the RSS after its imports, the peak RSS while
waiting (``VmHWM``, reset after the imports through ``/proc/self/clear_refs``), the time to the
last outcome, and, counted by an aiohttp trace on every HTTP request the process makes, the
requests by kind (LIST, GET, WATCH) and the response bytes of LISTs and GETs.

Usage: ``python benchmarks/namespace_history.py --dir D [--history 0,5000,50000] [--waits 1000]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import _history as hist

from localcluster import kwok
from localcluster.state import KWOK_VERSION

GOAL_MB, GOAL_S = 10.0, 1.0  # one wait in the largest namespace against the empty one
# -- the child: one triggerer-like process ----------------------------------------------------


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _trace(counts: dict[str, int]) -> None:
    """Count every HTTP request of this process, and the bytes of its LIST/GET responses."""
    import aiohttp

    tc = aiohttp.TraceConfig()

    def kind(method: str, url: Any) -> str:
        if "watch" in url.query:
            return "WATCH"
        last = url.path.rstrip("/").rsplit("/", 1)[-1]
        return "LIST" if method == "GET" and last in ("jobs", "pods", "events") else method

    async def start(_s: Any, ctx: Any, params: Any) -> None:
        ctx.kind = kind(params.method, params.url)
        counts[ctx.kind] = counts.get(ctx.kind, 0) + 1

    async def chunk(_s: Any, ctx: Any, params: Any) -> None:
        if ctx.kind != "WATCH":
            counts["bytes"] = counts.get("bytes", 0) + len(params.chunk)

    tc.on_request_start.append(start)
    tc.on_response_chunk_received.append(chunk)
    init = aiohttp.ClientSession.__init__

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or []), tc]
        init(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = patched  # type: ignore[method-assign]


def child(contender: str, namespace: str, names: list[str], timeout: float) -> int:
    import logging

    for name in ("airflow", "kubernetes_asyncio", "airflow_batchjob", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if contender == "before":  # the package as it was (``--before-src``), e.g. from ``git archive``
        sys.path.insert(0, os.environ["BENCH_BEFORE_SRC"])

    from airflow_batchjob.triggers.job import JobTrigger

    counts: dict[str, int] = {}
    _trace(counts)
    logs = {"containers": None, "max_streams": 5, "max_lines": 1000, "tail_lines": 50}

    def make(name: str) -> Any:
        if contender.startswith("ours") or contender == "before":
            extra = {"logs": logs} if contender == "ours-logs" else {}
            return JobTrigger(namespace=namespace, job_name=name, diagnostics=True, settle_seconds=0, **extra)
        return c.peer_trigger(name, namespace)

    import psutil

    proc, port = psutil.Process(), ST.ports["apiserver"]

    def conns() -> int:
        return sum(
            1
            for k in proc.net_connections(kind="tcp")
            if k.raddr and k.raddr.port == port and k.status == psutil.CONN_ESTABLISHED
        )

    async def main() -> dict[str, Any]:
        events: dict[str, Any] = {}
        most = [0]

        async def sampler() -> None:
            while True:
                most[0] = max(most[0], conns())
                await asyncio.sleep(0.25)

        async def one(name: str) -> None:
            async for ev in make(name).run():
                events[name] = ev.payload
                return

        t0 = time.monotonic()
        sampling = asyncio.create_task(sampler())
        tasks = [asyncio.create_task(one(n)) for n in names]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        seconds = time.monotonic() - t0
        for t in [*pending, sampling]:
            t.cancel()
        statuses: dict[str, int] = {}
        for ev in events.values():
            key = str(ev.get("status")) + (
                f"/{ev['job'].get('state')}" if isinstance(ev.get("job"), dict) else ""
            )
            statuses[key] = statuses.get(key, 0) + 1
        return {"seconds": seconds, "events": len(events), "statuses": statuses, "connections_max": most[0]}

    baseline = _status("VmRSS:") / 1024
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM from here on: the peak while waiting
        f.write("5")
    ru0 = os.times()
    out = asyncio.run(main())
    ru1 = os.times()
    import airflow_batchjob

    out["package"] = str(Path(airflow_batchjob.__file__).parent)
    out.update(
        contender=contender,
        waits=len(names),
        rss_baseline_mb=baseline,
        rss_peak_mb=_status("VmHWM:") / 1024,
        cpu_seconds=(ru1.user - ru0.user) + (ru1.system - ru0.system),
        requests={k: v for k, v in counts.items() if k != "bytes"},
        bytes=counts.get("bytes", 0),
    )
    print(json.dumps(out), flush=True)
    return 0


# -- the parent: namespaces, Jobs, children ---------------------------------------------------


def run_child(contender: str, ns: str, names: list[str], timeout: float) -> dict[str, Any]:
    names_file = Path(c.ROOT / "benchmarks" / f".names-{os.getpid()}.json")
    names_file.write_text(json.dumps(names))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--dir", str(ARGS.dir), "--child", contender, "--namespace", ns,
             "--names-file", str(names_file), "--timeout", str(timeout)],
            capture_output=True, text=True, timeout=timeout + 180, check=False,
            env={**os.environ, "BENCH_BEFORE_SRC": str(ARGS.before_src or "")},
        )  # fmt: skip
    finally:
        names_file.unlink(missing_ok=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{contender} child failed ({out.returncode}): {out.stderr[-3000:]}")
    r: dict[str, Any] = json.loads(lines[-1])
    r["load"] = os.getloadavg()[0]
    return r


def new_jobs(ns: str, count: int, hold: str) -> tuple[str, list[str]]:
    run = c.unique("bench")
    names = [f"{run}-{i:04d}" for i in range(count)]
    hist.create_jobs(ST, ns, [hist.job_body(n, run, i, hold) for i, n in enumerate(names)])
    return run, names


def drop_jobs(ns: str, run: str) -> None:
    hist.batch_api(ST).delete_collection_namespaced_job(
        ns, label_selector=f"{hist.PREFIX}/run={run}", propagation_policy="Background"
    )


def measure(ns: str, contenders: list[str], waits: int, reps: int) -> list[dict[str, Any]]:
    batch = hist.batch_api(ST)
    results = []
    # One wait on a Job already finished: the wait's own cost.
    for contender in contenders:
        for _ in range(reps):
            run, names = new_jobs(ns, 1, "0s")
            while hist.unfinished(batch, ns, f"{hist.PREFIX}/run={run}"):
                time.sleep(0.2)
            r = run_child(contender, ns, names, 120)
            r["mode"] = "one"
            results.append(r)
            drop_jobs(ns, run)
    # Many waits at once on Jobs still running.
    if waits:
        for contender in [k for k in contenders if k in ARGS.many.split(",")]:
            run, names = new_jobs(ns, waits, f"{ARGS.hold:g}s")
            r = run_child(contender, ns, names, 600)
            r["mode"] = "many"
            results.append(r)
            drop_jobs(ns, run)
    return results


def main() -> int:
    global ARGS, ST
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--history", default="0,5000,50000", help="finished Jobs per namespace")
    p.add_argument("--waits", type=int, default=1000, help="the 'many' case (0: skip it)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of the one-wait case")
    p.add_argument("--hold", type=float, default=30.0, help="seconds the Pods of the 'many' case run")
    p.add_argument("--only", default="ours,ours-logs,peer")
    p.add_argument("--many", default="ours,peer,before", help="the contenders of the 'many' case")
    p.add_argument("--populate-only", action="store_true")
    p.add_argument(
        "--before-src",
        type=Path,
        help="a copy of the package as it was (git archive <commit> airflow_batchjob | tar -x -C DIR): "
        "adds the contender 'before', run from DIR",
    )
    p.add_argument(
        "--pods-max",
        type=int,
        default=10**9,
        help="no Pods in namespaces with more Jobs (time: 5 writes a Job)",
    )
    p.add_argument("--cleanup", action="store_true", help="delete the history namespaces at the end")
    p.add_argument("--child", help=argparse_hidden())
    p.add_argument("--namespace", help=argparse_hidden())
    p.add_argument("--names-file", help=argparse_hidden())
    p.add_argument("--timeout", type=float, default=600, help=argparse_hidden())
    ARGS = p.parse_args()
    ST = c.load_cluster(ARGS.dir)
    if ARGS.child:
        return child(ARGS.child, ARGS.namespace, json.loads(Path(ARGS.names_file).read_text()), ARGS.timeout)
    c.header("What a wait costs in a namespace full of finished Jobs")
    kwok.up(ARGS.dir.resolve(), 2)
    k8s = json.loads(c.api_get(ST, "/version"))["gitVersion"]
    print(f"kube-apiserver {k8s}, kwok {KWOK_VERSION}\n")
    histories = [int(h) for h in ARGS.history.split(",")]
    setup = {n: hist.populate(ST, n, ARGS.pods_max) for n in histories}
    for h, info in setup.items():
        print(f"  history {h}: {json.dumps(info)}", file=sys.stderr)
    if ARGS.populate_only:
        return 0
    contenders = ARGS.only.split(",") + (["before"] if ARGS.before_src else [])
    results: dict[int, list[dict[str, Any]]] = {}
    for h in histories:
        print(f"  measuring in hist-{h} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr)
        results[h] = measure(f"hist-{h}", contenders, ARGS.waits, ARGS.reps)
    print(report(histories, setup, results))
    c.write_json(
        ARGS.json,
        {"machine": c.machine(), "kubernetes": k8s, "args": vars(ARGS), "setup": setup, "results": results},
    )
    if ARGS.cleanup:
        from kubernetes import client

        for h in histories:
            client.CoreV1Api(c.sync_api(ST)).delete_namespace(f"hist-{h}", propagation_policy="Background")
    return 0 if goal(histories, results)[0] else 1


def _one(results: list[dict[str, Any]], contender: str) -> list[dict[str, Any]]:
    return [r for r in results if r["mode"] == "one" and r["contender"] == contender]


def goal(histories: list[int], results: dict[int, list[dict[str, Any]]]) -> tuple[bool, str]:
    lo, hi = min(histories), max(histories)
    a, b = _one(results[lo], "ours"), _one(results[hi], "ours")
    if not a or not b:
        return True, ""
    d_mb = c.median([r["rss_peak_mb"] - r["rss_baseline_mb"] for r in b]) - c.median(
        [r["rss_peak_mb"] - r["rss_baseline_mb"] for r in a]
    )
    d_s = c.median([r["seconds"] for r in b]) - c.median([r["seconds"] for r in a])
    ok = d_mb <= GOAL_MB and d_s <= GOAL_S
    return ok, (
        f"goal: one wait with {hi:,} finished Jobs vs {lo:,}: {d_mb:+.1f} MB (<= +{GOAL_MB:g}), "
        f"{d_s:+.2f} s (<= +{GOAL_S:g}) -> {c.verdict(ok)}"
    )


def report(histories: list[int], setup: dict[int, Any], results: dict[int, list[dict[str, Any]]]) -> str:
    rows = []
    for h in histories:
        for mode in ("one", "many"):
            for contender in dict.fromkeys(r["contender"] for r in results[h]):
                rs = [r for r in results[h] if r["mode"] == mode and r["contender"] == contender]
                if not rs:
                    continue
                inc = c.median([r["rss_peak_mb"] - r["rss_baseline_mb"] for r in rs])
                req = rs[len(rs) // 2]["requests"]
                rows.append([
                    f"{h:,}", mode, contender, str(rs[0]["waits"]),
                    f"{c.median([r['rss_baseline_mb'] for r in rs]):.0f}", f"+{inc:.1f}",
                    f"{c.median([r['seconds'] for r in rs]):.2f}",
                    f"{c.median([r['bytes'] for r in rs]) / 1024:,.0f}",
                    " ".join(f"{k} {v}" for k, v in sorted(req.items())),
                    f"{c.median([r['cpu_seconds'] for r in rs]):.2f}",
                    str(max(r["connections_max"] for r in rs)),
                    json.dumps(rs[0]["statuses"], sort_keys=True), f"{rs[0]['load']:.1f}",
                ])  # fmt: skip
    head = ["finished Jobs", "case", "contender", "waits", "RSS after imports (MB)", "peak increment (MB)",
            "time to outcome (s)", "LIST/GET KiB", "requests", "CPU s", "conns max", "events",
            "load"]  # fmt: skip
    out = c.table(head, rows)
    sizes = "\n".join(
        f"- hist-{h}: a LIST of all its Jobs is {s['listed_bytes_all_jobs'] / 1e6:.1f} MB, "
        f"of all its Job Pods {s['listed_bytes_all_job_pods'] / 1e6:.1f} MB"
        for h, s in setup.items()
    )
    return f"{out}\n\n{sizes}\n\n{goal(histories, results)[1]}"


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


ARGS: Any = None
ST: Any = None

if __name__ == "__main__":
    sys.exit(main())

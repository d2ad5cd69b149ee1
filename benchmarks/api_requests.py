"""API requests made while waiting on one Job that does not finish, read from the apiserver's /metrics.

One Job runs ``sleep 100000`` (a real process on the node agent), so it is still running when
each window ends. Three windows of ``--minutes`` each, one after another, each waiter alone:

- idle: nobody waits; what the control plane itself does to ``jobs`` (the background);
- ours: ``wait_for_job`` with a deadline at the end of the window (then it returns "timeout"
  and closes its watch);
- peer: ``AsyncKubernetesHook.wait_until_job_complete(poll_interval=10)``, cancelled at the end.

For each window: ``apiserver_request_total{resource="jobs"}`` summed by verb, before and after
(read 3 s after the waiter stopped: a WATCH is counted when it ends), minus the idle window.
Also reported: each waiter's own count of the requests it sent, and the open WATCHes on jobs
(``apiserver_longrunning_requests``) sampled mid-window.

Usage: ``python benchmarks/api_requests.py --dir /tmp/bench [--minutes 10]``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import Counter
from typing import Any

import _common as c

TARGET_OURS = 3
SETTLE_SECONDS = 3.0
_LINE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(st: c.State) -> dict[str, Counter[str]]:
    """Counters for resource=jobs from /metrics.

    ``verb``: ``apiserver_request_total`` by verb; ``detail``: by "verb scope subresource";
    ``scoped``: by verb, without scope=cluster (the controllers' informers list and watch all
    namespaces; both waiters ask about one namespace or one object); ``watch_seconds``: summed lifetime
    of the WATCHes that ended, by scope (``apiserver_request_duration_seconds_sum``); ``watches``:
    open WATCHes (``apiserver_longrunning_requests``).
    """
    out: dict[str, Counter[str]] = {
        k: Counter() for k in ("verb", "detail", "scoped", "watch_seconds", "watches")
    }
    wanted = (
        "apiserver_request_total",
        "apiserver_longrunning_requests",
        "apiserver_request_duration_seconds_sum",
    )
    for line in c.api_get(st, "/metrics").decode().splitlines():
        m = _LINE.match(line)
        if not m or m.group(1) not in wanted:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        if labels.get("resource") != "jobs":
            continue
        value = float(m.group(3))
        verb, scope = labels.get("verb", "?"), labels.get("scope", "?")
        if m.group(1) == "apiserver_request_total":
            out["verb"][verb] += int(value)
            out["detail"][f"{verb} {scope} {labels.get('subresource') or '-'}"] += int(value)
            if scope != "cluster":
                out["scoped"][verb] += int(value)
        elif verb != "WATCH":
            continue
        elif m.group(1) == "apiserver_longrunning_requests":
            out["watches"]["open"] += int(value)
        else:
            out["watch_seconds"][scope] += value  # type: ignore[assignment]
    return out


def delta(after: dict[str, Counter[str]], before: dict[str, Counter[str]], key: str) -> dict[str, Any]:
    return {
        k: round(v - before[key].get(k, 0), 1) for k, v in after[key].items() if v != before[key].get(k, 0)
    }


async def _sample_midway(st: c.State, seconds: float, into: dict[str, Any]) -> None:
    await asyncio.sleep(seconds / 2)
    into["open_watches_mid"] = (await asyncio.to_thread(scrape, st))["watches"]["open"]


async def window_idle(st: c.State, seconds: float) -> dict[str, Any]:
    info: dict[str, Any] = {"client_requests": 0}
    await asyncio.gather(_sample_midway(st, seconds, info), asyncio.sleep(seconds))
    return info


async def window_ours(st: c.State, namespace: str, job: str, seconds: float) -> dict[str, Any]:
    from airflow_batchjob.hooks.watch import registry
    from airflow_batchjob.triggers.job import wait_for_job

    info: dict[str, Any] = {}

    async def count_before_end() -> None:  # the shared watch's own counter of list + watch calls
        await asyncio.sleep(seconds - 1)
        nw = registry().watches.get(("kubernetes_default", namespace, "jobs"))
        info["client_requests"] = nw.requests if nw else None

    event, _, _ = await asyncio.gather(
        wait_for_job(namespace=namespace, job_name=job, deadline=time.time() + seconds),
        _sample_midway(st, seconds, info),
        count_before_end(),
    )
    info["event"] = event["status"]
    return info


async def window_peer(st: c.State, namespace: str, job: str, seconds: float) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

    hook = AsyncKubernetesHook(conn_id="kubernetes_default")
    info: dict[str, Any] = {"client_requests": 0}
    real = hook.get_job_status

    async def counted(*args: Any, **kwargs: Any) -> Any:  # count the GETs it sends
        info["client_requests"] += 1
        return await real(*args, **kwargs)

    hook.get_job_status = counted  # type: ignore[method-assign]

    async def wait() -> None:
        try:
            await asyncio.wait_for(
                hook.wait_until_job_complete(name=job, namespace=namespace, poll_interval=10), seconds
            )
            info["event"] = "finished (unexpected)"
        except TimeoutError:
            info["event"] = "still waiting at the end of the window"

    await asyncio.gather(wait(), _sample_midway(st, seconds, info))
    return info


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0, help="length of each window (default 2; try 10)")
    a = p.parse_args()
    seconds = a.minutes * 60
    for name in ("airflow", "airflow.task.hooks", "kubernetes_asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    st = c.load_cluster(a.dir)
    c.header(f"API requests on jobs while waiting {a.minutes:g} min on a Job that does not finish")
    import json

    from kubernetes import client

    k8s = json.loads(c.api_get(st, "/version"))["gitVersion"]
    print(f"kube-apiserver {k8s}; windows run one after another: idle, ours, peer\n")
    results: dict[str, dict[str, Any]] = {}
    with c.namespace(st, "bench-api") as ns:
        batch = client.BatchV1Api(c.sync_api(st))
        batch.create_namespaced_job(ns, c.sleeper_job("forever", 100000))
        deadline = time.monotonic() + 60
        core = client.CoreV1Api(c.sync_api(st))
        selector = "batch.kubernetes.io/job-name=forever"
        while not any(
            p.status.phase == "Running" for p in core.list_namespaced_pod(ns, label_selector=selector).items
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the Job's Pod never started running")
            time.sleep(0.5)
        time.sleep(5)  # let the controllers settle after the Pod started
        windows = {
            "idle": lambda: window_idle(st, seconds),
            "ours": lambda: window_ours(st, ns, "forever", seconds),
            "peer": lambda: window_peer(st, ns, "forever", seconds),
        }
        for label, run in windows.items():
            print(f"  window {label}: {a.minutes:g} min ...", file=sys.stderr)
            before = scrape(st)
            info = asyncio.run(run())
            time.sleep(SETTLE_SECONDS)
            after = scrape(st)
            for key in ("verb", "detail", "scoped", "watch_seconds"):
                info[key] = delta(after, before, key)
            results[label] = info
            print(f"    {info['detail']} (client count {info['client_requests']})", file=sys.stderr)
        still = batch.read_namespaced_job("forever", ns).status
        assert (still.active or 0) == 1 and not still.conditions, "the Job finished during the benchmark"
    verbs = sorted({v for r in results.values() for v in r["verb"]})
    rows = []
    net: dict[str, int] = {}
    net_ns: dict[str, int] = {}
    for label in ("idle", "ours", "peer"):
        r = results[label]
        total = sum(r["verb"].values())
        net[label] = total - sum(results["idle"]["verb"].values())
        net_ns[label] = sum(r["scoped"].values()) - sum(results["idle"]["scoped"].values())
        rows.append(
            [label]
            + [str(r["verb"].get(v, 0)) for v in verbs]
            + [str(total), "-" if label == "idle" else str(net[label]),
               "-" if label == "idle" else str(net_ns[label]), str(r["client_requests"]),
               str(r.get("open_watches_mid", "?"))]
        )  # fmt: skip
    head = [
        "window",
        *verbs,
        "total",
        "minus idle",
        "not scope=cluster, minus idle",
        "waiter's own count",
        "open WATCHes mid-window",
    ]
    print(c.table(head, rows))
    print()
    print("by verb, scope, subresource (and summed lifetime of the WATCHes that ended in the window):")
    for label in ("idle", "ours", "peer"):
        r = results[label]
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(r["detail"].items()))
        lifetimes = ", ".join(f"{scope} {secs:.0f} s" for scope, secs in sorted(r["watch_seconds"].items()))
        print(f"  {label}: {detail or 'none'}" + (f" (WATCH lifetime: {lifetimes})" if lifetimes else ""))
    print()
    ratio = net["peer"] / net["ours"] if net["ours"] > 0 else float("inf")
    print(f"peer / ours (minus idle): {ratio:.1f}x")
    print(
        "a WATCH that lived longer than the window began before it: an informer of a controller "
        "(scope=cluster), not the waiter"
    )
    met = net["ours"] <= TARGET_OURS
    print(f"target ours <= {TARGET_OURS} requests in {a.minutes:g} min: {net['ours']} -> {c.verdict(met)}")
    c.write_json(
        a.json, {"machine": c.machine(), "kubernetes": k8s, "minutes": a.minutes, "results": results}
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

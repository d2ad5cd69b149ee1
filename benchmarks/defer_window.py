"""How long after a task defers does the scheduler drain the executor's report of its exit?

That is the window of Airflow's defer race: a trigger that fires inside it can see its resumed try
failed by the stale report ("state mismatch"). This runs ``tests/stack/dags/defer_race.py`` (very
short Jobs through every operator, each deferring at once) on the real api-server, scheduler,
LocalExecutor and triggerer, with the trigger's hold set by ``--settle`` (0: off, as on a provider
without it), and reports, per deferred try, the time from ``Pausing task as DEFERRED`` in its task
log to the scheduler's ``TaskInstance Finished ... executor_state=success`` line for that try;
and the state mismatches.

    python -m benchmarks.defer_window --runs 4 --settle 0
    python -m benchmarks.defer_window --runs 4 --settle 15

Needs a running local cluster (``python -m localcluster up``; ``$BATCHJOB_CLUSTER_DIR``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import statistics
import time
from pathlib import Path

from kubernetes import client, config

from localcluster import cluster as lc
from localcluster.airflowstack import ROOT, AirflowStack

DAGS = ROOT / "tests" / "stack" / "dags"
FINISHED = re.compile(
    r"TaskInstance Finished: dag_id=(?P<dag>[^,]+), task_id=(?P<task>[^,]+), run_id=(?P<run>[^,]+), "
    r"map_index=(?P<map>-?\d+),.*?executor_state=success, try_number=(?P<try>\d+)"
)
STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:?\d\d)?")


def _when(text: str) -> float | None:
    m = STAMP.search(text)
    if not m:
        return None
    zone = (m.group(2) or "Z").replace("Z", "+00:00")
    if len(zone) == 5:
        zone = zone[:3] + ":" + zone[3:]
    return dt.datetime.fromisoformat(m.group(1) + zone).timestamp()


def deferrals(logs: Path) -> dict[tuple[str, str, str, int, int], float]:
    """``(dag, task, run, map_index, try) -> time`` of each "Pausing task as DEFERRED"."""
    out = {}
    for path in logs.rglob("attempt=*.log"):
        if not re.fullmatch(r"attempt=\d+\.log", path.name):  # not a trigger's log
            continue
        parts = dict(p.split("=", 1) for p in path.relative_to(logs).parts[:-1] if "=" in p)
        attempt = int(path.stem.split("=")[1])
        key = (parts["dag_id"], parts["task_id"], parts["run_id"], int(parts.get("map_index", -1)), attempt)
        for line in path.read_text(errors="replace").splitlines():
            if "Pausing task as DEFERRED" in line:
                try:
                    when = _when(json.loads(line).get("timestamp", ""))
                except json.JSONDecodeError:
                    when = _when(line)
                if when is not None:
                    out[key] = when
                break
    return out


def windows(stack: AirflowStack) -> list[float]:
    deferred = deferrals(stack.home / "logs")
    seen: dict[tuple[str, str, str, int, int], float] = {}
    for line in stack.log("scheduler").splitlines():
        m = FINISHED.search(line)
        when = _when(line)
        if not m or when is None:
            continue
        key = (m["dag"], m["task"], m["run"], int(m["map"]), int(m["try"]))
        if key in deferred and key not in seen and when >= deferred[key] - 1:
            seen[key] = when - deferred[key]
    return sorted(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--settle", type=float, default=0.0)
    args = ap.parse_args()
    st = lc.State.load(Path(os.environ["BATCHJOB_CLUSTER_DIR"]))
    assert st is not None, "start the local cluster first"
    lc.airflow_identity(st)
    api = config.new_client_from_config(config_file=st.kubeconfig)
    core = client.CoreV1Api(api)
    namespace = f"window-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    lc.grant(st, namespace)
    env = {
        **st.connections(kubeconfig=str(Path(st.dir) / "airflow.kubeconfig")),
        "BATCHJOB_TEST_NAMESPACE": namespace,
        "AIRFLOW__BATCHJOB__DEFER_SETTLE_SECONDS": str(args.settle),
    }
    t0 = time.monotonic()
    with AirflowStack(DAGS, env=env) as stack:
        stack.wait_parsed(["defer_race"])
        runs = [f"w-{i}" for i in range(args.runs)]
        for run_id in runs:
            stack.trigger("defer_race", run_id)
        states = {r: stack.wait_runs(["defer_race"], r, timeout=900)["defer_race"][0] for r in runs}
        mismatches = stack.state_mismatches()
        retried = stack.query(
            "select count(*) from task_instance where dag_id = 'defer_race' and try_number > 1"
        )
        w = windows(stack)
    print(f"settle {args.settle}s, {args.runs} runs, {time.monotonic() - t0:.0f}s, logs in {stack.home}")
    print(f"runs: {states}")
    print(f"state mismatches: {len(mismatches)}; task instances that needed a second try: {retried[0][0]}")
    if w:
        q = statistics.quantiles(w, n=20) if len(w) >= 2 else w
        print(
            f"defer -> scheduler drained the exit report, {len(w)} tries: min {w[0]:.2f}s, "
            f"median {statistics.median(w):.2f}s, p95 {q[-1]:.2f}s, max {w[-1]:.2f}s"
        )
    core.delete_namespace(namespace)


if __name__ == "__main__":
    main()

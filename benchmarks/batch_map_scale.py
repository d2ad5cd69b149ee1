"""@task.batch_map at scale on the running local cluster: N items in one task, one retried alone.

Airflow's real services (``_airflow.Airflow``) run ``bench_batch_map``: one ``@task.batch_map``
call over N words (default 1,000) as one Indexed Job; the word in the middle raises on its first
attempt and ``backoff_limit_per_index=1`` runs that index again, alone. Reported: the DAG run's
time, the Job's Pods (N + 1 expected: every index once, the flaky one twice), the task's tries
(1), the results' order and the flaky word's failure count (1), the XCom's size.

    python -m localcluster up --node real --dir /tmp/bench
    python benchmarks/batch_map_scale.py --dir /tmp/bench [--items 1000] [--json out.json]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import _common as c
from _airflow import Airflow


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--parallelism", type=int, default=50, help="the Indexed Job's parallelism")
    p.add_argument("--timeout", type=float, default=3600)
    a = p.parse_args()
    st = c.load_cluster(a.dir)
    c.header(f"@task.batch_map over {a.items} items in one task ({st.node or 'agent'} node)")
    from kubernetes import client

    core = client.CoreV1Api(c.sync_api(st))
    extra = {
        "BENCH_BATCH_MAP_ITEMS": str(a.items),
        "BENCH_BATCH_MAP_PARALLELISM": str(a.parallelism),
        "PYTHONPATH": f"{c.ROOT}:{c.ROOT / 'benchmarks' / 'dags'}",
    }
    airflow = Airflow(st.connections(), extra, parallelism=4)
    with c.namespace(st, "bm") as ns:
        try:
            started = airflow.start(["bench_batch_map"])
            print(f"Airflow up in {started:.0f}s", flush=True)
            t0 = time.monotonic()
            run = airflow.run("bench_batch_map", a.timeout, {"namespace": ns})
            wall = time.monotonic() - t0
            pods = core.list_namespaced_pod(ns).items
            with sqlite3.connect(airflow.db) as conn:
                tries = conn.execute(
                    "select try_number from task_instance where dag_id = 'bench_batch_map' and run_id = ?",
                    (run["run_id"],),
                ).fetchall()
                (value,) = conn.execute(
                    "select value from xcom where dag_id = 'bench_batch_map' and run_id = ? "
                    "and key = 'return_value'",
                    (run["run_id"],),
                ).fetchone() or (None,)
        finally:
            airflow.stop()
    results: Any = json.loads(value) if value else []
    if isinstance(results, str):  # stored as the JSON text of a JSON string
        results = json.loads(results)
    flaky = f"item-{a.items // 2:05d}"
    in_order = [r["word"] for r in results] == [f"item-{i:05d}" for i in range(a.items)]
    failures = {r["word"]: r["failures"] for r in results if r["failures"]}
    checks = {
        "run succeeded": run["state"] == "success",
        "one task, one try": [t for (t,) in tries] == [1],
        f"{a.items} results in item order": len(results) == a.items and in_order,
        f"only {flaky} retried, once": failures == {flaky: 1},
        f"{a.items + 1} Pods (the flaky index twice)": len(pods) == a.items + 1,
    }
    rows = [
        ["items", a.items],
        ["Indexed Job parallelism", a.parallelism],
        ["DAG run (queued to end)", f"{run['seconds']:.0f} s"],
        ["wall time seen here", f"{wall:.0f} s"],
        ["Pods created", len(pods)],
        ["task tries", ",".join(str(t) for (t,) in tries)],
        ["return value XCom", f"{len(value or b'')} bytes"],
    ]
    print(c.table(["", ""], rows))
    for name, ok in checks.items():
        print(f"{c.verdict(ok)}  {name}")
    c.write_json(a.json, {"machine": c.machine(), "run": run, "pods": len(pods), "checks": checks})
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

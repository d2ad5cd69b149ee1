"""Short Jobs end to end on Airflow's real services, ours and the peer side by side in one run (issue 28).

Airflow's api-server, scheduler, LocalExecutor, triggerer and dag-processor
(``localcluster/airflowstack.py``) run the DAGs of ``benchmarks/dags/bench_e2e_*.py``:

- ours, ``BatchJobOperator`` with its defaults (deferrable; the worker watches ``defer_after`` 5 s,
  then defers; ``--complete-in-triggerer True`` ends a deferred success in the triggerer), and the peer,
  cncf.kubernetes' ``KubernetesJobOperator`` (``deferrable=True``, ``wait_until_job_complete=True``,
  its defaults otherwise: it polls every 10 s and resumes on a worker);
- single tasks: one DAG per (operator, Job length), each a busybox ``sleep N`` (1, 8, 20, 45 s):
  all eight triggered at once, ``--runs`` rounds, after a warm-up round of the 1 s DAGs (not counted);
- 60 at once: 60 mapped tasks, each a Job of ``sleep 1`` (ours with ``defer_after=0``, so every one
  defers), one DAG per operator, run one after the other (ours first), each alone on the services.

Per task: the DAG run (its start to end), the task (TI start to end), the Job's own run
(``startTime`` to ``completionTime``), decision to success (the Job's first deciding condition,
seen by a watch of the namespace, to the TI's end), overhead (task minus the Job's run), worker
starts (``Pre Execute`` in its attempt logs) and seconds in workers, whether it ended in the
triggerer; and the scheduler's state mismatches. Prints the tables and the goals of issue 28,
writes everything as JSON (default ``benchmarks/results/end_to_end-<node>-node.json``).

    python -m localcluster up --node real --dir /tmp/e2e-real
    python -m benchmarks.end_to_end --dir /tmp/e2e-real [--runs 3]
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c  # first: the repository on sys.path, a private AIRFLOW_HOME
from benchmarks import _e2e as e
from localcluster.airflowstack import AirflowStack

DAGS = Path(__file__).resolve().parent / "dags"
OPERATORS = ("ours", "peer")
WARM, FAN = "e2e-warm", "e2e-fan"
GOAL_DECISION_P50_S = 2.0
GOAL_FANOUT_S = 45.0
GOAL_OVERHEAD_SHARE = 1 / 3
# A DAG run of one task, step by step: its start to the task's, the task's start to its Job's
# creation (worker start, DAG parse, create), the Job's creation to its decision, the decision to
# the task's end, the task's end to the run's.
STEPS = ("run_to_task_s", "task_to_job_s", "job_to_decided_s", "decision_to_success_s", "task_to_run_end_s")


def single_dag(op: str, seconds: int) -> str:
    return f"bench_e2e_{op}_{seconds}s"


def fanout_dag(op: str) -> str:
    return f"bench_e2e_{op}_fanout"


def run_dags(stack: AirflowStack, dag_ids: list[str], run_id: str, timeout: float) -> dict[str, Any]:
    """Trigger ``dag_ids`` at once (already unpaused) and wait until every run has ended."""
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    for dag_id in dag_ids:
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": {}}
        stack.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
    runs = stack.wait_runs(dag_ids, run_id, timeout=timeout)
    took = time.monotonic() - t0
    line = ", ".join(f"{d.removeprefix('bench_e2e_')} {s:.1f}s {st}" for d, (st, _, s) in runs.items())
    print(f"  {run_id} ({took:.0f}s, load {load:.2f}): {line}", file=sys.stderr, flush=True)
    return {"run_id": run_id, "wall_s": took, "load_before": load, "runs": runs}


def task_records(stack: AirflowStack, watch: e.JobWatch) -> list[dict[str, Any]]:
    """One record per task instance of the benchmark's DAGs, the warm-up included."""
    runs = {
        (d, r): (state, e.when(start), e.when(end))
        for d, r, state, start, end in stack.query(
            "select dag_id, run_id, state, start_date, end_date from dag_run where dag_id like 'bench_e2e_%'"
        )
    }
    with watch.lock:
        jobs: dict[tuple[str, str, int], dict[str, Any]] = {}
        for uid, job in watch.jobs.items():
            key = e.job_key(job)
            if key is not None:  # the latest Job of a task instance counts (a retry's)
                t = e.job_times(job, watch.decided.get(uid))
                t["first_seen"] = watch.first_seen[uid]
                if key not in jobs or t["created"] >= jobs[key]["created"]:
                    jobs[key] = t
    out = []
    for dag_id, task_id, run_id, map_index, state, tries, start, end in stack.query(
        "select dag_id, task_id, run_id, map_index, state, try_number, start_date, end_date "
        "from task_instance where dag_id like 'bench_e2e_%'"
    ):
        _, op, what = dag_id.split("_", 3)[1:]
        run_state, run_start, run_end = runs[(dag_id, run_id)]
        job = jobs.get((dag_id, run_id, map_index), {})
        ti_start, ti_end = e.when(start), e.when(end)
        task_s = ti_end - ti_start
        decided = job.get("decided")
        logs = e.task_logs(stack.home / "logs", dag_id, run_id, task_id, map_index)
        finished = logs["triggerer_finished"]
        rec = {
            "dag_id": dag_id,
            "run_id": run_id,
            "map_index": map_index,
            "operator": op,
            "kind": "fanout" if what == "fanout" else "single",
            "job_seconds": 1 if what == "fanout" else int(what.removesuffix("s")),
            "run_state": run_state,
            "dag_run_s": run_end - run_start,
            "state": state,
            "tries": tries,
            "task_s": task_s,
            "job_run_s": job.get("run_s", math.nan),
            "overhead_s": task_s - job.get("run_s", math.nan),
            "decision_to_success_s": ti_end - decided if decided is not None else math.nan,
            # Where the DAG run's time goes, one after the other (the Job's creation as the watch saw it).
            "run_to_task_s": ti_start - run_start,
            "task_to_job_s": job.get("first_seen", math.nan) - ti_start,
            "job_to_decided_s": (decided if decided is not None else math.nan)
            - job.get("first_seen", math.nan),
            "task_to_run_end_s": run_end - ti_end,
            # A task ended in the triggerer: its completion there (Kubernetes calls, XCom writes),
            # then Airflow's handling of the trigger's TaskSuccessEvent.
            "decided_to_trigger_done_s": finished - (decided if decided is not None else math.nan),
            "trigger_done_to_end_s": ti_end - finished,
            "run_start": run_start,
            "ti_start": ti_start,
            "ti_end": ti_end,
            "job": job,
            **logs,
        }
        out.append(rec)
    return out


def summarize(records: list[dict[str, Any]], lengths: list[int], parallelism: int) -> dict[str, Any]:
    counted = [r for r in records if r["run_id"] != WARM]
    single: dict[str, dict[int, dict[str, Any]]] = {op: {} for op in OPERATORS}
    for op in OPERATORS:
        for n in lengths:
            rs = [
                r for r in counted if r["operator"] == op and r["kind"] == "single" and r["job_seconds"] == n
            ]
            single[op][n] = {
                "tasks": len(rs),
                "succeeded": sum(r["state"] == "success" for r in rs),
                **{k: e.med(rs, k) for k in ("dag_run_s", "task_s", "job_run_s", "overhead_s", "worker_s")},
                "parse_s": e.med(rs, "parse_s"),
                **{k: e.med(rs, k) for k in STEPS},
                "worker_starts": e.med(rs, "worker_starts"),
                "in_triggerer": sum(r["in_triggerer"] for r in rs),
            }
    decision: dict[str, dict[str, float]] = {}
    fanout: dict[str, dict[str, Any]] = {}
    for op in OPERATORS:
        ss = [r for r in counted if r["operator"] == op and r["kind"] == "single"]
        fs = [r for r in counted if r["operator"] == op and r["kind"] == "fanout"]
        decision[op] = {
            "single_n": len(ss),
            "single_p50": e.pct(ss, "decision_to_success_s", 50),
            "single_p95": e.pct(ss, "decision_to_success_s", 95),
            "fanout_n": len(fs),
            "fanout_p50": e.pct(fs, "decision_to_success_s", 50),
            "fanout_p95": e.pct(fs, "decision_to_success_s", 95),
            **{
                f"{kind}_{k}_{p}": e.pct(rs, f"{k}_s", p)
                for kind, rs in (("single", ss), ("fanout", fs))
                for k in ("decided_to_trigger_done", "trigger_done_to_end")
                for p in (50, 95)
            },
        }
        if not fs:
            continue
        start = fs[0]["run_start"]
        created = [r["job"]["first_seen"] for r in fs if r["job"]]
        decided = [r["job"]["decided"] for r in fs if r["job"].get("decided") is not None]
        worker_s = sum(r["worker_s"] for r in fs)
        fanout[op] = {
            "run_state": fs[0]["run_state"],
            "dag_run_s": fs[0]["dag_run_s"],
            "tasks": len(fs),
            "succeeded": sum(r["state"] == "success" for r in fs),
            "task_median_s": e.med(fs, "task_s"),
            "task_max_s": max(r["task_s"] for r in fs),
            "job_run_median_s": e.med(fs, "job_run_s"),
            "last_task_start_s": max(r["run_to_task_s"] for r in fs),
            "last_job_created_s": max(created) - start if created else math.nan,
            "last_decided_s": max(decided) - start if decided else math.nan,
            "worker_starts": sum(r["worker_starts"] for r in fs),
            "worker_s": worker_s,
            "slot_use": worker_s / (fs[0]["dag_run_s"] * parallelism),
            "in_triggerer": sum(r["in_triggerer"] for r in fs),
        }
    return {"single": single, "decision": decision, "fanout": fanout}


def tables(s: dict[str, Any], lengths: list[int], fanout_n: int) -> str:
    o, p = s["single"]["ours"], s["single"]["peer"]
    rows = [
        [
            f"{n} s",
            f"{e.f1(o[n]['job_run_s'])} / {e.f1(p[n]['job_run_s'])}",
            f"{e.f1(o[n]['dag_run_s'])} s",
            f"{e.f1(p[n]['dag_run_s'])} s",
            f"{o[n]['dag_run_s'] / p[n]['dag_run_s']:.2f}",
            f"{e.f1(o[n]['task_s'])} / {e.f1(p[n]['task_s'])}",
            f"{e.f1(o[n]['overhead_s'])} / {e.f1(p[n]['overhead_s'])}",
            f"{e.f1(o[n]['decision_to_success_s'])} / {e.f1(p[n]['decision_to_success_s'])}",
            f"{o[n]['worker_starts']:g} / {p[n]['worker_starts']:g}",
            f"{e.f1(o[n]['worker_s'])} ({e.f1(o[n]['parse_s'])}) / {e.f1(p[n]['worker_s'])} "
            f"({e.f1(p[n]['parse_s'])})",
            f"{o[n]['in_triggerer']} of {o[n]['tasks']}",
            f"{o[n]['succeeded']}/{o[n]['tasks']} / {p[n]['succeeded']}/{p[n]['tasks']}",
        ]
        for n in lengths
    ]
    head = [
        "Job sleeps", "Job's own run ours / peer (s)", "ours: DAG run", "peer: DAG run", "ours / peer",
        "task ours / peer (s)", "overhead ours / peer (s)", "decision to success ours / peer (s)",
        "worker starts ours / peer", "s in workers (DAG parse) ours / peer", "ours ended in triggerer",
        "succeeded ours / peer",
    ]  # fmt: skip
    out = ["Single tasks, medians over the rounds:", "", c.table(head, rows), ""]
    rows = [
        [f"{n} s", op, *(e.f1(s["single"][op][n][k]) for k in STEPS)] for n in lengths for op in OPERATORS
    ]
    head = ["Job sleeps", "operator", "run start to task start", "task start to Job created",
            "Job created to decided", "decided to task end", "task end to run end"]  # fmt: skip
    out += ["Where a single task's DAG run goes (medians, s):", "", c.table(head, rows), ""]
    d = s["decision"]
    rows = [
        [op, d[op]["single_n"], e.f1(d[op]["single_p50"]), e.f1(d[op]["single_p95"]),
         d[op]["fanout_n"], e.f1(d[op]["fanout_p50"]), e.f1(d[op]["fanout_p95"])]
        for op in OPERATORS
    ]  # fmt: skip
    o = d["ours"]
    for k, what in (
        ("decided_to_trigger_done", "decided to the trigger's completion"),
        ("trigger_done_to_end", "the trigger's completion to task end"),
    ):
        ps = [e.f1(o[f"{kind}_{k}_{p}"]) for kind in ("single", "fanout") for p in (50, 95)]
        rows.append([f"ours, in the triggerer: {what}", "", *ps[:2], "", *ps[2:]])
    head = ["decision to task success", "single: tasks", "p50 (s)", "p95 (s)",
            f"{fanout_n} at once: tasks", "p50 (s)", "p95 (s)"]  # fmt: skip
    out += [c.table(head, rows), ""]
    rows = []
    for op, g in s["fanout"].items():
        times = ("last_task_start_s", "last_job_created_s", "last_decided_s")
        rows.append(
            [op, g["run_state"], f"{e.f1(g['dag_run_s'])} s", f"{g['succeeded']}/{g['tasks']}",
             f"{e.f1(g['task_median_s'])} / {e.f1(g['task_max_s'])}", e.f1(g["job_run_median_s"]),
             *(e.f1(g[k]) for k in times), g["worker_starts"],
             f"{g['worker_s']:.0f} ({g['slot_use']:.0%})", g["in_triggerer"]]
        )  # fmt: skip
    if rows:
        head = [f"{fanout_n} x sleep 1", "state", "DAG run", "succeeded", "task median / max (s)",
                "Job's run median (s)", "last task start (s)", "last Job created (s)", "last decided (s)",
                "worker starts", "s in workers (slot use)", "ended in triggerer"]  # fmt: skip
        out += [f"{fanout_n} at once (one DAG after the other; times from the DAG run's start):", ""]
        out += [c.table(head, rows), ""]
    return "\n".join(out)


def goals(s: dict[str, Any], lengths: list[int], mismatches: dict[str, list[str]]) -> list[dict[str, Any]]:
    o, p = s["single"]["ours"], s["single"]["peer"]
    faster = {n: o[n]["dag_run_s"] <= p[n]["dag_run_s"] for n in lengths}
    share = {n: o[n]["overhead_s"] <= GOAL_OVERHEAD_SHARE * p[n]["overhead_s"] for n in lengths}
    d = s["decision"]["ours"]
    fan = s["fanout"].get("ours")
    fan_s = fan["dag_run_s"] if fan else math.nan
    dec_ok = all(not (v > GOAL_DECISION_P50_S) for v in (d["single_p50"], d["fanout_p50"]))  # NaN: none
    return [
        {
            "goal": "ours' DAG run <= the peer's at every Job length (medians)",
            "met": all(faster.values()),
            "measured": "; ".join(
                f"{n} s: {e.f1(o[n]['dag_run_s'])} vs {e.f1(p[n]['dag_run_s'])}"
                + ("" if faster[n] else " (not met)")
                for n in lengths
            ),
        },
        {
            "goal": "median overhead (task minus the Job's own run) ours <= 1/3 of the peer's, every length",
            "met": all(share.values()),
            "measured": "; ".join(
                f"{n} s: {e.f1(o[n]['overhead_s'])} vs {e.f1(p[n]['overhead_s'])} "
                f"(limit {e.f1(GOAL_OVERHEAD_SHARE * p[n]['overhead_s'])}){'' if share[n] else ' not met'}"
                for n in lengths
            ),
        },
        {
            "goal": f"decision to task success p50 <= {GOAL_DECISION_P50_S:g} s (ours)",
            "met": dec_ok and not math.isnan(d["single_p50"]),
            "measured": f"single tasks p50 {e.f1(d['single_p50'])} s (p95 {e.f1(d['single_p95'])}); "
            f"60 at once p50 {e.f1(d['fanout_p50'])} s (p95 {e.f1(d['fanout_p95'])})",
        },
        {
            "goal": f"60 one-second deferred Jobs <= {GOAL_FANOUT_S:g} s of DAG run time (ours)",
            "met": fan is not None and fan_s <= GOAL_FANOUT_S and fan["run_state"] == "success",
            "measured": f"{e.f1(fan_s)} s ({fan['run_state']})" if fan else "not run",
        },
        {
            "goal": "0 scheduler state mismatches (ours)",
            "met": not mismatches["ours"],
            "measured": f"ours {len(mismatches['ours'])}, the peer {len(mismatches['peer'])}",
        },
    ]


def versions(st: c.State) -> dict[str, Any]:
    dists = ("apache-airflow", "apache-airflow-providers-cncf-kubernetes", "kubernetes")
    nodes = json.loads(c.api_get(st, "/api/v1/nodes"))["items"]
    return {
        **{d: importlib.metadata.version(d) for d in dists},
        "nodes": [{"name": n["metadata"]["name"], **n["status"]["nodeInfo"]} for n in nodes],
    }


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="rounds of the single-task DAGs (default 3)")
    p.add_argument("--lengths", default="1,8,20,45", help="Job lengths in seconds (default 1,8,20,45)")
    p.add_argument("--fanout", type=int, default=60, help="mapped tasks of the 60-at-once DAGs (0: skip)")
    p.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (default 8)")
    p.add_argument("--timeout", type=float, default=900, help="per round (s)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up round of the 1 s DAGs")
    p.add_argument(
        "--complete-in-triggerer",
        choices=("default", "True", "False"),
        default="default",
        help="[batchjob] complete_in_triggerer for ours (default: the provider's default)",
    )
    a = p.parse_args()
    lengths = [int(x) for x in a.lengths.split(",") if x]
    st = c.load_cluster(a.dir)
    c.header(f"Short Jobs end to end, ours and the peer ({st.node} node)")
    t0 = time.monotonic()
    load = e.LoadSampler()
    load.start()
    singles = [single_dag(op, n) for n in lengths for op in OPERATORS]
    fanouts = [fanout_dag(op) for op in OPERATORS] if a.fanout > 0 else []
    phases: list[dict[str, Any]] = []
    with c.namespace(st, "e2e") as ns, e.JobWatch(c.sync_api(st), ns) as watch:
        env = {
            **st.connections(),  # admin: the peer also deletes its Pods, which our Role does not grant
            "BENCH_E2E_NAMESPACE": ns,
            "BENCH_E2E_LENGTHS": a.lengths,
            "BENCH_E2E_FANOUT": str(max(a.fanout, 1)),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # _common sets WARNING for this process only
        }
        if a.complete_in_triggerer != "default":
            env["AIRFLOW__BATCHJOB__COMPLETE_IN_TRIGGERER"] = a.complete_in_triggerer
        with AirflowStack(DAGS, env=env, parallelism=a.parallelism) as stack:
            print(f"  Airflow home {stack.home}, namespace {ns}", file=sys.stderr, flush=True)
            stack.wait_parsed(singles + fanouts)
            for dag_id in singles + fanouts:
                stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            print(f"  services up, DAGs parsed: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
            if not a.no_warmup:
                warm = [single_dag(op, min(lengths)) for op in OPERATORS]
                phases.append(run_dags(stack, warm, WARM, a.timeout))
            for i in range(1, a.runs + 1):
                phases.append(run_dags(stack, singles, f"e2e-r{i}", a.timeout))
            for dag_id in fanouts:
                phases.append(run_dags(stack, [dag_id], FAN, a.timeout))
            watch.list_now()
            records = task_records(stack, watch)
            found = stack.state_mismatches()
            home = str(stack.home)
    load.stopped.set()
    mismatches = {op: [m for m in found if f"bench_e2e_{op}_" in m] for op in OPERATORS}
    summary = summarize(records, lengths, a.parallelism)
    checked = goals(summary, lengths, mismatches)
    elapsed = time.monotonic() - t0
    samples = load.samples or [os.getloadavg()[0]]
    print(f"run took {elapsed:.0f}s; load average (1 min) during it: median {c.median(samples):.1f}, "
          f"max {max(samples):.1f}; Airflow logs in {home}\n")  # fmt: skip
    print(tables(summary, lengths, a.fanout))
    print(f"state mismatches: ours {len(mismatches['ours'])}, the peer {len(mismatches['peer'])}\n")
    for g in checked:
        print(f"{'MET    ' if g['met'] else 'NOT MET'}  {g['goal']}: {g['measured']}")
    out = a.json or c.ROOT / "benchmarks" / "results" / f"end_to_end-{st.node}-node.json"
    c.write_json(
        out,
        {
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.end_to_end", *sys.argv[1:]]),
            "machine": c.machine(),
            "versions": versions(st),
            "settings": {
                "complete_in_triggerer": a.complete_in_triggerer,
                "parallelism": a.parallelism,
                "runs": a.runs,
                "lengths": lengths,
                "fanout": a.fanout,
            },
            "elapsed_s": elapsed,
            "load_samples": samples,
            "airflow_home": home,
            "phases": phases,
            "summary": summary,
            "goals": checked,
            "state_mismatches": mismatches,
            "tasks": records,
        },
    )
    print(f"\nwritten: {out}")
    return 0 if all(g["met"] for g in checked) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run every example DAG end to end through a real Airflow: api-server, scheduler, triggerer,
dag-processor (LocalExecutor, SQLite), against the running local cluster and brokers.

``python -m localcluster.demo`` (with the cluster's env file sourced, as ``scripts/demo.sh`` does)
prints one row per DAG (state, tasks, Jobs created, duration) and exits non-zero if any DAG
failed. Deferral really happens: waiting tasks are handed to the triggerer process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kubernetes import client, config

from airflow_batchjob.core import naming

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"
SERVICES = ("api-server", "scheduler", "triggerer", "dag-processor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airflow_env(home: Path, port: int, namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "BATCHJOB_EXAMPLE_NAMESPACE": namespace,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def run_demo() -> int:
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    namespace = f"demo-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    home = Path(tempfile.mkdtemp(prefix="batchjob-demo-airflow-"))
    port = free_port()
    env = airflow_env(home, port, namespace)
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for svc in SERVICES:
            with open(home / f"{svc}.log", "wb") as log:
                procs[svc] = subprocess.Popen(
                    [airflow, svc], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"api-server did not start; see {home}/api-server.log") from None
                time.sleep(1)
        dag_ids = sorted(p.stem for p in DAGS.glob("example_*.py"))
        db = home / "airflow.db"
        wait_parsed(db, dag_ids, home)
        started = {}
        for dag_id in dag_ids:
            subprocess.run(
                [airflow, "dags", "unpause", dag_id], env=env, check=True, stdout=subprocess.DEVNULL
            )
            subprocess.run(
                [airflow, "dags", "trigger", dag_id, "-r", "demo"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            started[dag_id] = time.monotonic()
        results = wait_runs(db, dag_ids, timeout=float(os.environ.get("BATCHJOB_DEMO_TIMEOUT", "900")))
    finally:
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    print(f"\n{'DAG':24} {'state':8} {'tasks (state: n)':36} {'Jobs':>5} {'seconds':>8}")
    failed = False
    for dag_id in dag_ids:
        state, tasks, seconds = results[dag_id]
        selector = f"{naming.LABEL_DAG}={naming.sanitize_label_value(dag_id)}"
        jobs = batch.list_namespaced_job(namespace, label_selector=selector)
        print(f"{dag_id:24} {state:8} {tasks:36} {len(jobs.items):>5} {seconds:>8.1f}")
        failed |= state != "success"
    if failed:
        print(f"\nsome DAGs failed: task logs are under {home}/logs", file=sys.stderr)
    else:
        core.delete_namespace(namespace)
        shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


def wait_parsed(db: Path, dag_ids: list[str], home: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                have = {r[0] for r in conn.execute("select dag_id from dag where is_stale = 0")}
                errors = list(conn.execute("select filename, stacktrace from import_error"))
        except sqlite3.Error:
            have, errors = set(), []
        if errors:
            raise RuntimeError(f"example DAGs failed to import: {errors}")
        if set(dag_ids) <= have:
            return
        time.sleep(1)
    raise RuntimeError(f"the dag-processor did not parse {dag_ids}; see {home}/dag-processor.log")


def wait_runs(db: Path, dag_ids: list[str], timeout: float) -> dict[str, tuple[str, str, float]]:
    deadline = time.monotonic() + timeout
    results: dict[str, tuple[str, str, float]] = {}
    while time.monotonic() < deadline and len(results) < len(dag_ids):
        with sqlite3.connect(db) as conn:
            for dag_id, state, start, end in conn.execute(
                "select dag_id, state, start_date, end_date from dag_run where run_id = 'demo'"
            ):
                if state in ("success", "failed") and dag_id not in results:
                    tasks = dict(
                        conn.execute(
                            "select state, count(*) from task_instance where dag_id = ? "
                            "and run_id = 'demo' group by state",
                            (dag_id,),
                        ).fetchall()
                    )
                    secs = (_ts(end) - _ts(start)) if start and end else float("nan")
                    results[dag_id] = (state, json.dumps(tasks, sort_keys=True), secs)
        time.sleep(2)
    for dag_id in dag_ids:
        results.setdefault(dag_id, ("timeout", "", float("nan")))
    return results


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


if __name__ == "__main__":
    sys.exit(run_demo())

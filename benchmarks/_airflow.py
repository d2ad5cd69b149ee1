"""A real Airflow for the benchmarks: api-server, scheduler (LocalExecutor), triggerer, dag-processor.

SQLite metadata DB in a fresh ``AIRFLOW_HOME``, the DAGs of ``benchmarks/dags``, every DAG
unpaused at creation. :meth:`Airflow.run` triggers one DAG run and waits for it; the times
reported are the scheduler's own (``dag_run.queued_at`` to ``end_date``).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGS = Path(__file__).resolve().parent / "dags"
SERVICES = ("api-server", "scheduler", "triggerer", "dag-processor")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ts(value: str | None) -> float:
    """A timestamp from the SQLite DB (UTC, with or without offset) as epoch seconds."""
    if not value:
        return float("nan")
    t = dt.datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


class Airflow:
    def __init__(self, connections: dict[str, str], extra_env: dict[str, str], parallelism: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="batchjob-bench-airflow-"))
        self.port = _free_port()
        self.parallelism = parallelism
        self.db = self.home / "airflow.db"
        self.airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(connections)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # loopback only, a throwaway home: lets the benchmark trigger runs through the REST API
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "PYTHONPATH": str(ROOT),
                "BENCH_ENABLE": "1",
                **extra_env,
            }
        )
        self.env = env

    def settings(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith(("AIRFLOW__CORE__", "AIRFLOW__SCHEDULER"))}

    def start(self, dag_ids: list[str], timeout: float = 300) -> float:
        """Migrate the DB, start the services, wait until ``dag_ids`` are parsed; seconds taken."""
        t0 = time.monotonic()
        subprocess.run([self.airflow, "db", "migrate"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        for svc in SERVICES:
            with open(self.home / f"{svc}.log", "wb") as log:
                self.procs[svc] = subprocess.Popen(
                    [self.airflow, svc],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"api-server did not start; see {self.home}/api-server.log") from None
                time.sleep(1)
        while True:
            self._check_alive()
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(self.db) as conn:
                errors = list(conn.execute("select filename, stacktrace from import_error"))
                if errors:
                    raise RuntimeError(f"benchmark DAGs failed to import: {errors}")
                have = {r[0] for r in conn.execute("select dag_id from dag where is_stale = 0")}
                if set(dag_ids) <= have:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_ids} not parsed; see {self.home}/dag-processor.log")
            time.sleep(1)
        return time.monotonic() - t0

    def _check_alive(self) -> None:
        for svc, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"airflow {svc} exited ({p.returncode}); see {self.home}/{svc}.log")

    def run(self, dag_id: str, timeout: float, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Trigger ``dag_id`` and wait for its run to finish; the scheduler's timestamps and task states."""
        run_id = f"bench-{secrets.token_hex(3)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2/dags/{dag_id}/dagRuns",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # the REST API: no CLI start-up per run
            resp.read()
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(self.db, timeout=30) as conn:
                row = conn.execute(
                    "select state, queued_at, start_date, end_date from dag_run "
                    "where dag_id = ? and run_id = ?",
                    (dag_id, run_id),
                ).fetchone()
            if row and row[0] in ("success", "failed"):
                break
            time.sleep(1)
        with sqlite3.connect(self.db, timeout=30) as conn:
            tis = conn.execute(
                "select state, count(*), min(start_date), max(end_date), sum(try_number > 1) "
                "from task_instance where dag_id = ? and run_id = ? group by state",
                (dag_id, run_id),
            ).fetchall()
            xcom = conn.execute(
                "select task_id, length(value), timestamp from xcom "
                "where dag_id = ? and run_id = ? and key = 'return_value'",
                (dag_id, run_id),
            ).fetchall()
            ti_times = conn.execute(
                "select min(start_date), max(end_date) from task_instance where dag_id = ? and run_id = ?",
                (dag_id, run_id),
            ).fetchone()
        state, queued, start, end = row if row else ("timeout", None, None, None)
        if state not in ("success", "failed"):
            state = "timeout"
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "state": state,
            "queued_at": queued,
            "start_date": start,
            "end_date": end,
            "seconds": ts(end) - ts(queued),
            "seconds_from_start": ts(end) - ts(start),
            "tasks": {str(s): n for s, n, *_ in tis},
            "retried_tasks": sum(int(r[4] or 0) for r in tis),
            "first_task_start": ti_times[0] if ti_times else None,
            "last_task_end": ti_times[1] if ti_times else None,
            "xcom_return": [{"task_id": t, "bytes": n, "timestamp": x} for t, n, x in xcom],
            "logs": str(self.home / "logs"),
        }

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

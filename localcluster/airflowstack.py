"""Airflow's real services around the local cluster, each its own process, as a deployment runs
them: api-server, scheduler, triggerer and dag-processor with LocalExecutor on SQLite (the
default profile), or the production profile ``ha``: PostgreSQL, CeleryExecutor with two Celery
workers (Redis as broker, an instance of its own: ``haservers.py``) and two triggerers.

``dag.test()`` and ``airflow tasks test`` run a task, its trigger and its resumption in one
process, which hides the races between the scheduler, the executor and the triggerer. The demo
and the tests that must see those races run DAGs here instead::

    with AirflowStack(dags_folder, env={"BATCHJOB_EXAMPLE_NAMESPACE": ns}) as stack:
        stack.wait_parsed(["my_dag"])
        stack.trigger("my_dag", "run-1")
        print(stack.wait_runs(["my_dag"], "run-1", timeout=600))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from localcluster.cluster import free_port
from localcluster.haservers import Servers, stop_groups

try:
    from psycopg2 import Error as DatabaseError
except ImportError:  # the local profile needs no PostgreSQL driver

    class DatabaseError(Exception):  # type: ignore[no-redef]
        pass


ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "ha")
MISMATCH = re.compile(r"finished with state (\w+), but the task instance's state attribute is (\w+)")


# The services (and the task processes they start, which inherit it) run at a higher priority
# than the rest of the machine. A deployment's scheduler has its CPU to itself; on a 2-core test
# machine two more test lanes run beside the stack, and a scheduler starved by them took 30 s to
# read the executor's report of a deferring task's exit: longer than the trigger's 15 s hold, so it
# failed tasks the trigger had already resumed (Airflow's defer race, CI run of 2026-12-07). The
# race itself and the hold are unchanged; issue 28 is the fix that needs no hold.
NICE = -5


class AirflowStack:
    """The services on a private ``AIRFLOW_HOME`` (kept on failure for its logs).

    :param profile: ``local`` (LocalExecutor, SQLite, one triggerer) or ``ha`` (PostgreSQL,
        CeleryExecutor with two workers, two triggerers).
    :param triggerer_capacity: the triggers each triggerer runs at most; in the ``ha`` profile a
        pair gives ``triggerer-1`` and ``triggerer-2`` their own, so that a test can make the
        triggers spread over both (more than the first can hold) and still all fit on the second.
    """

    def __init__(
        self,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        parallelism: int = 8,
        profile: str = "local",
        triggerer_capacity: int | tuple[int, int] = 1000,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
        self.profile = profile
        self.servers = Servers() if profile == "ha" else None
        self.home = Path(tempfile.mkdtemp(prefix="batchjob-airflow-stack-"))
        self.port = free_port()
        self.db = self.home / "airflow.db"
        self.airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
        # The services run as deployed: no test-process override of the defer hold.
        self.env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__BATCHJOB__DEFER_SETTLE_SECONDS"}
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # A test stack: every caller is admin, and the API hands out tokens without a login.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # New files are still parsed within REFRESH_INTERVAL; re-parsing unchanged ones every
                # 30 s (the default) imports the kubernetes client again each time: a tenth of a core
                # per stack on a 2-core machine, for DAG files a test never edits.
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                # Each task process imports the DAG file (and the kubernetes client) itself; with a
                # dozen starting at once on 2 cores, Airflow 3.0's took over the default 30 s.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
                # A task's supervisor gives up on the api-server after 5 tries of 5 s each (Airflow
                # 3.1's default) and kills the task: with three test lanes on 2 cores (load 25) the
                # api-server answered slower, and tasks died in "Pre Execute" (CI run, 2026-12-07).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(dags_folder)]),
            }
        )
        if self.servers:
            self.env.update(
                {
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.servers.sql_alchemy_conn,
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": self.servers.celery_broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": self.servers.celery_result_backend,
                    # Two workers share the executor's slots (each prefork child is a whole Airflow).
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(max(2, parallelism // 2)),
                    # Failover within seconds, not the default half minute or five minutes.
                    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                }
            )
        self.env.update(env or {})
        if isinstance(triggerer_capacity, int):
            triggerer_capacity = (triggerer_capacity, triggerer_capacity)
        self.triggerer_capacity = triggerer_capacity
        self.services = self._services()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _services(self) -> dict[str, list[str]]:
        """Each service's command line, by name."""
        if self.profile == "local":
            # One API worker: a one-machine stack, and Airflow 3.0's four did not start within two
            # minutes on a busy 2-core machine (each loads the whole app).
            return {
                "api-server": ["api-server", "--workers", "1"],
                **{svc: [svc] for svc in ("scheduler", "triggerer", "dag-processor")},
            }
        services = {svc: [svc] for svc in ("api-server", "scheduler", "dag-processor")}
        for i in (1, 2):
            # Two of each on one machine: no log servers (their ports would clash), own pid files.
            capacity = str(self.triggerer_capacity[i - 1])
            services[f"triggerer-{i}"] = ["triggerer", "--skip-serve-logs", "--capacity", capacity]
            services[f"celery-worker-{i}"] = [
                "celery", "worker", "--skip-serve-logs", "--celery-hostname", f"worker{i}@%h",
                "--pid", str(self.home / f"celery-worker-{i}.pid"),
            ]  # fmt: skip
        return services

    def start_service(self, name: str) -> None:
        with open(self.home / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                # nice(1) execs the service (same pid); not root, it warns and runs it as is.
                ["nice", "-n", str(NICE), self.airflow, *self.services[name]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal_service(self, name: str, sig: signal.Signals, timeout: float = 60) -> None:
        """Send ``sig`` to the service's process group and wait until it has exited."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # children left by a SIGKILLed parent
            os.killpg(proc.pid, signal.SIGKILL)

    def freeze_service(self, name: str) -> None:
        """SIGSTOP the service's process group: a service that stalls without dying."""
        os.killpg(self.procs[name].pid, signal.SIGSTOP)

    def thaw_service(self, name: str) -> None:
        """SIGCONT the service's process group, frozen by ``freeze_service``."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGCONT)

    def __enter__(self) -> AirflowStack:
        try:
            if self.servers:
                self.servers.start()
            self.run("db", "migrate")
            for name in self.services:
                self.start_service(name)
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2)
                    return self
                except OSError:
                    if time.monotonic() > deadline:
                        where = self.home / "api-server.log"
                        raise RuntimeError(f"api-server did not start; see {where}") from None
                    time.sleep(1)
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        stop_groups(self.procs.values(), timeout=20)
        self.procs.clear()
        if self.servers:
            self.servers.stop()

    def run(self, *args: str) -> None:
        subprocess.run([self.airflow, *args], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of the metadata database (``?`` placeholders in either profile)."""
        if not self.servers:
            with sqlite3.connect(self.db) as conn:
                return list(conn.execute(sql, params))
        import psycopg2

        conn = psycopg2.connect(self.servers.dsn())
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def wait_parsed(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                have = {r[0] for r in self.query("select dag_id from dag where not is_stale")}
                errors = self.query("select filename, stacktrace from import_error")
            except (sqlite3.Error, DatabaseError):
                have, errors = set(), []
            if errors:
                raise RuntimeError(f"DAGs failed to import: {errors}")
            if set(dag_ids) <= have:
                return
            time.sleep(1)
        raise RuntimeError(f"the dag-processor did not parse {dag_ids}; see {self.home}/dag-processor.log")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
        """Unpause the DAG and start a manual run, through the REST API as the UI does.

        Not the CLI: each ``airflow`` command imports Airflow afresh, which took 20 to 40 s a call
        on a loaded 2-core machine and spread a test's "simultaneous" runs over minutes.
        """
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def wait_runs(self, dag_ids: list[str], run_id: str, timeout: float) -> dict[str, tuple[str, str, float]]:
        """``{dag_id: (state, task states as JSON, seconds)}`` once every run ended (or timed out)."""
        deadline = time.monotonic() + timeout
        results: dict[str, tuple[str, str, float]] = {}
        while time.monotonic() < deadline and len(results) < len(dag_ids):
            for dag_id, state, start, end in self.query(
                "select dag_id, state, start_date, end_date from dag_run where run_id = ?", run_id
            ):
                if dag_id in dag_ids and state in ("success", "failed") and dag_id not in results:
                    tasks = dict(
                        self.query(
                            "select state, count(*) from task_instance where dag_id = ? "
                            "and run_id = ? group by state",
                            dag_id,
                            run_id,
                        )
                    )
                    secs = (_ts(end) - _ts(start)) if start and end else float("nan")
                    results[dag_id] = (state, json.dumps(tasks, sort_keys=True), secs)
            time.sleep(2)
        for dag_id in dag_ids:
            results.setdefault(dag_id, ("timeout", "", float("nan")))
        return results

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the REST API (``/api/v2/...``) as an admin; the decoded JSON answer."""
        base = f"http://127.0.0.1:{self.port}"
        with urllib.request.urlopen(f"{base}/auth/token", timeout=30) as r:
            token = json.load(r)["access_token"]
        req = urllib.request.Request(
            f"{base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def log(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def diagnose(self, dag_id: str, lines: int = 15) -> str:
        """Task states, each task's latest log tail and the scheduler's last lines, for a failure."""
        out = [f"AIRFLOW_HOME {self.home}"]
        for row in self.query(
            "select task_id, map_index, run_id, state, try_number from task_instance where dag_id = ? "
            "order by task_id, map_index",
            dag_id,
        ):
            out.append(f"task {row}")
        for log in sorted((self.home / "logs" / f"dag_id={dag_id}").rglob("attempt=*.log"))[-8:]:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out += [f"--- {log.relative_to(self.home)}", *tail]
        for svc in [n for n in self.services if n == "scheduler" or n.startswith("triggerer")]:
            out += [f"--- {svc}.log", *self.log(svc).splitlines()[-lines:]]
        return "\n".join(out)

    def state_mismatches(self) -> list[str]:
        """The scheduler's "state mismatch" lines: a try failed by a stale executor report."""
        return [line for line in self.log("scheduler").splitlines() if MISMATCH.search(line)]


def _ts(value: str | dt.datetime) -> float:
    """SQLite gives dates as text, PostgreSQL as datetimes."""
    return (value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)).timestamp()

"""Run every example DAG end to end through a real Airflow: api-server, scheduler, triggerer,
dag-processor (LocalExecutor, SQLite: ``localcluster/airflowstack.py``), against the running local
cluster and brokers.

``python -m localcluster.demo`` (with the cluster's env file sourced, as ``scripts/demo.sh`` does)
prints one row per DAG (state, tasks, Jobs created, duration) and exits non-zero if any DAG
failed, or if the scheduler failed a try behind its back ("state mismatch": Airflow's defer race).
Deferral really happens: waiting tasks are handed to the triggerer process.

``--profile ha`` runs the same on the production profile instead: PostgreSQL, CeleryExecutor
with two Celery workers and two triggerers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time

from kubernetes import client, config

from airflow_batchjob.core import naming
from localcluster.airflowstack import PROFILES, ROOT, AirflowStack

DAGS = ROOT / "example_dags"


def run_demo(profile: str = "local") -> int:
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    namespace = f"demo-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    dag_ids = sorted(p.stem for p in DAGS.glob("example_*.py"))
    stack = AirflowStack(DAGS, env={"BATCHJOB_EXAMPLE_NAMESPACE": namespace}, profile=profile)
    with stack:
        stack.wait_parsed(dag_ids)
        for dag_id in dag_ids:
            stack.trigger(dag_id, "demo")
        t0 = time.monotonic()
        timeout = float(os.environ.get("BATCHJOB_DEMO_TIMEOUT", "900"))
        results = stack.wait_runs(dag_ids, "demo", timeout=timeout)
    print(f"\n{'DAG':24} {'state':8} {'tasks (state: n)':36} {'Jobs':>5} {'seconds':>8}")
    failed = False
    for dag_id in dag_ids:
        state, tasks, seconds = results[dag_id]
        selector = f"{naming.LABEL_DAG}={naming.sanitize_label_value(dag_id)}"
        jobs = batch.list_namespaced_job(namespace, label_selector=selector)
        print(f"{dag_id:24} {state:8} {tasks:36} {len(jobs.items):>5} {seconds:>8.1f}")
        failed |= state != "success"
    mismatches = stack.state_mismatches()
    ended = f"profile {profile}: all runs ended after {time.monotonic() - t0:.0f}s"
    print(f"{ended}; scheduler state mismatches: {len(mismatches)}")
    for line in mismatches:
        print(f"  {line[:300]}", file=sys.stderr)
    if failed or mismatches:
        print(f"\nsome DAGs failed: task and service logs are under {stack.home}", file=sys.stderr)
        return 1
    core.delete_namespace(namespace)
    shutil.rmtree(stack.home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="every example DAG through Airflow's real services")
    parser.add_argument("--profile", choices=PROFILES, default="local", help="local (default) or ha")
    sys.exit(run_demo(parser.parse_args().profile))

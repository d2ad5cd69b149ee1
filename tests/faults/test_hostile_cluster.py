"""Hostile input against the real apiserver: what is refused creates nothing, what passes is exact.

(The property-based checks of names, labels and argv are pure: tests/unit/test_hostile_input.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from tests.faults.helpers import START, new_dag

pytestmark = pytest.mark.cluster


def test_template_with_unknown_fields_is_refused_and_creates_nothing(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A typo in a template (``backofLimit``, ``comand``) must not be silently dropped."""
    typo = {
        "spec": {
            "backofLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "comand": ["rm", "-rf", "/data"]}],
                }
            },
        }
    }
    with new_dag("unknown_fields") as dag:
        BatchJobOperator(task_id="typo", namespace=namespace, job_template=typo, cmds=["true"], retries=3)
    result = run_dag(dag)["typo"]
    out = capfd.readouterr().out
    assert result["state"] == "failed" and result["try_number"] == 1  # not retried: a retry cannot fix it
    assert "InvalidJobTemplateError" in out
    assert 'unknown field \\"spec.backofLimit\\"' in out or 'unknown field "spec.backofLimit"' in out, out[
        -3000:
    ]
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []


def test_items_refused_at_run_time_create_nothing(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Items that only exist after Jinja (an XCom, a param) are checked before the first create."""
    with DAG("bad_items_late", schedule=None, start_date=START, render_template_as_native_obj=True) as dag:
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            items="{{ ['fine', 'also fine', 'nul\\x00inside'] }}",
            image="busybox",
            cmds=["sh", "-c", "echo $ITEM"],
        )
    result = run_dag(dag)["group"]
    out = capfd.readouterr().out
    assert result["state"] == "failed"
    assert "item 2 contains a NUL character" in out, out[-3000:]
    assert client.BatchV1Api(api_client).list_namespaced_job(namespace).items == []


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_run_ids_differing_only_in_offset_get_their_own_jobs(
    airflow_db: Path, api_client: Any, namespace: str
) -> None:
    """Backfill/manual run ids with ``:`` and ``+``: two runs of one instant in two offsets, two Jobs."""
    env = {**os.environ, "BATCHJOB_TEST_NAMESPACE": namespace, "BATCHJOB_TEST_SLEEP": "0"}
    run_ids = [
        f"manual__2024-03-10T02:30:00+01:00~{namespace}",
        f"manual__2024-03-10T02:30:00+00:00~{namespace}",
    ]
    for run_id in run_ids:
        trig = _airflow("dags", "trigger", "batchjob_adopt", "-r", run_id, env=env)
        assert trig.returncode == 0, trig.stdout + trig.stderr
        run = _airflow("tasks", "test", "batchjob_adopt", "sleepy", run_id, env=env)
        assert "succeeded" in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert sorted(j.metadata.annotations[naming.ANNOTATION_RUN_ID] for j in jobs) == sorted(run_ids)
    assert len({j.metadata.name for j in jobs}) == 2
    assert len({j.metadata.labels[naming.LABEL_RUN] for j in jobs}) == 2
    for job in jobs:
        assert job.metadata.name == naming.job_name(
            "batchjob_adopt", "sleepy", job.metadata.annotations[naming.ANNOTATION_RUN_ID]
        )

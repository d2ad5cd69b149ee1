"""cncf.kubernetes' own example DAG for KubernetesJobOperator, ported by changing its imports and
class names only, run end to end on the local cluster.

The example is not in this repository: it is read from the cncf.kubernetes source distribution of
the installed version (PyPI), cached under ``~/.cache/airflow-batchjob/peer-examples/``. The
port also drops the lines of Airflow's own system-test harness (``tests_common``: a watcher task
and ``get_test_run``), which only Airflow's repository has.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import re
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import localcluster.cluster as lc
from airflow_batchjob.core import naming

pytestmark = pytest.mark.cluster

EXAMPLE = "tests/system/cncf/kubernetes/example_kubernetes_job.py"
RENAMES = {
    "KubernetesJobOperator": "BatchJobOperator",
    "KubernetesPatchJobOperator": "PatchJobOperator",
    "KubernetesDeleteJobOperator": "DeleteJobOperator",
}
OUR_IMPORTS = (
    "from airflow_batchjob.operators.job import BatchJobOperator\n"
    "from airflow_batchjob.operators.lifecycle import DeleteJobOperator, PatchJobOperator\n"
)


def peer_example() -> str:
    """The example's text, from the installed cncf.kubernetes version's sdist (downloaded once)."""
    version = importlib.metadata.version("apache-airflow-providers-cncf-kubernetes")
    cached = (
        Path.home()
        / ".cache/airflow-batchjob/peer-examples"
        / f"cncf-kubernetes-{version}"
        / Path(EXAMPLE).name
    )
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"apache-airflow-providers-cncf-kubernetes=={version}",
                    "-d",
                    tmp,
                ],
                check=True,
            )
            (sdist,) = Path(tmp).glob("*.tar.gz")
            with tarfile.open(sdist) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith(EXAMPLE))
                data = tar.extractfile(member)
                assert data is not None
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(data.read())
    return cached.read_text()


def port(source: str) -> str:
    """Change the imports and the class names; drop the system-test harness lines."""
    ported, n = re.subn(
        r"from airflow\.providers\.cncf\.kubernetes\.operators\.job import \([^)]*\)\n", OUR_IMPORTS, source
    )
    assert n == 1, "the example's import of the Job operators changed: update the port"
    for theirs, ours in RENAMES.items():
        ported = re.sub(rf"\b{theirs}\b", ours, ported)
    harness = ("from tests_common", "list(dag.tasks) >> watcher()", "test_run = get_test_run(dag)")
    return "".join(line for line in ported.splitlines(keepends=True) if not line.strip().startswith(harness))


def test_port_changes_only_imports_class_names_and_harness() -> None:
    source = peer_example()
    ported = port(source)
    assert "cncf.kubernetes.operators.job" not in ported and "tests_common" not in ported
    removed = [d[2:] for d in difflib.ndiff(source.splitlines(), ported.splitlines()) if d.startswith("- ")]
    added = [d[2:] for d in difflib.ndiff(source.splitlines(), ported.splitlines()) if d.startswith("+ ")]
    import_block = re.search(
        r"from airflow\.providers\.cncf\.kubernetes\.operators\.job import \([^)]*\)", source
    )
    assert import_block is not None
    harness = ("from tests_common", "list(dag.tasks) >> watcher()", "test_run = get_test_run(dag)")
    for line in removed:
        assert (
            line in import_block.group(0)
            or line.strip().startswith(harness)
            or any(n in line for n in RENAMES)
        ), line
    for line in added:
        assert line in OUR_IMPORTS or any(n in line for n in RENAMES.values()), line


def test_peer_example_runs_green(run_dag: Any, api_client: Any, local_cluster: lc.State) -> None:
    lc.grant(local_cluster, "default")  # the example uses the default namespace
    module = types.ModuleType("example_kubernetes_job_ported")
    exec(compile(port(peer_example()), "example_kubernetes_job_ported.py", "exec"), module.__dict__)
    dag = module.dag
    batch = client.BatchV1Api(api_client)
    try:
        out = run_dag(dag)
        assert {t: r["state"] for t, r in out.items()} == {
            "job-task": "success",
            "update-job-task": "success",
            "delete_job_task": "success",
            "job-task-def": "success",
            "delete_job_task_def": "success",
        }
        job = out["job-task"]["xcom"]["return_value"]
        assert job["name"].startswith("test-pi-") and job["outcome"]["state"] == "succeeded"
        assert out["delete_job_task"]["xcom"]["return_value"] == [job["name"]]
        left = batch.list_namespaced_job(
            "default", label_selector=f"{naming.LABEL_DAG}={naming.sanitize_label_value(dag.dag_id)}"
        )
        assert [j.metadata.name for j in left.items] == []
    finally:
        for j in batch.list_namespaced_job("default").items:
            if j.metadata.name.startswith("test-pi"):
                batch.delete_namespaced_job(j.metadata.name, "default", propagation_policy="Background")

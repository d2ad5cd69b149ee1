"""cncf.kubernetes' own example DAG for its Kueue operators, ported by changing one import, run end to
end on the local cluster with a real Kueue.

The example is read from the cncf.kubernetes source distribution of the installed version (PyPI),
cached under ``~/.cache/airflow-batchjob/peer-examples/`` as ``tests/cluster/test_peer_example.py``
does. Its ``KubernetesCreateResourceOperator`` tasks stay cncf.kubernetes' own. The port drops the
lines of Airflow's system-test harness (``tests_common``), which only Airflow's repository has.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from localcluster import cluster as lc

pytestmark = [pytest.mark.kueue, pytest.mark.cluster]

EXAMPLE = "tests/system/cncf/kubernetes/example_kubernetes_kueue.py"
THEIRS = "from airflow.providers.cncf.kubernetes.operators.kueue import ("
OURS = "from airflow_batchjob.operators.kueue import ("
HARNESS = ("from tests_common", "list(dag.tasks) >> watcher()", "test_run = get_test_run(dag)")


def peer_example() -> str:
    version = importlib.metadata.version("apache-airflow-providers-cncf-kubernetes")
    cached = (
        Path.home()
        / ".cache/airflow-batchjob/peer-examples"
        / f"cncf-kubernetes-{version}"
        / Path(EXAMPLE).name
    )
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            package = f"apache-airflow-providers-cncf-kubernetes=={version}"
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
                    package,
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
    assert source.count(THEIRS) == 1, "the example's import of the Kueue operators changed: update the port"
    ported = source.replace(THEIRS, OURS)
    return "".join(line for line in ported.splitlines(keepends=True) if not line.strip().startswith(HARNESS))


def test_port_changes_only_the_import_and_the_harness() -> None:
    source = peer_example()
    diff = [d for d in difflib.ndiff(source.splitlines(), port(source).splitlines()) if d[:2] in ("- ", "+ ")]
    assert [d for d in diff if d.startswith("+ ")] == [f"+ {OURS}"]
    removed = [d[2:] for d in diff if d.startswith("- ")]
    assert all(line == THEIRS or line.strip().startswith(HARNESS) for line in removed), removed


def test_peer_kueue_example_runs_green(
    run_dag: Any, kueue: lc.State, api_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example creates cluster-scoped Kueue objects: a cluster operator's rights (admin), as
    # its authors run it; its Job task checks the LocalQueue it made and follows the Workload.
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT", kueue.connections()["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    )
    module = types.ModuleType("example_kubernetes_kueue_ported")
    exec(compile(port(peer_example()), "example_kubernetes_kueue_ported.py", "exec"), module.__dict__)
    custom = client.CustomObjectsApi(api_client)
    batch = client.BatchV1Api(api_client)
    try:
        out = run_dag(module.dag)
        assert {t: r["state"] for t, r in out.items()} == {
            "install_kueue": "success",
            "create_resource_flavor": "success",
            "create_cluster_queue": "success",
            "create_local_queue": "success",
            "kueue_job": "success",
        }
        job = out["kueue_job"]["xcom"]["return_value"]
        assert job["name"].startswith("test-pi-") and job["outcome"]["state"] == "succeeded"
        assert out["kueue_job"]["xcom"]["diagnostics"]["kueue"]["cluster_queue"] == "cluster-queue"
    finally:
        for j in batch.list_namespaced_job("default").items:
            if j.metadata.name.startswith("test-pi"):
                batch.delete_namespaced_job(j.metadata.name, "default", propagation_policy="Background")
        for path, name in (
            (("localqueues",), "local-queue"),
            (("clusterqueues",), "cluster-queue"),
            (("resourceflavors",), "default-flavor"),
        ):
            try:
                if path[0] == "localqueues":
                    custom.delete_namespaced_custom_object(
                        "kueue.x-k8s.io", "v1beta2", "default", path[0], name
                    )
                else:
                    custom.delete_cluster_custom_object("kueue.x-k8s.io", "v1beta2", path[0], name)
            except client.ApiException:
                pass

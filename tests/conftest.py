"""Shared fixtures: the real local cluster and brokers (started once per session, or reused)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as lc
from tests.watchdog import pytest_runtest_protocol  # noqa: F401  (a hook: ends a hung run)

# Airflow reads its configuration at import: point it at a private home before anything imports it.
AIRFLOW_HOME = Path(os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="batchjob-airflow-")))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).parent / "dags"))
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[lc.State]:
    """The running local cluster named by $BATCHJOB_CLUSTER_DIR, or one started for this session."""
    d = (
        lc.default_dir(f"pytest-{os.getpid()}")
        if "BATCHJOB_CLUSTER_DIR" not in os.environ
        else Path(os.environ["BATCHJOB_CLUSTER_DIR"])
    )
    existing = lc.State.load(d)
    # A cluster this session did not start is never stopped by it, even if it looks down right now
    # (another session may be restarting its apiserver on purpose).
    reuse = existing is not None
    # ``up`` replaces a cluster that does not answer: give a busy or restarting one a minute first.
    deadline = time.monotonic() + 60
    while existing is not None and not lc.alive(existing) and time.monotonic() < deadline:
        time.sleep(1)
    st = lc.up(d)
    # Airflow talks to Kubernetes as a ServiceAccount bound only to deploy/rbac/role.yaml, granted
    # in each test's namespace (``namespace``): every pattern test proves least privilege.
    # Fixtures and assertions use admin (``api_client``, KUBECONFIG).
    lc.airflow_identity(st)
    conns = st.connections(kubeconfig=str(Path(st.dir) / "airflow.kubeconfig"))
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    yield st
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if not reuse:
        lc.down(d)


@pytest.fixture(scope="session")
def api_client(local_cluster: lc.State):  # type: ignore[no-untyped-def]
    from kubernetes import config

    return config.new_client_from_config(config_file=local_cluster.kubeconfig)


@pytest.fixture
def namespace(api_client, local_cluster: lc.State) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace per test (deleted afterwards), ready once its default ServiceAccount exists.

    The Airflow identity gets deploy/rbac/role.yaml there, and nothing else.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    # The serviceaccount controller makes it; right after a test restarted the apiserver, its
    # informers may take a while to resume (seen: over 30 s on a loaded CI machine).
    deadline = time.monotonic() + 120
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    lc.grant(local_cluster, name)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) in the session's private AIRFLOW_HOME."""
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    for cmd in (
        ["db", "migrate"],
        ["dags", "reserialize"],
    ):  # the DAGs of tests/dags, for `airflow tasks test`
        subprocess.run([airflow, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return AIRFLOW_HOME


def _write_dag(dag: Any) -> None:
    """Serialise a DAG defined in a test into the metadata DB, as the DAG processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.commit()
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


@pytest.fixture
def run_dag(airflow_db: Path, local_cluster: lc.State):  # type: ignore[no-untyped-def]
    """Run a DAG with ``dag.test()`` (triggers run in line, so deferral really happens) and report.

    Returns ``{task_id: {"state", "try_number", "xcom": {key: value}}}`` for the run.
    """

    def run(dag: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
        from airflow.models import TaskInstance
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        _write_dag(dag)
        dr = dag.test(**kwargs)
        out: dict[str, dict[str, Any]] = {}
        with create_session() as s:
            for ti in s.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dr.run_id
                )
            ):
                out[ti.task_id] = {
                    "state": str(getattr(ti.state, "value", ti.state)),
                    "try_number": ti.try_number,
                    "xcom": {},
                }
            for x in s.scalars(
                select(XComModel).where(XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id)
            ):
                out[x.task_id]["xcom"][x.key] = XComModel.deserialize_value(x)
        return out

    return run


# Fault tests (tests/faults, tests/stack) report what they injected and what it cost (kills,
# items lost, duplicates, hand-over times) at the end of the run.
_FIGURES: list[str] = []


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    def add(line: str) -> None:
        _FIGURES.append(f"{request.node.name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("fault injection figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)

"""Failover on the production profile: PostgreSQL, CeleryExecutor with two workers, two triggerers.

When a triggerer dies, Airflow hands its triggers to the other once its heartbeat is older than
``[triggerer] triggerer_health_check_threshold``; the other rebuilds each trigger from its
serialised kwargs. Nothing here imitates that: the triggerers, the scheduler and the Celery
workers are Airflow's own processes (``localcluster/airflowstack.py``, profile ``ha``), and the
damage is counted on the cluster: Jobs created (and by which try), Jobs deleted, watches held.

Nothing here counts on the machine's speed: every Pod of the DAGs waits for its run's gate file
(``tests/stack/dags/ha_failover.py``), which a test creates only once it has seen the state it
came for, and the triggers' spread over the two triggerers is made, not hoped for.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_batchjob.core import naming
from localcluster import cluster as lc
from localcluster.airflowstack import AirflowStack
from tests.cluster.helpers import jobs_in, pods_in
from tests.stack.helpers import own_namespace

pytestmark = pytest.mark.cluster
T = TypeVar("T")

DAGS = Path(__file__).parent / "dags"
DEFERRED = 24 + 6  # plain (mapped), group, indexed, two queues, sensed, sensor
JOBS = 24 + 3 + 1 + 1 + 1 + 1  # plain, the group's items, indexed, two queues, sensed
# triggerer-1 holds at most FIRST, so the rest wait for triggerer-2, which can hold them all.
FIRST = 12
CAPACITY = (FIRST, 64)


@pytest.fixture(scope="module")
def ha(local_cluster: lc.State, api_client: Any) -> Iterator[tuple[AirflowStack, str, Path]]:
    """The production profile, once for this module, with a namespace and a gate directory."""
    gate = Path(tempfile.mkdtemp(prefix="batchjob-gate-"))
    with own_namespace(local_cluster, api_client, "h") as namespace:
        env = {"BATCHJOB_TEST_NAMESPACE": namespace, "BATCHJOB_TEST_GATE": str(gate)}
        with AirflowStack(DAGS, env=env, profile="ha", parallelism=32, triggerer_capacity=CAPACITY) as stack:
            stack.wait_parsed(["ha_failover", "ha_in_worker", "ha_kill"])
            yield stack, namespace, gate


def _release(gate: Path, run_id: str) -> None:
    """Let the run's Pods end (they wait for this file)."""
    (gate / run_id).touch()


def _job_watches(state: lc.State) -> int:
    """Namespaced Job watches open on the apiserver now (the controllers watch cluster-wide)."""
    want = ('resource="jobs"', 'scope="namespace"', 'verb="WATCH"')
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in lc.api_get(state, "/metrics").decode().splitlines()
        if line.startswith("apiserver_longrunning_requests{") and all(w in line for w in want)
    )


def _deferred(stack: AirflowStack, run_id: str) -> int:
    sql = "select count(*) from task_instance where dag_id = 'ha_failover' and run_id = ? and state = ?"
    return int(stack.query(sql, run_id, "deferred")[0][0])


def _per_triggerer(stack: AirflowStack) -> dict[Any, int]:
    """Assigned triggers, by the id of the triggerer's job row."""
    return dict(
        stack.query("select triggerer_id, count(*) from trigger where triggerer_id is not null group by 1")
    )


def _cancelled(stack: AirflowStack, run_id: str) -> int:
    """Triggers of the run that a triggerer cancelled as a user's kill (each trigger's own log)."""
    logs = stack.home / "logs" / "dag_id=ha_failover" / f"run_id={run_id}"
    return sum(
        "Trigger cancelled by user action" in log.read_text(errors="replace")
        for log in logs.rglob("*.log.trigger.*.log")
    )


def _until(stack: AirflowStack, dag_id: str, check: Callable[[], T], timeout: float) -> T:
    """Poll ``check`` until it gives a true value; on timeout fail with the DAG's task states and logs."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, stack.diagnose(dag_id)
        time.sleep(0.5)
    return found


def _wait_deferred(stack: AirflowStack, run_id: str, assigned: int, timeout: float = 600) -> dict[Any, int]:
    """Until every deferring task of the run is deferred and ``assigned`` of their triggers are
    assigned; then the triggers per triggerer. The Jobs are held, so this state cannot pass by."""
    deadline = time.monotonic() + timeout
    while True:
        deferred, per_triggerer = _deferred(stack, run_id), _per_triggerer(stack)
        if deferred == DEFERRED and sum(per_triggerer.values()) == assigned:
            return per_triggerer
        assert time.monotonic() < deadline, (deferred, per_triggerer, stack.diagnose("ha_failover"))
        time.sleep(1)


def _check_run(
    api_client: Any, stack: AirflowStack, namespace: str, run_id: str, one_try: bool = True
) -> tuple[int, Counter[int]]:
    """The run succeeded, every Job made once (by try 1) and none deleted, and with ``one_try``
    every task ran in one try; the number of Jobs and the tasks per try number."""
    state, tasks, _ = stack.wait_runs(["ha_failover"], run_id, timeout=600)["ha_failover"]
    assert state == "success", f"{tasks}\n{stack.diagnose('ha_failover')}"
    tries = Counter(
        t
        for (t,) in stack.query(
            "select try_number from task_instance where dag_id = 'ha_failover' and run_id = ?", run_id
        )
    )
    assert sum(tries.values()) == DEFERRED + 2
    assert not one_try or tries == {1: DEFERRED + 2}, f"tasks needed another try: {tries}"
    selector = f"{naming.LABEL_DAG}=ha_failover,{naming.LABEL_RUN}={naming.sanitize_label_value(run_id)}"
    jobs = jobs_in(api_client, namespace, selector)
    # Every Job is still there (none deleted by a stopping or dying triggerer), made once, by try 1.
    assert len(jobs) == JOBS, sorted(j.metadata.name for j in jobs)
    assert all(j.metadata.labels.get(naming.LABEL_TRY) == "1" for j in jobs)
    assert all(j.metadata.deletion_timestamp is None for j in jobs)
    return len(jobs), tries


@pytest.mark.timeout(1500)
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP], ids=["sigkill", "sigterm", "sigstop"]
)
def test_a_triggerer_stops_and_the_other_takes_its_triggers(
    local_cluster: lc.State,
    api_client: Any,
    ha: tuple[AirflowStack, str, Path],
    sig: signal.Signals,
    fault_report: Callable[[str], None],
) -> None:
    stack, namespace, gate = ha
    run_id = f"failover-{sig.name.lower()}"
    # The spread over both triggerers, made: with triggerer-2 stopped, triggerer-1 takes all it
    # can hold (FIRST) and the rest wait unassigned; triggerer-2 then takes those.
    stack.signal_service("triggerer-2", signal.SIGTERM)
    try:
        stack.trigger("ha_failover", run_id)
        _wait_deferred(stack, run_id, assigned=FIRST)
    finally:
        stack.start_service("triggerer-2")
    per_triggerer = _wait_deferred(stack, run_id, assigned=DEFERRED)
    assert sorted(per_triggerer.values()) == [FIRST, DEFERRED - FIRST], per_triggerer
    # Each triggerer holds one Job watch for the namespace (opened once its first trigger runs).
    _until(stack, "ha_failover", lambda: _job_watches(local_cluster) == 2, 120)
    # SIGSTOP: a triggerer that stalls (as one did finishing many tasks at once, docs/design.md)
    # and wakes once the other has taken its triggers over.
    if sig == signal.SIGSTOP:
        stack.freeze_service("triggerer-1")
    else:
        stack.signal_service("triggerer-1", sig)
    stopped = time.monotonic()
    try:
        # The survivor adopts every trigger: all of them end up on it, none has fired (held).
        deadline = time.monotonic() + 180
        while True:
            left = _per_triggerer(stack)
            if len(left) == 1 and sum(left.values()) == DEFERRED:
                handover = time.monotonic() - stopped
                break
            assert time.monotonic() < deadline, f"not handed over: {left}\n{stack.diagnose('ha_failover')}"
            time.sleep(1)
        assert _deferred(stack, run_id) == DEFERRED
        if sig == signal.SIGSTOP:
            # Woken, it finds none of its triggers assigned to it and cancels every one, which
            # Airflow 3.3 takes for a user's kill: their on_kill runs (and must delete nothing).
            stack.thaw_service("triggerer-1")
            _until(stack, "ha_failover", lambda: _cancelled(stack, run_id) >= FIRST, 180)
            after = f"woken, the first cancelled its {FIRST} moved triggers as a user's kill"
        else:
            # The survivor's one watch serves all (the dead one's connection is gone with it).
            _until(stack, "ha_failover", lambda: _job_watches(local_cluster) == 1, 60)
            after = "Job watches 2 -> 1"
        _release(gate, run_id)
        jobs, _ = _check_run(api_client, stack, namespace, run_id)
        fault_report(
            f"{DEFERRED} deferred tasks, triggers {FIRST}/{DEFERRED - FIRST} over 2 triggerers; {sig.name} "
            f"to the first; all {DEFERRED} on the survivor after {handover:.0f} s (threshold 10 s); "
            f"{after}; {jobs} Jobs, each made once by try 1, 0 deleted, 0 tasks retried"
        )
    finally:
        _release(gate, run_id)
        if sig == signal.SIGSTOP:
            stack.thaw_service("triggerer-1")
        else:
            stack.start_service("triggerer-1")


def _service_running(stack: AirflowStack, pid: int) -> str:
    """The service whose process tree holds ``pid``."""
    tops = {proc.pid: name for name, proc in stack.procs.items()}
    while pid > 1:
        if pid in tops:
            return tops[pid]
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError("the task's process is not under any service of the stack")


@pytest.mark.timeout(900)
def test_a_killed_celery_worker_leaves_its_job_to_the_retry_which_adopts_it(
    api_client: Any, ha: tuple[AirflowStack, str, Path], fault_report: Callable[[str], None]
) -> None:
    stack, namespace, gate = ha
    run_id = "worker-killed"
    stack.trigger("ha_in_worker", run_id)
    selector = naming.task_selector("ha_in_worker", "waits", run_id)

    def running() -> tuple[Any, ...]:
        """The waiting task's pid and its Job, once both run; else nothing."""
        rows = stack.query(
            "select pid from task_instance where dag_id = 'ha_in_worker' and run_id = ? and state = ?",
            run_id,
            "running",
        )
        jobs = jobs_in(api_client, namespace, selector)
        if rows and rows[0][0] and jobs and (jobs[0].status.active or 0) > 0:
            return int(rows[0][0]), jobs[0]
        return ()

    pid, started = _until(stack, "ha_in_worker", running, 180)
    worker = _service_running(stack, pid)
    assert worker.startswith("celery-worker-"), worker
    stack.signal_service(worker, signal.SIGKILL)
    killed = time.monotonic()
    stack.start_service(worker)
    logs = stack.home / "logs" / "dag_id=ha_in_worker"

    def adopted() -> bool:
        """Try 2 has found the Job the killed try made, still running (it is held)."""
        return any("adopting Job" in p.read_text(errors="replace") for p in logs.rglob("attempt=2.log"))

    try:
        _until(stack, "ha_in_worker", adopted, 300)
    finally:
        _release(gate, run_id)
    state, tasks, _ = stack.wait_runs(["ha_in_worker"], run_id, timeout=600)["ha_in_worker"]
    assert state == "success", f"{tasks}\n{stack.diagnose('ha_in_worker')}"
    ((try_number,),) = stack.query(
        "select try_number from task_instance where dag_id = 'ha_in_worker' and run_id = ?", run_id
    )
    assert try_number == 2, "the killed try should have been failed by the scheduler and retried"
    (job,) = jobs_in(api_client, namespace, selector)
    assert job.metadata.uid == started.metadata.uid, "the retry replaced the Job instead of adopting it"
    fault_report(
        f"SIGKILL to the Celery worker running a deferrable=False wait ({worker}); try 2 adopted the "
        f"same Job (1 Job in all), run succeeded {time.monotonic() - killed:.0f} s after the kill "
        "(task_instance_heartbeat_timeout 30 s)"
    )


@pytest.mark.timeout(900)
def test_a_scheduler_killed_mid_run_duplicates_nothing(
    api_client: Any, ha: tuple[AirflowStack, str, Path], fault_report: Callable[[str], None]
) -> None:
    """SIGKILL the scheduler while the run's tasks are partly queued, partly running, partly
    deferred; a new scheduler adopts or resets them. Retried tasks adopt their Jobs."""
    stack, namespace, gate = ha
    run_id = "scheduler-killed"
    stack.trigger("ha_failover", run_id)

    def some_deferred() -> int:
        """The number of deferred tasks once at least 10 are (the rest queued or running), else 0."""
        n = _deferred(stack, run_id)
        return n if n >= 10 else 0

    try:
        deferred = _until(stack, "ha_failover", some_deferred, 300)
        stack.signal_service("scheduler", signal.SIGKILL)
        stack.start_service("scheduler")
    finally:
        _release(gate, run_id)
    jobs, tries = _check_run(api_client, stack, namespace, run_id, one_try=False)
    fault_report(
        f"SIGKILL to the scheduler with {deferred} of {DEFERRED} tasks deferred, then a new one; "
        f"{jobs} Jobs, each made once, 0 deleted; task tries {dict(sorted(tries.items()))}"
    )


@pytest.mark.timeout(600)
def test_a_deferred_task_marked_failed_deletes_its_job_once(
    api_client: Any, ha: tuple[AirflowStack, str, Path], fault_report: Callable[[str], None]
) -> None:
    """The user's kill of a deferred task, through the REST API: the trigger's on_kill deletes
    its Job (and Pods) once, whichever triggerer holds it."""
    stack, namespace, _ = ha
    run_id = "marked-failed"
    stack.trigger("ha_kill", run_id)
    selector = naming.task_selector("ha_kill", "killed", run_id)

    def held() -> bool:
        """True once the Job runs and a triggerer holds the task's trigger."""
        jobs = jobs_in(api_client, namespace, selector)
        holder = stack.query(
            "select t.triggerer_id from task_instance ti join trigger t on ti.trigger_id = t.id "
            "where ti.dag_id = 'ha_kill' and ti.run_id = ? and ti.state = ?",
            run_id,
            "deferred",
        )
        return bool(jobs and (jobs[0].status.active or 0) > 0 and holder and holder[0][0] is not None)

    _until(stack, "ha_kill", held, 300)
    stack.api("PATCH", f"/api/v2/dags/ha_kill/dagRuns/{run_id}/taskInstances/killed", {"new_state": "failed"})
    marked = time.monotonic()
    deadline = marked + 120
    while jobs_in(api_client, namespace, selector) or pods_in(api_client, namespace, selector):
        assert time.monotonic() < deadline, f"the Job outlived the kill\n{stack.diagnose('ha_kill')}"
        time.sleep(0.5)
    gone = time.monotonic() - marked
    logs = (stack.home / "logs" / "dag_id=ha_kill").rglob("*.log*")
    deletions = sum(p.read_text(errors="replace").count("because the task was killed") for p in logs)
    assert deletions == 1, f"the Job was deleted {deletions} times\n{stack.diagnose('ha_kill')}"
    fault_report(
        f"deferred task marked failed through the API: its Job and Pods gone {gone:.0f} s later, 1 delete"
    )

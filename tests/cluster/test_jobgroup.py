"""JobGroupOperator and JobGroupSensor on the real local cluster, through Airflow."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pendulum
import pytest
from kubernetes import client

from airflow_batchjob.core import naming
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.sensors.jobgroup import JobGroupSensor
from tests.cluster.helpers import (
    jobs_in,
    new_dag,
    peak,
    pod_log,
    pods_in,
    pods_of_job,
    script_template,
    span_events,
)

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


def test_three_items_three_jobs(run_dag: Any, api_client: Any, namespace: str) -> None:
    with new_dag("fruit") as dag:
        JobGroupOperator(
            task_id="process",
            namespace=namespace,
            items=["apple", "banana", "cherry"],
            image="busybox:1.36",
            cmds=["sh", "-c", "echo Processing item $ITEM"],
        )
    result = run_dag(dag)["process"]
    assert result["state"] == "success"
    table = result["xcom"]["return_value"]
    assert [(r["index"], r["item"], r["state"]) for r in table] == [
        (0, "apple", "succeeded"),
        (1, "banana", "succeeded"),
        (2, "cherry", "succeeded"),
    ]
    group = result["xcom"]["group"]
    jobs = jobs_in(api_client, namespace, f"jobgroup={group}")
    assert sorted(j.metadata.name for j in jobs) == sorted(r["job"] for r in table)
    for row in table:
        assert f"-{row['item']}-" in row["job"]
        (pod,) = pods_of_job(api_client, namespace, row["job"])
        assert pod_log(api_client, namespace, pod.metadata.name) == f"Processing item {row['item']}\n"


def test_max_active_jobs_bounds_concurrency(run_dag: Any, namespace: str, tmp_path: Path) -> None:
    # /proc/uptime: busybox's date has no %N; the host's uptime clock, shared by every Pod.
    script = (
        'read t _ < /proc/uptime; echo "$t 1" >> /out/spans; sleep 1.5; '
        'read t _ < /proc/uptime; echo "$t -1" >> /out/spans'
    )
    with new_dag("bounded") as dag:
        JobGroupOperator(
            task_id="bounded",
            namespace=namespace,
            items=["a", "b", "c", "d"],
            max_active_jobs=2,
            job_template=script_template(script, tmp_path),
        )
    result = run_dag(dag)["bounded"]
    assert result["state"] == "success"
    events = span_events(tmp_path / "spans")
    assert len(events) == 8
    most = peak(events)
    assert most == 2, f"at most (and at some point) 2 Pods at once, saw {most}"


def test_failing_item_named_and_retry_runs_only_it(
    run_dag: Any, api_client: Any, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = (
        'if [ "$ITEM" = bad ] && [ ! -e /out/retried ]; then touch /out/retried; '
        'echo "cannot process $ITEM"; exit 3; fi; echo "ok $ITEM"'
    )
    with new_dag("one_bad") as dag:
        JobGroupOperator(
            task_id="group",
            namespace=namespace,
            items=["good", "bad"],
            job_template=script_template(script, tmp_path, backoffLimit=0),
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
        )
    batch = client.BatchV1Api(api_client)
    seen_uids: dict[str, set[str]] = {}
    stop = threading.Event()

    def record() -> None:  # every Job uid each item ever had
        while not stop.is_set():
            for j in batch.list_namespaced_job(namespace).items:
                key = j.metadata.annotations[naming.ANNOTATION_ITEM_KEY]
                seen_uids.setdefault(key, set()).add(j.metadata.uid)
            time.sleep(0.05)

    t = threading.Thread(target=record)
    t.start()
    result = run_dag(dag)["group"]
    stop.set()
    t.join()
    out = capfd.readouterr().out
    assert result["state"] == "success" and result["try_number"] == 2
    assert "1 of 2 items failed: 'bad'" in out
    assert "cannot process bad" in out
    assert len(seen_uids["good"]) == 1, "the succeeded item must be adopted, not run again"
    assert len(seen_uids["bad"]) == 2, "the failed item runs again in a fresh Job"
    pods = pods_in(api_client, namespace)
    good_pods = [p for p in pods if "-good-" in p.metadata.name]
    assert len(good_pods) == 1


HOSTILE = [
    'it\'s "quoted"',
    "$(rm -rf /)",
    "$(PATH)",
    "$$",
    "line1\nline2",
    "ünïcödé ✓",
    "A b",
    "a-b",
    "x" * 10_000,
    "; echo pwned > /tmp/pwned #",
]


def test_hostile_items_are_data(run_dag: Any, api_client: Any, namespace: str, tmp_path: Path) -> None:
    with new_dag("hostile") as dag:
        JobGroupOperator(
            task_id="hostile",
            namespace=namespace,
            items=HOSTILE,
            job_template=script_template('printf "%s" "$ITEM" > /out/$HOSTNAME', tmp_path),
        )
    result = run_dag(dag)["hostile"]
    assert result["state"] == "success"
    names = [r["job"] for r in result["xcom"]["return_value"]]
    assert len(set(names)) == len(HOSTILE)
    assert all(naming.is_dns1123_label(n) and len(n) <= 52 for n in names)
    seen = sorted(p.read_text() for p in tmp_path.iterdir())
    assert seen == sorted(HOSTILE)
    assert not Path("/tmp/pwned").exists()


def test_bad_items_fail_before_anything_is_created(
    run_dag: Any, api_client: Any, namespace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidJobTemplateError, match="item 1 is empty"):
        JobGroupOperator(task_id="x", items=["a", ""], image="busybox")
    with pytest.raises(InvalidJobTemplateError, match="duplicates item 0"):
        JobGroupOperator(task_id="y", items=["a", "a"], image="busybox")
    # A templated value is checked at run time, before any create (rendered natively: a real list).
    with new_dag("too_big", render_template_as_native_obj=True) as dag:
        JobGroupOperator(
            task_id="big",
            namespace=namespace,
            items="{{ ['ok', 'y' * 100000] }}",
            image="busybox",
            cmds=["true"],
            retries=2,
        )
    result = run_dag(dag)["big"]
    assert "item 1 is 100000 bytes, over the 65536-byte limit" in capfd.readouterr().out
    assert result["state"] == "failed" and result["try_number"] == 1
    assert not jobs_in(api_client, namespace)


# 200 Jobs of one shell test each: the subject is the fan-out and its per-item table, not what a
# container does. 144 s of the real-node lane (the suite's longest) in CI run ci9; the agent
# starts Pods several times faster.
@pytest.mark.agent_node
def test_two_hundred_items_in_one_task(run_dag: Any, namespace: str) -> None:
    items = [{"id": i, "name": f"part-{i}"} for i in range(200)]
    with new_dag("many") as dag:
        JobGroupOperator(
            task_id="many",
            namespace=namespace,
            items=items,
            image="busybox",
            cmds=["sh", "-c", 'test "$NAME" = "part-$ID"'],
        )
    result = run_dag(dag)["many"]
    assert result["state"] == "success"
    table = result["xcom"]["return_value"]
    assert len(table) == 200 and {r["state"] for r in table} == {"succeeded"}


def _group_of(api_client: Any, ns: str, scripts: list[str]) -> None:
    batch = client.BatchV1Api(api_client)
    for i, script in enumerate(scripts):
        body = script_template(script, backoffLimit=0)
        body["metadata"] = {"name": f"nightly-{i}", "labels": {"jobgroup": "nightly"}}
        batch.create_namespaced_job(ns, body)


def test_group_sensor_all_finished(run_dag: Any, api_client: Any, namespace: str) -> None:
    _group_of(api_client, namespace, ["sleep 1", "true", "sleep 2"])
    with new_dag("group_sensor_ok") as dag:
        JobGroupSensor(
            task_id="wait",
            namespace=namespace,
            label_selector="jobgroup=nightly",
            expected_jobs=3,
            timeout=120,
        )
    result = run_dag(dag)["wait"]
    assert result["state"] == "success"
    assert result["xcom"]["return_value"]["succeeded"] == 3


def test_group_sensor_fails_on_any_failure(run_dag: Any, api_client: Any, namespace: str) -> None:
    # The first Job runs until deleted (no sleep the failure could outlast on a slow machine).
    _group_of(api_client, namespace, ["exec sleep 3600", "exit 1"])
    with new_dag("group_sensor_fail") as dag:
        JobGroupSensor(task_id="wait", namespace=namespace, label_selector="jobgroup=nightly", timeout=120)
    result = run_dag(dag)["wait"]
    assert result["state"] == "failed"
    jobs = jobs_in(api_client, namespace)
    assert any(not any(c.type == "Complete" for c in (j.status.conditions or [])) for j in jobs)


def test_group_sensor_succeeded_at_least(run_dag: Any, api_client: Any, namespace: str) -> None:
    _group_of(api_client, namespace, ["true", "true", "sleep 60"])
    with new_dag("group_sensor_two") as dag:
        JobGroupSensor(
            task_id="wait",
            namespace=namespace,
            label_selector="jobgroup=nightly",
            succeeded_at_least=2,
            timeout=120,
        )
    result = run_dag(dag)["wait"]
    assert result["state"] == "success" and result["xcom"]["return_value"]["succeeded"] >= 2

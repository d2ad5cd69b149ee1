"""The Batch view's pure parts (``core/batchview.py``), its links and its plugin's registration.

Runs in the floor lane too (Airflow 3.0), where plugins cannot add a tab to the task instance
page: there the "Batch view" link goes to the plugin's page directly, as on every version.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_batchjob import config
from airflow_batchjob.core.batchview import (
    RESULT_CHARS,
    check_link_template,
    job_link,
    live_cells,
    merge_results,
    recorded_cells,
    snapshot,
)
from airflow_batchjob.core.group import ANNOTATION_ITEM_INDEX
from airflow_batchjob.core.naming import ANNOTATION_ITEM_KEY
from airflow_batchjob.links import BatchViewLink, JobLink, view_path
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.lifecycle import DeleteJobOperator
from airflow_batchjob.sensors.jobgroup import JobGroupSensor

FIXTURES = Path(__file__).parent / "fixtures" / "jobs"
NOW = 1_800_000_000.0


def _job(fixture: str, name: str, index: int | None = None, item: str | None = None) -> dict[str, Any]:
    job = copy.deepcopy(json.loads((FIXTURES / f"{fixture}.json").read_text()))
    job["metadata"]["name"] = name
    annotations = job["metadata"].setdefault("annotations", {})
    if index is not None:
        annotations[ANNOTATION_ITEM_INDEX] = str(index)
    if item is not None:
        annotations[ANNOTATION_ITEM_KEY] = item
    return dict(job)


def _pod(job: str, phase: str, exit_code: int | None = None, index: int | None = None, at: str = "1") -> Any:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [
            {"name": "main", "state": {"terminated": {"exitCode": exit_code, "reason": "Error"}}}
        ]
    annotations = {"batch.kubernetes.io/job-completion-index": str(index)} if index is not None else {}
    return {
        "metadata": {
            "name": f"{job}-pod-{phase.lower()}-{at}",
            "creationTimestamp": f"2026-11-23T12:36:3{at}Z",
            "labels": {"batch.kubernetes.io/job-name": job},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "main"}]},
        "status": status,
    }


def test_a_group_is_one_cell_per_item_in_item_order() -> None:
    jobs = [
        _job("failed", "j2", 2, "c"),
        _job("complete", "j0", 0, "a"),
        _job("running", "j1", 1, "b"),
    ]
    pods = [_pod("j2", "Failed", exit_code=3), _pod("j1", "Running")]
    cells = live_cells(jobs, pods, NOW)
    assert [(c["label"], c["state"]) for c in cells] == [
        ("a", "succeeded"),
        ("b", "running"),
        ("c", "failed"),
    ]
    failed = cells[2]
    assert (failed["exit_code"], failed["reason"], failed["pod"]) == (
        3,
        "BackoffLimitExceeded",
        "j2-pod-failed-1",
    )
    assert cells[1]["pod"] == "j1-pod-running-1" and cells[1]["seconds"] > 0


def test_a_running_job_whose_pods_failed_before_is_retried() -> None:
    job = _job("running", "j0", 0, "a")
    job["status"]["failed"] = 1
    cells = live_cells([job], [_pod("j0", "Failed", exit_code=1, at="1"), _pod("j0", "Running", at="2")], NOW)
    assert cells[0]["state"] == "retried" and cells[0]["exit_code"] == 1 and cells[0]["failures"] == 1


def test_an_indexed_job_is_one_cell_per_index() -> None:
    job = _job("failed-indexes", "idx")
    pods = [_pod("idx", "Failed", exit_code=5, index=1), _pod("idx", "Failed", exit_code=6, index=3)]
    cells = live_cells([job], pods, NOW)
    assert [(c["key"], c["state"], c.get("exit_code")) for c in cells] == [
        ("0", "succeeded", None),
        ("1", "failed", 5),
        ("2", "succeeded", None),
        ("3", "failed", 6),
    ]


def test_ten_thousand_indexes_are_one_list_of_cells() -> None:
    """The picture of a 10,000-index Job from its status and its few unfinished Pods."""
    job = _job("running", "nightly-export-run-2026-12-07-batch-indexed-a1b2c3d4-e5f6")  # a real length
    job["spec"].update(completionMode="Indexed", completions=10_000, parallelism=100)
    job["status"].update(completedIndexes="0-4999", failedIndexes="7000", active=100)
    pods = [_pod(job["metadata"]["name"], "Running", index=i, at=str(i % 10)) for i in range(5000, 5100)]
    t0 = time.perf_counter()
    snap = snapshot(live_cells([job], pods, NOW), "live", NOW)
    built = time.perf_counter() - t0
    assert snap["total"] == 10_000
    assert snap["counts"] == {
        "pending": 4899,
        "running": 100,
        "retried": 0,
        "succeeded": 5000,
        "failed": 1,
        "skipped": 0,
    }
    size = len(json.dumps(snap))
    print(f"10,000 indexes: built in {built * 1000:.0f} ms, {size / 1e6:.2f} MB of JSON")
    assert size < 1_000_000  # one refresh stays well under a megabyte


def test_the_recorded_table_is_the_picture_once_the_jobs_are_gone() -> None:
    table = [
        {"index": 0, "item": "a", "job": "j0", "state": "succeeded", "result": {"n": 1}, "failed": 0},
        {"index": 1, "item": "b", "job": "j1", "state": "skipped", "reason": "SkipOnExitCode"},
        {
            "index": 2,
            "item": "c",
            "job": "j2",
            "state": "failed",
            "reason": "BackoffLimitExceeded",
            "failed": 2,
        },
        {"index": 3, "item": "d", "job": "j3", "state": "succeeded", "result": "x" * 1000},
    ]
    cells = recorded_cells(table)
    assert [(c["label"], c["state"]) for c in cells] == [
        ("a", "succeeded"),
        ("b", "skipped"),
        ("c", "failed"),
        ("d", "succeeded"),
    ]
    assert cells[0]["result"] == "{'n': 1}" and cells[2]["failures"] == 2
    assert len(cells[3]["result"]) == RESULT_CHARS and cells[3]["result"].endswith("…")
    assert [c["state"] for c in recorded_cells(["r0", "r1"])] == ["succeeded", "succeeded"]
    assert recorded_cells(None) == [] and recorded_cells({"not": "a table"}) == []
    snap = snapshot(cells, "recorded", NOW, finished=True)
    assert (snap["done"], snap["total"], snap["progress"]) == (4, 4, 1.0)


def test_live_cells_take_the_recorded_results_and_skips() -> None:
    live = live_cells([_job("complete", "j0", 0, "a"), _job("failed", "j1", 1, "b")], [], NOW)
    merge_results(live, recorded_cells([
        {"index": 0, "item": "a", "state": "succeeded", "result": 7},
        {"index": 1, "item": "b", "state": "skipped"},
    ]))  # fmt: skip
    assert [(c["state"], c.get("result")) for c in live] == [("succeeded", "7"), ("skipped", None)]


def test_the_job_link_is_off_by_default_and_encodes_its_values() -> None:
    assert config.get("job_link_template") == ""
    assert job_link("", "ns", "name", "a=b") == ""
    link = job_link(
        "https://k8s.example/#/jobs/{namespace}?labelSelector={selector}&q={name}", "ns1", "g-1", "a=b,!c"
    )
    assert link == "https://k8s.example/#/jobs/ns1?labelSelector=a%3Db%2C%21c&q=g-1"
    with pytest.raises(ValueError, match=r"unknown placeholder.*'pod'"):
        check_link_template("https://x/{pod}")


def _ti_key(map_index: int = -1) -> Any:
    return SimpleNamespace(
        dag_id="my dag", run_id="manual__2026-01-01T00:00:00+00:00", task_id="t", map_index=map_index
    )


def test_the_batch_view_link_goes_to_the_plugins_page_on_every_airflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow 3.0 has no task instance tab for plugins: the link is the page itself, everywhere."""
    op = JobGroupOperator(task_id="t", items=["a"], image="busybox", cmds=["true"])
    assert BatchViewLink().get_link(op, ti_key=_ti_key()) == (
        "/batchjob/dags/my%20dag/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t"
    )
    assert view_path("d", "r", "t", 3) == "/batchjob/dags/d/runs/r/tasks/t?map_index=3"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/base/")
    assert (
        BatchViewLink()
        .get_link(op, ti_key=_ti_key(2))
        .startswith("https://airflow.example/base/batchjob/dags/")
    )


def test_the_job_link_uses_the_task_instances_selector(monkeypatch: pytest.MonkeyPatch) -> None:
    op = JobGroupOperator(task_id="t", items=["a"], image="busybox", cmds=["true"], namespace="ns1")
    assert JobLink().get_link(op, ti_key=_ti_key()) == ""  # off by default: no button
    monkeypatch.setenv("AIRFLOW__BATCHJOB__JOB_LINK_TEMPLATE", "https://dash/{namespace}/{selector}")
    link = JobLink().get_link(op, ti_key=_ti_key())
    assert link.startswith("https://dash/ns1/batchjob.airflow.io%2Fdag%3D"), link


def test_every_operator_and_sensor_carries_both_links() -> None:
    tasks = [
        JobGroupOperator(task_id="g", items=["a"], image="busybox", cmds=["true"]),
        JobGroupSensor(task_id="s", label_selector="jobgroup=x", expected_jobs=1),
        DeleteJobOperator(task_id="d", job_name="x"),
    ]
    for task in tasks:
        assert [link.name for link in task.operator_extra_links] == ["Batch view", "Kubernetes Jobs"], task


def test_the_plugin_serves_the_page_and_adds_the_tab_only_from_airflow_3_1() -> None:
    from airflow_batchjob.plugins.app import _index, _page
    from airflow_batchjob.plugins.batchview import BatchViewPlugin
    from airflow_batchjob.plugins.records import AIRFLOW_3_1

    assert [a["url_prefix"] for a in BatchViewPlugin.fastapi_apps] == ["/batchjob"]
    views = getattr(BatchViewPlugin, "external_views", [])
    if AIRFLOW_3_1:
        assert [v["destination"] for v in views] == ["task_instance"]
        assert "{DAG_ID}" in views[0]["href"] and "{MAP_INDEX}" in views[0]["href"]
    else:  # Airflow 3.0 would refuse the key: the view is reached by its link only
        assert views == []
    assert (_index("3"), _index("-1"), _index("{MAP_INDEX}")) == (3, -1, -1)  # unmapped: left unfilled
    page = _page("<script>x</script>", "r", "t", -1)
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page

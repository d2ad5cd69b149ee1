"""Results from Pods through the termination message (``core/results.py``) and the worker's check."""

from __future__ import annotations

import json
from typing import Any

from airflow_batchjob.core.results import (
    MAX_RESULT_BYTES,
    RESULT_ENV,
    add_result_env,
    parse_result,
    pod_result,
    results_by_index,
    results_in_order,
)
from airflow_batchjob.worker.run import new_result_file, take_result


def pod(
    name: str, message: str | None, *, phase: str = "Succeeded", code: int = 0, **meta: Any
) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": code, "finishedAt": meta.pop("finished", "")}
    if message is not None:
        term["message"] = message
    return {
        "metadata": {"name": name, **meta},
        "spec": {"containers": [{"name": "main"}, {"name": "side"}]},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "side", "state": {"terminated": {"exitCode": 0, "message": "not mine"}}},
                {"name": "main", "state": {"terminated": term}},
            ],
        },
    }


def indexed(name: str, index: int, message: str, created: str) -> dict[str, Any]:
    return pod(
        name,
        message,
        annotations={"batch.kubernetes.io/job-completion-index": str(index)},
        creationTimestamp=created,
    )


def test_json_values_of_the_main_container() -> None:
    assert pod_result(pod("p", '{"rows": 10}')).value == {"rows": 10}  # type: ignore[union-attr]
    assert pod_result(pod("p", "42\n")).value == 42  # type: ignore[union-attr]
    empty = pod_result(pod("p", None))
    assert empty is not None and empty.ok and empty.value is None
    assert pod_result(pod("p", "1", phase="Failed", code=1)) is None


def test_unusable_results_say_why_and_name_the_pod() -> None:
    not_json = parse_result("p-1", None, "rows=10")
    assert not not_json.ok and "Pod p-1" in (not_json.error or "") and "not JSON" in (not_json.error or "")
    cut = parse_result("p-2", 3, '"' + "x" * MAX_RESULT_BYTES)
    assert not cut.ok and f"{MAX_RESULT_BYTES - 1}-byte limit" in (cut.error or "")
    fits = parse_result("p-3", 3, json.dumps("x" * (MAX_RESULT_BYTES - 3)))
    assert fits.ok and len(fits.value) == MAX_RESULT_BYTES - 3


def test_worker_envelope_carries_the_result() -> None:
    summary = json.dumps({"mode": "indexed", "index": 2, "exit_code": 0, "result": [1, 2]})
    assert parse_result("p", 2, summary, envelope=True).value == [1, 2]
    assert parse_result("p", 2, '{"mode": "indexed"}', envelope=True).value is None


def test_latest_pod_per_index_and_order() -> None:
    pods = [
        indexed("a", 1, "1", "2026-01-01T00:00:02Z"),
        indexed("b", 0, "0", "2026-01-01T00:00:01Z"),
        indexed("c", 1, "11", "2026-01-01T00:00:05Z"),  # a later Pod of index 1
    ]
    by_index = results_by_index(pods)
    assert {i: r.value for i, r in by_index.items()} == {0: 0, 1: 11}
    assert [r.value for r in results_in_order(pods)][:1] == [0]


def test_result_env_points_at_the_termination_message() -> None:
    body: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}}
    add_result_env(body)
    assert body["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": RESULT_ENV, "value": "/dev/termination-log"}
    ]
    custom: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"name": "m", "terminationMessagePath": "/out/msg"}]}}}
    }
    add_result_env(custom)
    assert custom["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "/out/msg"


def test_worker_takes_a_result_that_fits_beside_its_summary() -> None:
    path = new_result_file()
    with open(path, "w") as f:
        f.write('{"sum": 3}')
    summary: dict[str, Any] = {"mode": "indexed", "index": 0, "exit_code": 0}
    assert take_result(path, summary, "item 0") is None and summary["result"] == {"sum": 3}
    path = new_result_file()
    with open(path, "w") as f:
        f.write(json.dumps("y" * 4070))  # fits alone, not beside the summary
    error = take_result(path, summary := {"mode": "indexed", "index": 0, "exit_code": 0}, "item 0")
    assert error is not None and "item 0" in error and "result" not in summary
    path = new_result_file()
    with open(path, "w") as f:
        f.write("nope")
    assert "not JSON" in (take_result(path, {}, "item 5") or "")

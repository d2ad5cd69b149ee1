"""``@task.batch_map`` when the DAG is parsed: registered with Airflow, bad input refused with the fix."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, task

from airflow_batchjob import get_provider_info
from airflow_batchjob.core.batchmap import BOOT_KEY
from airflow_batchjob.decorators.batch_map import BatchMapOperator, batch_map_task
from airflow_batchjob.exceptions import InvalidJobTemplateError

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def double(n: int, factor: int = 2) -> int:
    return n * factor


def test_registered_as_task_batch_map() -> None:
    entry = {"name": "batch_map", "class-name": "airflow_batchjob.decorators.batch_map.batch_map_task"}
    assert entry in get_provider_info()["task-decorators"]
    assert task.batch_map is batch_map_task


def test_the_call_makes_one_indexed_job_task() -> None:
    with DAG("bm_parse", schedule=None, start_date=START):

        @task
        def numbers() -> list[int]:
            return [1, 2, 3]

        out = task.batch_map(image="python:3.12-slim", parallelism=5)(double)(numbers(), factor=3)
        literal = task.batch_map(image="python:3.12-slim", task_id="lit")(double)([1, 2, 3])
    op = out.operator
    assert isinstance(op, BatchMapOperator) and op.upstream_task_ids == {"numbers"}
    assert op.cmds == ["python3", "-u", f"/batchjob/items/{BOOT_KEY}", "/batchjob/items"]
    assert op.use_worker is False and op.multiple_outputs is False and op.parallelism == 5
    assert op.map_kwargs == {"factor": 3} and op.function.name == "double"
    assert "items" not in op.template_fields and {"op_args", "op_kwargs", "image"} <= set(op.template_fields)
    assert literal.operator.completions == 3  # from the literal items


def test_items_are_checked_at_parse_time_naming_the_fix() -> None:
    deco = batch_map_task(image="x")
    with pytest.raises(InvalidJobTemplateError, match="got no items"):
        deco(double)(factor=2)
    with pytest.raises(InvalidJobTemplateError, match="pass a list"):
        deco(double)("1,2,3")
    with pytest.raises(InvalidJobTemplateError, match=r"the items \(n, the first argument\) are a dict"):
        deco(double)(n={"a": 1})
    with pytest.raises(InvalidJobTemplateError, match=r"item 1 .* not JSON-serialisable"):
        deco(double)([1, {2}])
    with pytest.raises(InvalidJobTemplateError, match="empty"):
        deco(double)([])
    with pytest.raises(InvalidJobTemplateError, match="not JSON-serialisable"):
        deco(double)([1], factor=object())


def test_parameters_that_do_not_apply_are_refused() -> None:
    for name, value, match in (
        ("cmds", ["sh"], "use IndexedJobOperator"),
        ("items", [1], "first argument"),
        ("use_worker", True, "bootstrap"),
        ("wait_until_job_complete", False, "returns the results"),
        ("python_command", "python3", r"as a list, e\.g\. \['python3'\]"),
        ("skip_on_exit_code", 3, "pod_failure_policy"),
    ):
        with pytest.raises(InvalidJobTemplateError, match=match):
            batch_map_task(image="x", **{name: value})(double)([1])
    with pytest.raises(InvalidJobTemplateError, match="one list"):
        batch_map_task(image="x", multiple_outputs=True)
    with pytest.raises(InvalidJobTemplateError, match="needs an image"):
        batch_map_task()(double)([1])


def test_functions_that_cannot_travel_are_refused() -> None:
    import math

    def outside(n: int) -> float:
        return math.sqrt(n)

    with pytest.raises(InvalidJobTemplateError, match="uses math from the function that encloses it"):
        batch_map_task(image="x")(outside)([1])

    def needs_context(n: int, ti: Any = None, *, params: Any) -> int:
        return n

    with pytest.raises(InvalidJobTemplateError, match=r"'params'.*context"):
        batch_map_task(image="x")(needs_context)([1])


def test_python_command_and_mount_path_shape_the_command() -> None:
    op = batch_map_task(
        image="x", python_command=["/opt/py/bin/python", "-X", "utf8"], items_mount_path="/in/"
    )(double)([1]).operator
    assert op.cmds == ["/opt/py/bin/python", "-X", "utf8", "-u", f"/in/{BOOT_KEY}", "/in/"]

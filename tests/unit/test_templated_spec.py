"""The Job spec parameters are template fields (issue 26 item 5): Jinja renders them with Airflow's
own templating, rendered text is converted and checked before the task creates anything, and a
literal value is still checked when the DAG is parsed. The Jobs are built offline (no cluster)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest
from airflow.sdk import DAG

from airflow_batchjob.core.specvalues import SPEC_FIELDS
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator


class TI:
    """What ``build`` reads of the task instance, and the XCom an upstream task returned."""

    dag_id, task_id, run_id, map_index, try_number = "d", "t", "r", -1, 1

    def __init__(self, xcom: Any = None) -> None:
        self.xcom = xcom

    def xcom_pull(self, **_: Any) -> Any:
        return self.xcom


def context(xcom: Any = None, **params: Any) -> Any:
    return {"ti": TI(xcom), "params": params, "run_id": "r"}


def rendered_job(op: BatchJobOperator, ctx: Any) -> dict[str, Any]:
    op.render_template_fields(ctx)
    return op.build(ctx, "ns")


def test_every_spec_parameter_is_a_template_field_of_every_pattern() -> None:
    for cls in (BatchJobOperator, IndexedJobOperator, JobGroupOperator, QueueJobOperator):
        assert set(SPEC_FIELDS) <= set(cls.template_fields), cls.__name__
    assert "count" in QueueJobOperator.template_fields
    doc = BatchJobOperator.__doc__ or ""
    for name in SPEC_FIELDS:
        line = re.search(rf":param {name}:(.*?)(?=:param|\n\n)", doc, re.S)
        assert line and "(templated)" in line.group(1), name


def test_a_templated_parallelism_becomes_the_int_in_the_job() -> None:
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        parallelism="{{ params.p }}",
        completions="{{ params.p * 2 }}",
        backoff_limit="{{ params.b }}",
        active_deadline_seconds="{{ params.deadline }}",
        suspend="{{ params.suspend }}",
    )
    spec = rendered_job(op, context(p=3, b=0, deadline=600, suspend=True))["spec"]
    assert spec["parallelism"] == 3 and spec["completions"] == 6
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 600
    assert spec["suspend"] is True


def test_every_spec_parameter_renders_into_an_indexed_job() -> None:
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        completions="{{ params.n }}",
        parallelism="{{ params.n }}",
        completion_mode="{{ params.mode }}",
        backoff_limit_per_index="{{ params.per_index }}",
        max_failed_indexes="{{ params.max_failed }}",
        pod_replacement_policy="{{ params.replacement }}",
        ttl_seconds_after_finished="{{ params.ttl }}",
        suspend="{{ params.suspend }}",
        pod_failure_policy={
            "rules": [{"action": "{{ params.action }}", "onExitCodes": {"operator": "In", "values": [42]}}]
        },
        success_policy="{{ params.success | tojson }}",  # text rendering: JSON text, read as a dict
        wait_until_job_complete=False,  # the TTL goes on the Job at once
    )
    ctx = context(
        n=4,
        mode="Indexed",
        per_index=1,
        max_failed=2,
        replacement="Failed",
        ttl=60,
        suspend=False,
        action="FailIndex",
        success={"rules": [{"succeededCount": 3}]},
    )
    spec = rendered_job(op, ctx)["spec"]
    assert (spec["completions"], spec["parallelism"], spec["completionMode"]) == (4, 4, "Indexed")
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (1, 2)
    assert spec["podReplacementPolicy"] == "Failed" and spec["ttlSecondsAfterFinished"] == 60
    assert spec["suspend"] is False
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailIndex"
    assert spec["successPolicy"] == {"rules": [{"succeededCount": 3}]}


def test_a_native_dag_renders_values_and_leaves_literal_strings_alone() -> None:
    with DAG("native", schedule=None, render_template_as_native_obj=True):
        op = BatchJobOperator(
            task_id="t",
            image="busybox",
            parallelism="{{ params.p }}",
            completions=3,
            completion_mode="Indexed",
            backoff_limit_per_index=1,
            # Literal strings that native rendering would turn into a bool and a tuple.
            pod_failure_policy={
                "rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    {"action": "{{ params.action }}", "onExitCodes": {"operator": "In", "values": [3]}},
                ]
            },
            success_policy={"rules": [{"succeededIndexes": "0,2"}]},
        )
    spec = rendered_job(op, context(p=2, action="FailJob"))["spec"]
    assert spec["parallelism"] == 2
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"][0]["status"] == "True" and rules[1]["action"] == "FailJob"
    assert spec["successPolicy"]["rules"][0]["succeededIndexes"] == "0,2"


def test_an_xcom_is_accepted_at_parse_time_and_resolved_into_the_job() -> None:
    from airflow.sdk import task

    with DAG("xcom", schedule=None):

        @task
        def workers() -> int:
            return 4

        size = workers()
        op = BatchJobOperator(task_id="t", image="busybox", parallelism=size)
    assert op.upstream_task_ids == {"workers"}
    assert rendered_job(op, context(xcom=4))["spec"]["parallelism"] == 4


@pytest.mark.parametrize(
    ("kwargs", "params", "message"),
    [
        ({"parallelism": "{{ params.v }}"}, {"v": "lots"}, "parallelism='lots' (as rendered): give a"),
        ({"backoff_limit": "{{ params.v }}"}, {"v": 2.5}, "backoff_limit='2.5' (as rendered)"),
        ({"suspend": "{{ params.v }}"}, {"v": "maybe"}, "suspend='maybe' (as rendered): give True or False"),
        (
            {"pod_failure_policy": "{{ params.v }}"},
            {"v": "FailJob"},
            "pod_failure_policy='FailJob' (as rendered): give a dict",
        ),
    ],
)
def test_a_rendered_value_of_the_wrong_type_is_refused_before_any_api_call(
    kwargs: dict[str, Any], params: dict[str, Any], message: str
) -> None:
    op = BatchJobOperator(task_id="t", image="busybox", **kwargs)  # accepted at parse time
    ctx = context(**params)
    op.render_template_fields(ctx)
    # No cluster, no connection: any call to one would fail otherwise. The check comes first.
    with pytest.raises(InvalidJobTemplateError) as e:
        op.execute(ctx)
    assert "task t: " in str(e.value) and message in str(e.value)
    with pytest.raises(InvalidJobTemplateError, match=re.escape(message)):
        op.build(ctx, "ns")


def test_a_rendered_value_out_of_range_gets_the_parse_time_message() -> None:
    with pytest.raises(InvalidJobTemplateError) as at_parse:
        BatchJobOperator(task_id="t", image="busybox", parallelism=-1)
    op = BatchJobOperator(task_id="t", image="busybox", parallelism="{{ params.p }}")
    ctx = context(p=-1)
    op.render_template_fields(ctx)
    with pytest.raises(InvalidJobTemplateError) as at_run:
        op.build(ctx, "ns")
    assert str(at_run.value) == str(at_parse.value)
    assert "spec.parallelism must be a non-negative integer, got -1" in str(at_run.value)


@pytest.mark.parametrize("name", SPEC_FIELDS)
def test_jinja_in_any_spec_parameter_is_accepted_at_parse_time(name: str) -> None:
    op = BatchJobOperator(task_id="t", image="busybox", **{name: "{{ params.value }}"})
    assert getattr(op, name) == "{{ params.value }}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parallelism": "3"}, "spec.parallelism must be a non-negative integer, got '3'"),
        ({"completion_mode": "Sometimes"}, "completionMode must be NonIndexed or Indexed"),
        ({"max_failed_indexes": 1}, "max_failed_indexes requires backoff_limit_per_index"),
        # With another parameter templated, each literal one is still checked on its own.
        ({"parallelism": "{{ params.p }}", "backoff_limit": -1}, "backoff_limit=-1: give a non-negative"),
        ({"completions": "{{ params.c }}", "suspend": "yes"}, "suspend='yes': give True or False"),
        (
            {"parallelism": "{{ params.p }}", "pod_replacement_policy": "Never"},
            "pod_replacement_policy='Never': give one of Failed, TerminatingOrFailed",
        ),
        ({"parallelism": "{{ params.p }}", "pod_failure_policy": "FailJob"}, "pod_failure_policy must be"),
    ],
)
def test_literal_values_are_still_checked_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJobTemplateError) as e:
        BatchJobOperator(task_id="t", image="busybox", **kwargs)
    assert message in str(e.value)


def test_an_indexed_job_takes_a_templated_parallelism() -> None:
    op = IndexedJobOperator(
        task_id="t",
        image="busybox",
        cmds=["cat"],
        items="{{ params.items }}",
        parallelism="{{ params.p }}",
        backoff_limit_per_index="{{ params.retries }}",
    )
    spec = rendered_job(op, context(items=["a", "b"], p=2, retries=1))["spec"]
    assert (spec["parallelism"], spec["backoffLimitPerIndex"], spec["completionMode"]) == (2, 1, "Indexed")


def test_queue_job_parallelism_and_count_are_templated() -> None:
    pytest.importorskip("redis")
    pytest.importorskip("pika")

    def queue(mode: Any, **kwargs: Any) -> QueueJobOperator:
        return QueueJobOperator(task_id="q", mode=mode, queue_name="q", image="b", cmds=["x"], **kwargs)

    workers = queue("variable", parallelism="{{ params.p }}")
    assert rendered_job(workers, context(p="5"))["spec"]["parallelism"] == 5
    zero = queue("variable", parallelism="{{ params.p }}")
    zero.render_template_fields(context(p=0))
    with pytest.raises(
        InvalidJobTemplateError, match="parallelism=0: QueueJobOperator needs parallelism >= 1"
    ):
        zero.execute(context())

    per_item = queue("pod_per_item", count="{{ params.n }}")
    assert rendered_job(per_item, context(n=7))["spec"]["completions"] == 7
    lots = queue("pod_per_item", count="{{ params.n }}")
    lots.render_template_fields(context(n="lots"))
    with pytest.raises(InvalidJobTemplateError, match=r"count='lots' \(as rendered\)"):
        lots.execute(context())

    assert queue("pod_per_item", count="5").overrides.completions == 5  # literal text, read as before
    with pytest.raises(InvalidJobTemplateError, match="count='lots'"):
        queue("pod_per_item", count="lots")  # literal: refused at parse time
    with pytest.raises(InvalidJobTemplateError, match="parallelism >= 1"):
        queue("variable", parallelism=0)


def test_a_mapped_task_renders_its_spec_parameters() -> None:
    with DAG("mapped", schedule=None, params={"p": 3, "action": "FailJob"}) as dag:
        mapped = BatchJobOperator.partial(
            task_id="m",
            image="busybox",
            parallelism="{{ params.p }}",
            pod_failure_policy={
                "rules": [{"action": "{{ params.action }}", "onExitCodes": {"operator": "In", "values": [3]}}]
            },
        ).expand(cmds=[["a"], ["b"]])

    class DagRun:
        conf: ClassVar[dict[str, Any]] = {}

    ti = TI()
    ti.map_index = 1
    ctx = {"ti": ti, "params": {"p": 3, "action": "FailJob"}, "dag": dag, "dag_run": DagRun()}
    mapped.render_template_fields(ctx)  # type: ignore[arg-type]
    task = ctx["task"]
    assert isinstance(task, BatchJobOperator) and task.cmds == ["b"]
    spec = task.build(ctx, "ns")["spec"]  # type: ignore[arg-type]
    assert spec["parallelism"] == 3 and spec["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_a_dag_with_templated_spec_parameters_serializes() -> None:
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow < 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer

    with DAG("serialized", schedule=None) as dag:
        BatchJobOperator(task_id="t", image="b", parallelism="{{ params.p }}", suspend=True)
    task = next(t["__var"] for t in Serializer.to_dict(dag)["dag"]["tasks"])
    assert task["parallelism"] == "{{ params.p }}" and task["suspend"] is True

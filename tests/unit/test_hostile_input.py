"""Hostile input through the operators' Job building (pure: nothing talks to Kubernetes here).

Run ids as Airflow writes them for manual, scheduled and backfill runs (``:``, ``+``, offsets),
arbitrary unicode ids, items full of shell and YAML syntax, queue names with shell syntax: every
Job gets a valid, distinct name and valid labels; ids, items and commands travel as data (argv
elements, env values, annotations), never spliced into a shell line or re-parsed as YAML; bad
input is refused with ``InvalidJobTemplateError`` before anything could be created.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_batchjob.core import naming
from airflow_batchjob.core.items import UNSAFE_PREFIXES, UNSAFE_VARS, item_env, normalize_items
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.queue import QueueJobOperator

SHELLISH = ["; rm -rf /", "$(id)", "`id`", "$HOME", "a' b\"c", "x\ny", "&&", "|", "*", "$$", "$(ITEM)"]
YAMLISH = ["a: b", "- x", "{{ ds }}", "{% raw %}", "!!python/object:os.system", "? k\n: v", "---\nkind: Pod"]
HOSTILE_TEXT = st.sampled_from(SHELLISH + YAMLISH) | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=60
)


def run_ids() -> st.SearchStrategy[str]:
    """Run ids as Airflow makes them (manual, scheduled, backfill, asset-triggered) and free text."""
    stamps = st.datetimes().map(lambda d: d.isoformat())
    offsets = st.sampled_from(["+00:00", "+01:00", "-05:30", "+14:00", ""])
    kinds = st.sampled_from(["manual", "scheduled", "backfill", "asset_triggered", "dataset_triggered"])
    made = st.builds(lambda k, s, o: f"{k}__{s}{o}", kinds, stamps, offsets)
    return made | HOSTILE_TEXT


def context(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, try_number=1)
    return {"ti": ti}


def assert_valid(body: dict[str, Any]) -> None:
    meta = body["metadata"]
    assert naming.is_dns1123_label(meta["name"]) and len(meta["name"]) <= naming.JOB_NAME_MAX
    pod_meta = body["spec"]["template"].get("metadata") or {}
    for labels in (meta.get("labels") or {}, pod_meta.get("labels") or {}):
        for value in labels.values():
            assert naming.is_label_value(value), value


IDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_id=IDS, task_id=IDS, run_a=run_ids(), run_b=run_ids(), cmd=st.lists(HOSTILE_TEXT, max_size=4))
def test_any_ids_give_valid_distinct_names_and_commands_stay_argv(
    dag_id: str, task_id: str, run_a: str, run_b: str, cmd: list[str]
) -> None:
    op = BatchJobOperator(task_id="t", image="busybox", cmds=["prog", *cmd], env={"X": "v"})
    a = op.build(context(dag_id, task_id, run_a), "ns")
    b = op.build(context(dag_id, task_id, run_b), "ns")
    assert_valid(a)
    assert_valid(b)
    if run_a != run_b:
        assert a["metadata"]["name"] != b["metadata"]["name"]
        assert a["metadata"]["labels"][naming.LABEL_RUN] != b["metadata"]["labels"][naming.LABEL_RUN]
    # The exact ids are kept (annotations take any text); the command is the user's argv, unchanged.
    assert a["metadata"]["annotations"][naming.ANNOTATION_RUN_ID] == run_a
    assert a["metadata"]["annotations"][naming.ANNOTATION_DAG_ID] == dag_id
    (container,) = a["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["prog", *cmd]
    assert "args" not in container


def test_backfill_and_manual_runs_of_one_moment_stay_apart() -> None:
    runs = [
        "manual__2024-01-01T00:00:00+00:00",
        "manual__2024-01-01T00:00:00+01:00",
        "backfill__2024-01-01T00:00:00+00:00",
        "scheduled__2024-01-01T00:00:00+00:00",
        "manual__2024-01-01T00:00:00.000001+00:00",
        "manual__2024-01-01T00:00:00+00:00 ",
        "ручной__2024",
        "手動__2024",
    ]
    op = BatchJobOperator(task_id="t", image="busybox", cmds=["true"])
    bodies = [op.build(context("d", "t", r), "ns") for r in runs]
    for body in bodies:
        assert_valid(body)
    assert len({b["metadata"]["name"] for b in bodies}) == len(runs)
    assert len({b["metadata"]["labels"][naming.LABEL_RUN] for b in bodies}) == len(runs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(HOSTILE_TEXT | st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=3), max_size=6))
def test_jobgroup_items_travel_as_env_values_only(items: list[Any]) -> None:
    """Each item's Job: valid distinct name, command untouched, ITEM the item (``$`` escaped once)."""
    normalized = normalize_items(items, allow_duplicates=True)
    unique = list({i.text: i for i in normalized}.values())
    op = JobGroupOperator(
        task_id="t", items=[i.value for i in unique], image="busybox", cmds=["sh", "-c", "x"]
    )
    names = set()
    for item in unique:
        name = naming.job_name("d", "t", "r", -1, item_key=item.key)
        body = op.build(context("d", "t", "r"), "ns", name=name, extra_env=item_env(item))
        assert_valid(body)
        names.add(name)
        (container,) = body["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["sh", "-c", "x"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["ITEM"].replace("$$", "$") == item.text
    assert len(names) == len(unique)


@settings(max_examples=100, deadline=None)
@given(queue=HOSTILE_TEXT)
def test_queue_name_is_one_argv_element(queue: str) -> None:
    op = QueueJobOperator(
        task_id="t", mode="variable", queue_name=queue, image="w", cmds=["sh", "-c", 'echo "$ITEM"']
    )
    body = op.build(context("d", "t", "r"), "ns")
    (container,) = body["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[command.index("--queue") + 1] == queue
    assert command[command.index("--") + 1 :] == ["sh", "-c", 'echo "$ITEM"']


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"labels": {"team": "a b"}}, "label"),
        ({"labels": {"bad key!": "v"}}, "label"),
        ({"job_name": "Not_A_Name", "random_name_suffix": False}, "name"),  # an exact name
        ({"job_template": {"spec": {"completions": "three"}}}, "completions"),
        ({"job_template": "kind: [unclosed"}, "not valid YAML"),
        ({"job_template": "spec: {{ params.missing }}: [x"}, "not valid YAML"),
        ({"backoff_limit": -1}, "backoffLimit"),
    ],
)
def test_bad_input_is_refused_before_anything_is_created(kwargs: dict[str, Any], fragment: str) -> None:
    """At parse time when it can be, else in ``build`` (after Jinja), which runs before any API call."""
    kwargs = {"image": "busybox", "cmds": ["true"], **kwargs}
    with pytest.raises(InvalidJobTemplateError, match=fragment):
        op = BatchJobOperator(task_id="t", **kwargs)
        op.build(context("d", "t", "r"), "ns")


@pytest.mark.parametrize("key", ["ld_preload", "path", "bash_env", "pythonpath", "node_options"])
def test_item_keys_never_set_variables_that_load_code(key: str) -> None:
    (item,) = normalize_items([{key: "/tmp/evil", "id": 1}])
    names = set(item_env(item))
    assert not {n for n in names if n in UNSAFE_VARS or n.startswith(UNSAFE_PREFIXES)}, names

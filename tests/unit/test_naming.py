"""Names and labels must be deterministic, valid for the apiserver, and never collide."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob.core import naming
from airflow_batchjob.core.naming import (
    ANNOTATION_ITEM_KEY,
    ANNOTATION_RUN_ID,
    JOB_NAME_MAX,
    LABEL_DAG,
    LABEL_MAP_INDEX,
    LABEL_RUN,
    LABEL_TRY,
    is_dns1123_label,
    is_label_value,
    job_name,
    sanitize_label_value,
    task_annotations,
    task_labels,
    task_selector,
)

RUN_UTC = "manual__2024-01-01T00:00:00+00:00"
RUN_PLUS1 = "manual__2024-01-01T00:00:00+01:00"
HOSTILE = [
    "",
    ":",
    "+",
    "---",
    "...",
    "___",
    "日本語",
    "émoji 🚀",
    "UPPER_case.Dots",
    "x" * 300,
    RUN_UTC,
    "0123",
    "-leading",
    "trailing-",
]


def assert_valid_job_name(name: str) -> None:
    assert is_dns1123_label(name), name
    assert len(name) <= JOB_NAME_MAX
    assert name[0].isalpha()
    # Indexed Pods get the hostname "<job>-<index>"; the largest int32 index must still fit.
    assert is_dns1123_label(f"{name}-{2**31 - 1}")


def test_job_name_is_deterministic_and_readable() -> None:
    a = job_name("etl_daily", "load.users", RUN_UTC)
    assert a == job_name("etl_daily", "load.users", RUN_UTC)
    assert a.startswith("etl-daily-load-users-")
    assert_valid_job_name(a)


def test_job_name_distinguishes_runs_maps_items_and_attempts() -> None:
    names = {
        job_name("d", "t", RUN_UTC),
        job_name("d", "t", RUN_PLUS1),
        job_name("d", "t", RUN_UTC, 0),
        job_name("d", "t", RUN_UTC, 1),
        job_name("d", "t", RUN_UTC, item_key="A b"),
        job_name("d", "t", RUN_UTC, item_key="a-b"),
        job_name("d", "t", RUN_UTC, attempt_suffix="2"),
        # The hash covers an unambiguous tuple, so shifting text between fields changes it.
        job_name("d-t", "", RUN_UTC),
        job_name("d", "-t", RUN_UTC),
    }
    assert len(names) == 9


def test_job_name_falls_back_when_nothing_readable_survives() -> None:
    name = job_name("日本", "🚀", RUN_UTC)
    assert name.startswith("job-")
    assert_valid_job_name(name)
    assert job_name("123", "t", "r").startswith("job-123-")


def test_job_name_truncates_long_ids() -> None:
    name = job_name("d" * 200, "t" * 200, RUN_UTC, 12, item_key="k" * 200)
    assert len(name) == JOB_NAME_MAX
    assert_valid_job_name(name)


@given(
    dag=st.sampled_from(HOSTILE) | st.text(max_size=300),
    task=st.sampled_from(HOSTILE) | st.text(max_size=300),
    run=st.text(max_size=100),
    map_index=st.integers(min_value=-1, max_value=10**6),
    item=st.none() | st.text(max_size=100),
)
def test_job_name_always_valid(dag: str, task: str, run: str, map_index: int, item: str | None) -> None:
    name = job_name(dag, task, run, map_index, item_key=item)
    assert_valid_job_name(name)
    assert name == job_name(dag, task, run, map_index, item_key=item)


@given(st.lists(st.text(max_size=40), min_size=2, max_size=2, unique=True))
def test_job_name_distinct_for_distinct_items(items: list[str]) -> None:
    a, b = (job_name("d", "t", "r", item_key=i) for i in items)
    assert a != b


def test_sanitize_label_value_passes_valid_values_through() -> None:
    for value in ("", "a", "scheduled__2024-01-01", "A.b_c-9", "x" * 63):
        assert sanitize_label_value(value) == value


def test_sanitize_label_value_keeps_distinct_run_ids_distinct() -> None:
    a, b = sanitize_label_value(RUN_UTC), sanitize_label_value(RUN_PLUS1)
    assert a != b
    assert is_label_value(a) and is_label_value(b)
    assert a.startswith("manual__2024-01-01T00_00_00")


@given(st.sampled_from(HOSTILE) | st.text(max_size=200))
def test_sanitize_label_value_always_valid(value: str) -> None:
    out = sanitize_label_value(value)
    assert is_label_value(out), out
    assert out == sanitize_label_value(value)


@given(st.lists(st.text(max_size=80), min_size=2, max_size=2, unique=True))
def test_sanitize_label_value_injective_in_practice(values: list[str]) -> None:
    assert sanitize_label_value(values[0]) != sanitize_label_value(values[1])


def test_task_labels_and_annotations() -> None:
    labels = task_labels("d", "t", RUN_UTC, 3, try_number=2)
    assert labels[LABEL_DAG] == "d"
    assert labels[LABEL_RUN] == sanitize_label_value(RUN_UTC)
    assert labels[LABEL_MAP_INDEX] == "3"
    assert labels[LABEL_TRY] == "2"
    assert all(is_label_value(v) for v in labels.values())
    unmapped = task_labels("d", "t", RUN_UTC)
    assert LABEL_MAP_INDEX not in unmapped and LABEL_TRY not in unmapped

    annotations = task_annotations("d", "t", RUN_UTC, item_key="A b")
    assert annotations[ANNOTATION_RUN_ID] == RUN_UTC
    assert annotations[ANNOTATION_ITEM_KEY] == "A b"


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Tiny evaluator for the equality/absence selectors task_selector produces."""
    for term in selector.split(","):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        else:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


def test_task_selector_matches_every_try_of_only_that_instance() -> None:
    sel = task_selector("d", "t", RUN_UTC)
    assert re.fullmatch(r"[^,]+(,[^,]+)+", sel)
    for try_number in (None, 1, 5):
        assert _selector_matches(sel, task_labels("d", "t", RUN_UTC, try_number=try_number))
    assert not _selector_matches(sel, task_labels("d", "t", RUN_PLUS1))
    assert not _selector_matches(sel, task_labels("d", "t", RUN_UTC, 0))
    mapped = task_selector("d", "t", RUN_UTC, 4)
    assert _selector_matches(mapped, task_labels("d", "t", RUN_UTC, 4, try_number=3))
    assert not _selector_matches(mapped, task_labels("d", "t", RUN_UTC, 5))


def test_a_prefix_replaces_the_readable_part_and_keeps_runs_apart() -> None:
    a = naming.job_name("etl", "load", "run-1", prefix="Nightly_Export")
    b = naming.job_name("etl", "load", "run-2", prefix="Nightly_Export")
    assert a.startswith("nightly-export-") and b.startswith("nightly-export-") and a != b
    assert naming.is_dns1123_label(a) and len(a) <= naming.JOB_NAME_MAX
    assert a == naming.job_name("etl", "load", "run-1", prefix="Nightly_Export"), "deterministic"
    assert a != naming.job_name("etl", "load", "run-1"), "the prefix is part of the identity"


def test_owned_by_compares_the_exact_ids() -> None:
    job = {"metadata": {"annotations": naming.task_annotations("d", "t", "r+00:00", 2)}}
    assert naming.owned_by(job, "d", "t", "r+00:00", 2)
    assert not naming.owned_by(job, "d", "t", "r+01:00", 2)
    assert not naming.owned_by(job, "d", "t", "r+00:00", -1)
    assert not naming.owned_by({"metadata": {}}, "d", "t", "r", -1)


def test_earlier_try_compares_the_try_labels() -> None:
    from airflow_batchjob.core.naming import LABEL_TRY, earlier_try

    def job(t: str | None) -> dict:
        return {"metadata": {"labels": {LABEL_TRY: t} if t else {}}}

    assert earlier_try(job("1"), job("2"))
    assert not earlier_try(job("2"), job("2"))  # this try's own Job (resumed without its event)
    assert earlier_try(job(None), job("2"))

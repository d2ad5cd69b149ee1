"""Index lists in the interval form: read as the controller writes them, checked as the apiserver does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob.core.indexes import count_indexes, format_indexes, parse_indexes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, []),
        ("", []),
        ("3", [3]),
        ("1,3-5,7", [1, 3, 4, 5, 7]),
        ("0,1", [0, 1]),
        ("0-1", [0, 1]),
        (" 2 , 4-6 ", [2, 4, 5, 6]),
    ],
)
def test_parse_indexes(text: str | None, expected: list[int]) -> None:
    assert parse_indexes(text) == expected


@pytest.mark.parametrize("bad", ["a", "1,,2", "1-2-3", "5-3", "-1", "1,", "1;2", "1 2"])
def test_parse_indexes_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_indexes(bad)


@pytest.mark.parametrize(
    ("indexes", "expected"),
    [
        ([], ""),
        ([4], "4"),
        ([1, 2], "1,2"),  # the controller writes a run of two with a comma
        ([3, 4, 5], "3-5"),
        ([5, 0, 1, 2, 9, 3, 11, 10], "0-3,5,9-11"),
        ([7, 7, 7], "7"),
    ],
)
def test_format_indexes_matches_controller(indexes: list[int], expected: str) -> None:
    assert format_indexes(indexes) == expected


@given(st.lists(st.integers(min_value=0, max_value=500), max_size=80))
def test_parse_format_roundtrip(indexes: list[int]) -> None:
    text = format_indexes(indexes)
    assert parse_indexes(text) == sorted(set(indexes))
    assert format_indexes(parse_indexes(text)) == text


@pytest.mark.parametrize(
    ("text", "completions", "expected"),
    [("", 5, 0), ("3", 5, 1), ("0,2-4", 5, 4), ("0,1", 2, 2), ("0-2,5,7-9", 10, 7)],
)
def test_count_indexes(text: str, completions: int, expected: int) -> None:
    assert count_indexes(text, completions) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "'a' is not an index"),
        ("0, 2", "' 2' is not an index"),  # the apiserver takes no spaces
        ("1\n", "is not an index"),
        ("1-2-3", "is not an index"),
        ("3-3", "range '3-3' must go from low to high"),
        ("4-2", "must go from low to high"),
        ("0-5", "index 5 is not below completions (5)"),
        ("2,1", "'1' must come after 2"),
        ("0-2,2", "'2' must come after 2"),
    ],
)
def test_count_indexes_follows_the_apiserver(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        count_indexes(text, 5)

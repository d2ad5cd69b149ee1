"""Work items: validation, encoding, and env delivery safe from Kubernetes' $(VAR) expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.items import decode, encode, env_name, escape_env_value, item_env, normalize_items
from localcluster.nodeagent import expand


def test_strings_stay_text_objects_become_sorted_json() -> None:
    items = normalize_items(["apple", {"b": 1, "a": "x"}, [1, 2], 7])
    assert [i.text for i in items] == ["apple", '{"a":"x","b":1}', "[1,2]", "7"]
    assert decode(items[1].text) == {"a": "x", "b": 1}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", ""], "item 1 is empty"),
        (["a", "a"], "item 1 duplicates item 0"),
        (["x\x00y"], "NUL"),
        (["x" * 70_000], "over the 65536-byte limit"),
        ("abc", "not a single string"),
        (None, "items is None"),
        ([object()], "not JSON-serialisable"),
    ],
)
def test_bad_items_are_refused_with_a_reason(values: object, message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message):
        normalize_items(values)  # type: ignore[arg-type]


def test_duplicates_allowed_when_asked() -> None:
    assert len(normalize_items(["a", "a"], allow_duplicates=True)) == 2


def test_object_items_give_one_env_var_per_scalar_key() -> None:
    (item,) = normalize_items([{"first-name": "Ada", "age": 36, "tags": ["x"], "ITEM": "no", "9x": 1}])
    env = item_env(item)
    assert env["FIRST_NAME"] == "Ada" and env["AGE"] == "36"
    assert "TAGS" not in env and "9X" not in env  # lists stay in ITEM; names must not start with a digit
    assert env["ITEM"] == escape_env_value(item.text)
    assert env_name("ITEM") is None


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_env_values_survive_kubernetes_expansion(text: str) -> None:
    """Whatever the item, the Pod sees it byte for byte after the API's $(VAR) expansion."""
    (item,) = normalize_items([text])
    defined = {"PATH": "/bin", "HOME": "/root", "ITEM": "shadow"}
    assert expand(item_env(item)["ITEM"], defined) == text


def test_encode_is_stable() -> None:
    assert encode({"b": [1, {"d": 2, "c": 3}], "a": None}) == '{"a":null,"b":[1,{"c":3,"d":2}]}'

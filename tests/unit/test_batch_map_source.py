"""``@task.batch_map``'s pure parts: the function's source as it travels, the call, the payload."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from airflow_batchjob.core.batchmap import (
    BOOT_KEY,
    MAX_PAYLOAD_BYTES,
    PAYLOAD_KEY,
    build_payload,
    check_call,
    encode_items,
    errors_by_index,
    function_source,
    item_error,
    split_call,
    unbound_names,
)
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.results import MAX_RESULT_BYTES


def passthrough(fn: Any = None, **kwargs: Any) -> Any:
    """A stand-in decorator taking arguments, as ``@task.batch_map(...)`` does."""
    return fn if fn is not None else (lambda f: f)


@passthrough(
    image="python:3.12",
    parallelism=3,
)
# a comment between the decorator and the def
def square(item: int, factor: int = 2) -> int:
    """Squares."""
    import math as m

    return int(m.pow(item, 2)) * factor  # a trailing comment


def uses_module(item: int) -> float:
    return math.sqrt(item)


def helper_inside(item: list[int]) -> list[int]:
    def double(x: int) -> int:
        return 2 * x

    return sorted(double(x) for x in item if isinstance(x, int))


def test_the_source_is_the_def_alone_with_its_place_in_the_file() -> None:
    found = function_source(square)
    assert found.name == "square" and found.filename == "test_batch_map_source.py"
    assert found.source.startswith("def square(item: int, factor: int = 2) -> int:\n")
    assert "passthrough" not in found.source and "a comment between" not in found.source
    assert found.source.rstrip().endswith("* factor  # a trailing comment")
    lines = Path(__file__).read_text().splitlines()
    assert lines[found.first_line - 1].startswith("def square(")


def test_a_nested_function_is_dedented() -> None:
    @passthrough(image="x")
    def inner(item: str) -> str:
        return item.upper()

    found = function_source(inner)
    assert found.source.startswith("def inner(item: str) -> str:\n    return item.upper()")
    ns: dict[str, Any] = {}
    exec(compile(found.source, "x", "exec"), ns)
    assert ns["inner"]("a") == "A"


def test_names_from_outside_the_function_are_refused_at_parse_time() -> None:
    with pytest.raises(InvalidJobSpecError, match=r"uses math, defined outside it.*Import modules inside"):
        function_source(uses_module)
    factor = 3

    def closure(item: int) -> int:
        return item * factor

    with pytest.raises(InvalidJobSpecError, match="uses factor from the function that encloses it"):
        function_source(closure)
    function_source(helper_inside)  # builtins, nested helpers, comprehensions: fine


def test_unbound_names_covers_defaults_classes_and_globals_but_not_annotations() -> None:
    source = (
        "def f(item: Missing, k=DEFAULT) -> Other:\n"
        "    import os\n"
        "    global counter\n"
        "    counter = 1\n"
        "    class C:\n"
        "        attr = from_class\n"
        "    def g():\n"
        "        return os.sep + counter + helper + f.__name__\n"
        "    return [g() for _ in range(3) if flag]\n"
    )
    assert unbound_names(source, "f") == ["DEFAULT", "flag", "from_class", "helper"]


def test_what_cannot_travel_is_refused_with_the_fix() -> None:
    async def coro(item: int) -> int:
        return item

    def gen(item: int) -> Any:
        yield item

    with pytest.raises(InvalidJobSpecError, match="lambda"):
        function_source(lambda item: item)
    with pytest.raises(InvalidJobSpecError, match="async or a generator"):
        function_source(coro)
    with pytest.raises(InvalidJobSpecError, match="async or a generator"):
        function_source(gen)
    with pytest.raises(InvalidJobSpecError, match="not a function"):
        function_source(len)
    ns: dict[str, Any] = {}
    exec("def made(item):\n    return item\n", ns)
    with pytest.raises(InvalidJobSpecError, match="no source file"):
        function_source(ns["made"])

    @passthrough
    @passthrough(image="x")
    def twice(item: int) -> int:
        return item

    with pytest.raises(InvalidJobSpecError, match="2 decorators"):
        function_source(twice)


def test_the_call_splits_into_items_and_constant_arguments() -> None:
    assert split_call(square, [[1, 2]], {"factor": 3}) == ([1, 2], [], {"factor": 3})
    assert split_call(square, [[1, 2], 5], {}) == ([1, 2], [5], {})
    assert split_call(square, [], {"item": [1], "factor": 4}) == ([1], [], {"factor": 4})
    with pytest.raises(InvalidJobSpecError, match=r"got no items.*square\(\[1, 2, 3\]\)"):
        split_call(square, [], {"factor": 3})
    check_call(square, [], {"factor": 3})

    def with_context(item: int, ti: Any) -> int:
        return item

    with pytest.raises(InvalidJobSpecError, match=r"missing a required argument: 'ti'.*context"):
        check_call(with_context, [], {})
    with pytest.raises(InvalidJobSpecError, match="unexpected keyword argument 'nope'"):
        check_call(square, [], {"nope": 1})

    def no_item(*items: int) -> int:
        return 0

    with pytest.raises(InvalidJobSpecError, match="first parameter"):
        split_call(no_item, [[1]], {})


def test_items_travel_as_json_text() -> None:
    assert encode_items([5, "5", None, {"a": [1, "é"]}], "items") == ["5", '"5"', "null", '{"a":[1,"é"]}']
    with pytest.raises(InvalidJobSpecError, match=r"item 1 \(items\[1\]\) is not JSON-serialisable"):
        encode_items([1, {1, 2}], "items")
    for bad in ("abc", {"a": 1}, 5, None):
        with pytest.raises(InvalidJobSpecError, match="pass a list"):
            encode_items(bad, "numbers")


def test_the_payload_carries_source_arguments_and_the_bootstrap() -> None:
    data = build_payload(function_source(square), [1], {"factor": 3}, "3.11.7")
    assert set(data) == {PAYLOAD_KEY, BOOT_KEY}
    assert not any(k.isdigit() for k in data)  # never an item's key
    payload = json.loads(data[PAYLOAD_KEY])
    assert payload["name"] == "square" and payload["args"] == [1] and payload["kwargs"] == {"factor": 3}
    assert payload["built_with"] == "3.11.7" and payload["max_result_bytes"] == MAX_RESULT_BYTES
    assert data[BOOT_KEY].startswith("# ruff: noqa") and "def main(argv" in data[BOOT_KEY]
    with pytest.raises(InvalidJobSpecError, match=r"over the 921600-byte ConfigMap.*references"):
        build_payload(function_source(square), ["x" * MAX_PAYLOAD_BYTES], {}, "3.11.7")
    with pytest.raises(InvalidJobSpecError, match="not JSON-serialisable"):
        build_payload(function_source(square), [object()], {}, "3.11.7")


def _pod(index: int, created: str, message: str, phase: str = "Failed") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"p-{index}-{created}",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "spec": {"containers": [{"name": "main"}, {"name": "side"}]},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "side", "state": {"terminated": {"exitCode": 0, "message": message}}},
                {"name": "main", "state": {"terminated": {"exitCode": 1, "message": message}}},
            ],
        },
    }


def test_failed_pods_errors_by_index_latest_first() -> None:
    def doc(message: str) -> str:
        return json.dumps({"batch_map_error": {"stage": "call", "type": "E", "message": message}})

    pods = [
        _pod(0, "2026-01-01T00:00:01Z", doc("old")),
        _pod(0, "2026-01-01T00:00:05Z", doc("new")),
        _pod(1, "2026-01-01T00:00:01Z", "not json"),
        _pod(2, "2026-01-01T00:00:01Z", doc("fine"), phase="Succeeded"),
    ]
    found = errors_by_index(pods)
    assert list(found) == [0] and found[0].message == "new" and found[0].stage == "call"
    assert item_error('{"other": 1}') is None and item_error(None) is None

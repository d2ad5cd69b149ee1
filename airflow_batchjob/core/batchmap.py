"""``@task.batch_map``'s pure parts: the function as data, the call split into items and constants.

The function travels as its source text (its decorators cut off), in a ConfigMap beside the items,
with the constant arguments as JSON; ``worker/batch_map_boot.py`` defines and calls it in each Pod.
Nothing of it is spliced into a shell line or YAML. What cannot work in a Pod is refused when the
DAG is parsed, naming the fix: a lambda or a function without source, a name from the DAG file's
module or an enclosing function (the Pod has only the function), a parameter nothing fills.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import os
import symtable
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.results import MAX_RESULT_BYTES
from airflow_batchjob.worker import batch_map_boot as boot

PAYLOAD_KEY = boot.PAYLOAD  # ConfigMap keys: never an item's (those are digits)
BOOT_KEY = "batch-map-boot.py"
PAYLOAD_FORMAT = 1
MAX_PAYLOAD_BYTES = 900 * 1024  # one ConfigMap, with the bootstrap


@dataclass(frozen=True)
class FunctionSource:
    """A function as it travels: its name, its ``def`` (decorators cut) and where it came from."""

    name: str
    source: str
    filename: str
    first_line: int


def _where(fn: Callable[..., Any], line: int | None = None) -> str:
    code = getattr(fn, "__code__", None)
    return f"{os.path.basename(code.co_filename)}:{line or code.co_firstlineno}" if code else "?"


def function_source(fn: Callable[..., Any]) -> FunctionSource:
    """The function's own ``def`` as text, without decorators; refused with the fix when it
    cannot travel."""
    name = getattr(fn, "__name__", repr(fn))
    if not inspect.isfunction(fn):
        raise InvalidJobSpecError(
            f"{name!r} is a {type(fn).__name__}, not a function: batch_map sends a function's source "
            "to the Pods; define a plain `def` function"
        )
    if name == "<lambda>":
        raise InvalidJobSpecError("a lambda cannot be sent to the Pods: define a named `def` function")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise InvalidJobSpecError(
            f"function {name!r} is async or a generator: batch_map calls a plain function per item and "
            "sends back what it returns (return a list instead of yielding)"
        )
    try:
        raw = inspect.getsource(fn)
    except (OSError, TypeError) as e:
        raise InvalidJobSpecError(
            f"function {name!r} has no source file to send to the Pods ({e}): define it in a DAG file"
        ) from e
    text = textwrap.dedent(raw)
    try:
        node = ast.parse(text).body[0]
    except (SyntaxError, IndexError) as e:
        raise InvalidJobSpecError(
            f"the source of function {name!r} ({_where(fn)}) does not parse alone: {e}"
        ) from e
    if not isinstance(node, ast.FunctionDef) or node.name != name:
        raise InvalidJobSpecError(f"the source found for function {name!r} ({_where(fn)}) is not its `def`")
    if len(node.decorator_list) > 1:
        raise InvalidJobSpecError(
            f"function {name!r} has {len(node.decorator_list)} decorators: only its own `def` travels to "
            "the Pods, so other decorators would be lost; apply them inside the function"
        )
    lines = text.splitlines(keepends=True)[node.lineno - 1 : node.end_lineno]
    first = fn.__code__.co_firstlineno + (node.lineno - 1)
    source = "".join(lines)
    outer = [v for v in fn.__code__.co_freevars if v != name]  # itself, recursively: defined in the Pod
    if outer:
        raise InvalidJobSpecError(
            f"function {name!r} uses {', '.join(outer)} from the function that encloses "
            "it: only the function travels to the Pods; pass those values as arguments"
        )
    missing = unbound_names(source, name)
    if missing:
        raise InvalidJobSpecError(
            f"function {name!r} ({_where(fn, first)}) uses {', '.join(missing)}, defined outside it: "
            "only the function travels to the Pods. Import modules inside the function and pass values as "
            f"arguments ({name}(items, value=...)); call helpers you define inside it"
        )
    return FunctionSource(name, source, os.path.basename(fn.__code__.co_filename), first)


def unbound_names(source: str, name: str) -> list[str]:
    """Names the source reads that nothing in it defines (nor the builtins): the DAG module's
    imports and globals, which the Pod does not have. Annotations are not read (the bootstrap
    compiles with postponed annotations)."""
    table = symtable.symtable("from __future__ import annotations\n" + source, "<batch_map>", "exec")
    defined = {name, "annotations", *dir(builtins)}
    read: set[str] = set()

    def walk(t: symtable.SymbolTable, top: bool) -> None:
        for s in t.get_symbols():
            if top:
                if s.is_assigned() or s.is_imported():
                    defined.add(s.get_name())
                elif s.is_referenced():
                    read.add(s.get_name())
            elif s.is_global():
                if s.is_declared_global() and s.is_assigned():
                    defined.add(s.get_name())
                if s.is_referenced():
                    read.add(s.get_name())
        for child in t.get_children():
            walk(child, False)

    walk(table, True)
    return sorted(n for n in read - defined if not (n.startswith("__") and n.endswith("__")))


def item_parameter(fn: Callable[..., Any]) -> str:
    """The name of the function's first parameter, the one each item is passed to."""
    params = list(inspect.signature(fn).parameters.values())
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in kinds:
        raise InvalidJobSpecError(
            f"function {fn.__name__!r} must take the item as its first parameter, e.g. `def "
            f"{fn.__name__}(item): ...`"
        )
    return params[0].name


def split_call(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[Any, list[Any], dict[str, Any]]:
    """``fn(items, *args, **kwargs)`` as written in the DAG: ``(items, the other arguments)``.

    The items are the first argument (by position, or by the first parameter's name); the other
    arguments are passed unchanged to every call.
    """
    param = item_parameter(fn)
    if args:
        return args[0], list(args[1:]), dict(kwargs)
    if param in kwargs:
        rest = {k: v for k, v in kwargs.items() if k != param}
        return kwargs[param], [], rest
    raise InvalidJobSpecError(
        f"{fn.__name__}() got no items: call it with the list to map over (or an XCom), "
        f"e.g. {fn.__name__}([1, 2, 3]) or {fn.__name__}(other_task())"
    )


def check_call(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Each Pod calls ``fn(item, *args, **kwargs)``: refuse a call that cannot bind (a parameter
    nothing fills, such as one of Airflow's context names, which do not reach the Pods)."""
    try:
        inspect.signature(fn).bind(object(), *args, **kwargs)
    except TypeError as e:
        raise InvalidJobSpecError(
            f"each Pod calls {fn.__name__}(item, *args, **kwargs) with the other arguments given in the "
            f"DAG, and that call fails: {e}. Airflow's context (ti, ds, params, ...) does not reach the "
            "Pods: give every other parameter a value or a default"
        ) from None


def to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidJobSpecError(f"{what} is not JSON-serialisable ({e}): pass JSON values") from None


def encode_items(values: Any, param: str) -> list[str]:
    """Each item as JSON text (the Pod decodes it: ``"5"`` and ``5`` stay apart)."""
    if values is None or isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise InvalidJobSpecError(
            f"the items ({param}, the first argument) are a {type(values).__name__}: pass a list "
            "(or an XCom that resolves to one)"
        )
    return [to_json(v, f"item {i} ({param}[{i}])") for i, v in enumerate(values)]


def build_payload(
    fn: FunctionSource, args: Sequence[Any], kwargs: Mapping[str, Any], built_with: str
) -> dict[str, str]:
    """The ConfigMap data every Pod of an attempt reads: the bootstrap and ``batch-map.json``."""
    payload = {
        "format": PAYLOAD_FORMAT,
        "name": fn.name,
        "source": fn.source,
        "filename": fn.filename,
        "first_line": fn.first_line,
        "built_with": built_with,
        "max_result_bytes": MAX_RESULT_BYTES,
        "args": list(args),
        "kwargs": dict(kwargs),
    }
    data = {PAYLOAD_KEY: to_json(payload, f"the arguments of {fn.name}()"), BOOT_KEY: boot_source()}
    size = sum(len(v.encode()) for v in data.values())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidJobSpecError(
            f"the function {fn.name} and its constant arguments are {size} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte ConfigMap that carries them: pass big values as references"
        )
    return data


def boot_source() -> str:
    with open(boot.__file__, encoding="utf-8") as f:
        return f.read()


@dataclass(frozen=True)
class ItemError:
    """Why an item's Pod failed, as its bootstrap wrote it: ``stage`` is setup, call or result."""

    stage: str
    message: str
    type: str | None = None
    traceback: str | None = None
    python: str | None = None


def item_error(message: str | None) -> ItemError | None:
    """A failed Pod's termination message as the bootstrap wrote it, else None."""
    try:
        doc = json.loads(message or "")
    except ValueError:
        return None
    err = doc.get(boot.ERROR_KEY) if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None
    return ItemError(
        stage=str(err.get("stage") or "?"),
        message=str(err.get("message") or ""),
        type=err.get("type"),
        traceback=err.get("traceback"),
        python=err.get("python"),
    )


def errors_by_index(pods: Sequence[Mapping[str, Any]]) -> dict[int, ItemError]:
    """Per completion index, what its latest failed Pod's bootstrap said."""
    found: dict[int, tuple[str, ItemError]] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        raw = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
        if status.get("phase") != "Failed" or raw is None or not str(raw).isdigit():
            continue
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        main = containers[0].get("name")
        for cs in status.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            error = item_error(term.get("message")) if cs.get("name") == main else None
            created = meta.get("creationTimestamp") or ""
            if error is not None and (int(raw) not in found or found[int(raw)][0] < created):
                found[int(raw)] = (created, error)
    return {i: e for i, (_, e) in found.items()}

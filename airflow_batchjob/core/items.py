"""Work items: validated and encoded as data, never spliced into YAML or a shell line.

An item is a string or a JSON value (usually an object). It reaches a Pod as an environment
variable, a file, or a queue message, always as bytes the program reads, so quotes, ``$(...)``,
newlines or unicode in an item are just data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError

# A Pod's env var values travel in the Job object (etcd's request limit is 1.5 MiB for the whole
# object); keep items given as env small, and use files or queues for bigger ones.
DEFAULT_MAX_ITEM_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"[^A-Za-z0-9_]")

# An item is data: its keys must not be able to make the program load code.
UNSAFE_VARS = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "IFS",
        "PATH",
        "PS4",
        "SHELLOPTS",
        "GCONV_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PERL5LIB",
        "PERL5OPT",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
    }
)
UNSAFE_PREFIXES = ("LD_", "DYLD_")


def unsafe_env_name(name: str) -> bool:
    """True for variables that make programs load code (``LD_PRELOAD``, ``PYTHONPATH``, ...)."""
    return name in UNSAFE_VARS or name.startswith(UNSAFE_PREFIXES)


@dataclass(frozen=True)
class Item:
    """One work item: ``value`` as given, ``text`` as the Pod sees it, ``key`` identifying it."""

    value: Any
    text: str
    key: str

    @property
    def is_object(self) -> bool:
        return isinstance(self.value, Mapping)


def encode(value: Any) -> str:
    """Strings stay as they are; any other JSON value becomes compact, key-sorted JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode(text: str) -> Any:
    """Inverse of ``encode`` for objects/arrays/numbers; plain strings that are not JSON stay text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_items_param(value: Any, *, is_reference: bool = False) -> list[Any] | None:
    """What an operator's ``items`` may be when the DAG is parsed: a list or tuple (returned as a
    list, to check now), a Jinja template string or a reference resolved at run time
    (``is_reference``: an XComArg; both return None). Anything else fails with the fix."""
    if is_reference:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return None
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    hint = " (to run one item, pass [the item])" if isinstance(value, (str, Mapping, int, float)) else ""
    raise InvalidJobSpecError(
        f"items={shown} ({type(value).__name__}): give a list or tuple of items, a Jinja template "
        f"string that renders to a list, or an XCom (another task's .output){hint}"
    )


def normalize_items(
    values: Iterable[Any] | None,
    *,
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
    allow_duplicates: bool = False,
) -> list[Item]:
    """Validate and encode items; raise with the offending item's position when one is unusable."""
    if values is None:
        raise InvalidJobSpecError("items is None: pass a list (or an XCom that resolves to one)")
    if isinstance(values, (str, bytes, Mapping)):
        raise InvalidJobSpecError("items must be a list of items, not a single string or object")
    items: list[Item] = []
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        try:
            text = encode(value)
        except (TypeError, ValueError) as e:
            raise InvalidJobSpecError(f"item {i} is not JSON-serialisable: {e}") from e
        if text == "":
            raise InvalidJobSpecError(f"item {i} is empty: drop it or give it content")
        if "\x00" in text:
            raise InvalidJobSpecError(
                f"item {i} contains a NUL character, which no environment or "
                "file name can carry: encode it (e.g. base64)"
            )
        size = len(text.encode())
        if size > max_item_bytes:
            raise InvalidJobSpecError(
                f"item {i} is {size} bytes, over the {max_item_bytes}-byte limit for "
                "this pattern: pass a reference (a path or URI) instead, or use a queue"
            )
        if text in seen and not allow_duplicates:
            raise InvalidJobSpecError(
                f"item {i} duplicates item {seen[text]} ({_preview(text)}): each item must be unique"
            )
        seen.setdefault(text, i)
        items.append(Item(value=value, text=text, key=text))
    return items


def env_name(key: str) -> str | None:
    """An object key as an env var name (``first-name`` → ``FIRST_NAME``), or None if unusable."""
    name = _ENV_NAME.sub("_", key).upper()
    if not name or name[0].isdigit() or name == "ITEM":
        return None
    return name


def escape_env_value(text: str) -> str:
    """Kubernetes expands ``$(VAR)`` in env values (``$$`` is its escape): keep an item's ``$`` literal."""
    return text.replace("$", "$$")


def item_env(item: Item) -> dict[str, str]:
    """``ITEM`` plus, for an object item, one variable per scalar top-level key.

    Values are escaped for the API's ``$(VAR)`` expansion, so the Pod sees the item byte for byte.
    A key naming a variable that loads code (``path``, ``ld_preload``, ...) is skipped: an item
    is data, and must not be able to change what the program runs.
    """
    env = {"ITEM": item.text}
    if item.is_object:
        for k, v in item.value.items():
            name = env_name(str(k))
            if not name or name in env or unsafe_env_name(name):
                continue
            if v is None or isinstance(v, (str, int, float, bool)):
                env[name] = v if isinstance(v, str) else json.dumps(v)
    return {k: escape_env_value(v) for k, v in env.items()}


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")

"""What the provider's triggers share: serialising only what differs from the defaults."""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable
from typing import Any

from airflow.triggers.base import BaseTrigger


class SerializedByDefaults(BaseTrigger):
    """``serialize()`` from ``__init__``'s keyword parameters, each kept in an attribute of its name.

    A parameter equal to its default is left out (``None`` and an empty dict or list count as the
    same default), so a trigger row written today loads into tomorrow's constructor, and rows stay
    small in the triggerer's table. Values are deep-copied: the caller may change the dict.
    """

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                continue
            value = getattr(self, name)
            default = param.default
            if default is not param.empty and (value == default or (default is None and value in ({}, []))):
                continue
            kwargs[name] = copy.deepcopy(value)
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs


class ProgressLog:
    """Logs a changed line: the first and the final one at once, others at most every ``interval`` s."""

    def __init__(self, progress: Callable[[str], None] | None, interval: float) -> None:
        self.progress, self.interval = progress, interval
        self.last_line, self.last_time = "", 0.0

    def __call__(self, prefix: str, line: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or line == self.last_line:
            return
        if final or not self.last_line or now - self.last_time >= self.interval:
            self.progress(f"{prefix}: {line}")
            self.last_line, self.last_time = line, now

"""Reading Pod logs line by line, resumable without loss or repeats, and naming whose line it is.

Logs are read with ``timestamps=true``: each line starts with the kubelet's RFC 3339 time (nano
precision, trailing zeros trimmed). After a dropped stream the reader asks again with
``sinceTime`` (whole seconds: the API's precision) and skips what it already has: lines before
the last time seen, and as many lines at that very time as it already printed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.naming import ANNOTATION_ITEM_KEY

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ?")

TimeKey = tuple[dt.datetime, int]  # (second, nanoseconds)


def split_timestamp(line: str) -> tuple[TimeKey | None, str]:
    """``(time, text)`` of a line read with ``timestamps=true``; ``(None, line)`` without a time."""
    m = _TIME.match(line)
    if m is None:
        return None, line
    whole, frac, zone = m.groups()
    second = dt.datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).astimezone(dt.UTC)
    return (second, int((frac or "0").ljust(9, "0"))), line[m.end() :]


def parse_second(text: str) -> dt.datetime:
    """A whole-second RFC 3339 time as ``ResumePoint`` keeps it (UTC)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


@dataclass
class ResumePoint:
    """Where a log stream got to: the last time seen and how many lines carried it."""

    last: TimeKey | None = None
    at_last: int = 0
    skip: int = 0  # lines at ``last`` still to skip after a resume

    def since_time(self) -> str | None:
        """``sinceTime`` for the next request (the API takes whole seconds)."""
        return None if self.last is None else self.last[0].strftime("%Y-%m-%dT%H:%M:%SZ")

    def resume(self) -> None:
        self.skip = self.at_last

    def take(self, when: TimeKey | None) -> bool:
        """Whether a line with this time is new (and count it)."""
        if when is None:
            return True
        if self.last is not None and when < self.last:
            return False
        if when == self.last:
            if self.skip:
                self.skip -= 1
                return False
            self.at_last += 1
            return True
        self.last, self.at_last, self.skip = when, 1, 0
        return True


def pod_label(pod: Mapping[str, Any], container: str, main: str | None) -> str:
    """How a Pod's lines are prefixed in the task log: its item or index, its name, its container."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    parts = []
    if (item := annotations.get(ANNOTATION_ITEM_KEY)) is not None:
        parts.append(f"item {item}")
    elif (index := annotations.get(INDEX_ANNOTATION)) is not None:
        parts.append(f"index {index}")
    parts.append(str(meta.get("name", "?")))
    if container != main:
        parts.append(container)
    return " ".join(parts)


def containers_to_follow(pod: Mapping[str, Any], wanted: bool | str | list[str] | None) -> list[str]:
    """The containers whose logs are shown: the main one (None), all (True), or those named
    (``@main`` names the main container, ``@init`` every init container)."""
    spec = pod.get("spec") or {}
    inits = [c["name"] for c in spec.get("initContainers") or []]
    mains = [c["name"] for c in spec.get("containers") or []]
    if wanted is None or wanted is False:
        return mains[:1]
    if wanted is True:
        return inits + mains
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    # "@init" (every init container) and "@main" (the main one) come from cncf.kubernetes'
    # init_container_logs (core/peerparams.py).
    if "@main" in names:
        names += mains[:1]
    return [c for c in inits + mains if c in names or ("@init" in names and c in inits)]


def container_state(pod: Mapping[str, Any], container: str) -> str:
    """``waiting``, ``running``, ``terminated`` or ``unknown`` for a container of the Pod."""
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if cs.get("name") == container:
            state = cs.get("state") or {}
            for key in ("terminated", "running", "waiting"):
                if key in state:
                    return key
    if status.get("phase") in ("Succeeded", "Failed"):
        return "terminated"
    return "unknown"

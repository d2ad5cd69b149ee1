"""Results from Pods: a JSON value a program leaves in its container's termination message.

The convention is Kubernetes' own: a container's ``terminationMessagePath`` (``/dev/termination-log``
unless the spec says otherwise) is a file whose content the kubelet copies into the Pod's status
when the container ends, at most 4 KiB per container. Every operator sets ``BATCHJOB_RESULT_FILE``
to that path in the main container, so a program writes its result with
``echo '{"rows": 10}' > "$BATCHJOB_RESULT_FILE"`` and it reaches Airflow in the Pod status the
operator reads anyway: no sidecar, no shared volume, no extra API call per Pod.

A container that exits 0 with an empty message has no result (``None``). A message that is not
JSON fails the item, as does one at the size limit (the kubelet cut it, so it cannot be whole).

Under the worker entrypoint (Indexed Jobs, queues) the termination message is the worker's own
JSON summary: the worker hands the program a private ``BATCHJOB_RESULT_FILE``, checks what it
wrote, fails the item (exit code 65) if it is unusable, and puts the value in the summary's
``result``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESULT_ENV = "BATCHJOB_RESULT_FILE"
DEFAULT_MESSAGE_PATH = "/dev/termination-log"
MAX_RESULT_BYTES = 4096  # the kubelet keeps at most this much of a termination message


@dataclass(frozen=True)
class PodResult:
    """What one Pod's main container returned: ``value``, or ``error`` saying why it is unusable."""

    pod: str
    index: int | None
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_result(text: str, where: str, limit: int = MAX_RESULT_BYTES) -> tuple[Any, str | None]:
    """``(value, None)`` for a usable result text (empty: ``None``), else ``(None, why not)``."""
    if not text.strip():
        return None, None
    size = len(text.encode("utf-8", "surrogateescape"))
    if size >= limit:
        return None, (
            f"{where}: its result is {size} bytes or more, over the {limit - 1}-byte limit of a "
            "termination message: return a reference (a path or URI) to the data instead"
        )
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"{where}: its result (${RESULT_ENV}) is not JSON: {e}: {text[:200]!r}"


def parse_result(pod: str, index: int | None, message: str | None, envelope: bool = False) -> PodResult:
    """Read a succeeded container's termination message as a result (``envelope``: the worker's summary)."""
    if envelope:
        try:
            summary = json.loads(message or "{}")
        except ValueError:
            summary = {}
        if not isinstance(summary, dict):
            summary = {}
        return PodResult(pod, index, value=summary.get("result"))
    value, error = check_result(message or "", f"Pod {pod}")
    return PodResult(pod, index, value=value, error=error)


def main_container(pod: Mapping[str, Any]) -> str | None:
    containers = ((pod.get("spec") or {}).get("containers")) or []
    return containers[0]["name"] if containers else None


def add_result_env(body: dict[str, Any]) -> None:
    """Point ``BATCHJOB_RESULT_FILE`` at the main container's termination message file."""
    containers = body["spec"]["template"]["spec"]["containers"]
    main = containers[0]
    env = main.setdefault("env", [])
    if not any(e.get("name") == RESULT_ENV for e in env):
        env.append({"name": RESULT_ENV, "value": main.get("terminationMessagePath") or DEFAULT_MESSAGE_PATH})


def pod_result(pod: Mapping[str, Any], envelope: bool = False) -> PodResult | None:
    """The result of a succeeded Pod (its main container exited 0); None for any other Pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("phase") != "Succeeded":
        return None
    name = meta.get("name", "?")
    raw = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    index = int(raw) if raw is not None and str(raw).isdigit() else None
    main = main_container(pod)
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == main:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("exitCode") == 0:
                return parse_result(name, index, term.get("message"), envelope)
    return None


def results_by_index(pods: Sequence[Mapping[str, Any]], envelope: bool = False) -> dict[int, PodResult]:
    """Per completion index, the result of its latest succeeded Pod."""
    found: dict[int, tuple[str, PodResult]] = {}
    for pod in pods:
        r = pod_result(pod, envelope)
        if r is None or r.index is None:
            continue
        created = (pod.get("metadata") or {}).get("creationTimestamp") or ""
        if r.index not in found or found[r.index][0] < created:
            found[r.index] = (created, r)
    return {i: r for i, (_, r) in found.items()}


def results_in_order(pods: Sequence[Mapping[str, Any]]) -> list[PodResult]:
    """The results of every succeeded Pod: by completion index, else by finish time."""

    def key(pod: Mapping[str, Any]) -> tuple[int, str]:
        r = pod_result(pod)
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        finished = ((statuses[0].get("state") or {}).get("terminated") or {}).get("finishedAt") or ""
        return (r.index if r is not None and r.index is not None else -1, finished)

    ordered = sorted(pods, key=key)
    return [r for p in ordered if (r := pod_result(p)) is not None]

"""What a waiter watches (a :class:`Scope`), and the slimmed objects the shared watch keeps of it.

Pure, so it is unit-tested on plain dicts. The shared watch (``hooks/watch.py``) lists only a
waiter's scope from the apiserver (by name, label selector, field selector) and matches the
namespace's watch events against it locally; both must agree, so a scope is matched here
exactly as the apiserver selects: labels with ``core/selector.py``, fields by their dotted path.
What is kept of a matching object is only what the waits read (``core/outcome.py``,
``core/diagnose.py``, ``core/podlog.py``, ``core/group.py``): a Job's full object carries its
Pod template and ``managedFields``, ten times what the waits need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.selector import Requirement, parse_selector, selector_matches

Obj = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    """The objects of one kind in a namespace that a waiter wants: all of ``name``, ``selector``
    (a label selector) and ``fields`` (a field selector of ``path=value`` / ``path!=value`` terms)
    that are given must hold. An empty scope is the whole namespace."""

    name: str | None = None
    selector: str = ""
    fields: str = ""
    _labels: tuple[Requirement, ...] = field(default=(), init=False, repr=False, compare=False)
    _fields: tuple[tuple[tuple[str, ...], bool, str], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_labels", parse_selector(self.selector) if self.selector else ())
        object.__setattr__(self, "_fields", parse_fields(self.fields))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self._labels and not selector_matches(self._labels, meta.get("labels")):
            return False
        return all((_lookup(obj, path) == value) == equal for path, equal, value in self._fields)

    def list_params(self, label_selector: str = "", field_selector: str = "") -> dict[str, str]:
        """The LIST parameters that select this scope, on top of the watch's own filters."""
        fields = [f for f in (field_selector, self.fields) if f]
        if self.name is not None:
            fields.append(f"metadata.name={self.name}")  # the apiserver reads one key for this
        labels = ",".join(s for s in (label_selector, self.selector) if s)
        params = {"label_selector": labels, "field_selector": ",".join(fields)}
        return {k: v for k, v in params.items() if v}


def parse_fields(text: str) -> tuple[tuple[tuple[str, ...], bool, str], ...]:
    """``a.b=v,c!=w`` as ((("a", "b"), True, "v"), (("c",), False, "w")); ``==`` is ``=``."""
    out = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        equal = "!=" not in term
        path, sep, value = term.partition("!=" if not equal else "==" if "==" in term else "=")
        if not sep or not path.strip() or "\\" in term:
            raise InvalidJobSpecError(f"field selector {text!r}: write path=value or path!=value terms")
        out.append((tuple(path.strip().split(".")), equal, value.strip()))
    return tuple(out)


def _lookup(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)  # the apiserver reads a missing field as ""


# -- slimming ---------------------------------------------------------------------------------

_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "annotations",
    "creationTimestamp",
    "deletionTimestamp",
)
# kubectl apply stores the whole object in an annotation: never read by a wait.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_JOB_SPEC = ("parallelism", "completions", "completionMode", "suspend", "backoffLimit")
_EVENT = (
    "involvedObject",
    "regarding",
    "reason",
    "message",
    "note",
    "type",
    "count",
    "firstTimestamp",
    "lastTimestamp",
    "eventTime",
)


def slim(kind: str, obj: Mapping[str, Any]) -> Obj:
    """The parts of a Job, Pod or Event (API dict) that the waits read; the rest is dropped."""
    meta = obj.get("metadata") or {}
    kept: Obj = {"metadata": {k: meta[k] for k in _META if k in meta}}
    annotations = meta.get("annotations")
    if annotations and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        kept["metadata"]["annotations"] = {
            k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS
        }
    if kind == "events":
        kept.update((k, obj[k]) for k in _EVENT if k in obj)
        return kept
    spec = obj.get("spec") or {}
    if kind == "jobs":
        kept["spec"] = {k: spec[k] for k in _JOB_SPEC if k in spec}
    elif kind == "workloads":  # Kueue's: its LocalQueue; the status says the rest
        kept["spec"] = {"queueName": spec.get("queueName")}
    else:  # pods: the containers' names (which logs to follow); their states are in the status
        kept["spec"] = {
            k: [{"name": c.get("name")} for c in spec[k]]
            for k in ("initContainers", "containers")
            if spec.get(k)
        }
    if "status" in obj:
        kept["status"] = obj["status"]
    return kept


def version(obj: Mapping[str, Any] | None) -> int | None:
    """An object's ``resourceVersion`` as an integer (etcd's revision), or None if it is not one.

    Kubernetes calls it opaque; every apiserver backed by etcd writes the revision, and the
    watch compares them only to drop an update older than what it holds.
    """
    return parse_version(((obj or {}).get("metadata") or {}).get("resourceVersion"))


def parse_version(value: Any) -> int | None:
    """A ``resourceVersion`` string as an integer, or None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

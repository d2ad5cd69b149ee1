"""A Job dict checked against the Kubernetes API schema that the client's models carry.

The ``kubernetes`` client's models (``V1Job``, ``V1JobSpec``, ``V1PodSpec``, ``V1Container``, ...)
know every field of their kind: ``attribute_map`` gives the manifest (camelCase) names and
``openapi_types`` each field's type. Walking a Job with them finds what the apiserver would drop
or refuse (a misspelt ``backofLimit``, ``comand``), with the nearest valid name. Quantities
(``limits``, ``requests``, ...) are parsed as the apiserver parses them, and a few closed sets of
values (toleration operators, pull policies, ...) are checked. Values holding Jinja are left to
the run, after rendering. Pure apart from reading the client's model classes.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\((?:str), (.+)\)$|^dict\[str, (.+)\]$")

# (model, manifest field): the values Kubernetes accepts.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("V1Toleration", "operator"): ("Exists", "Equal"),
    ("V1Toleration", "effect"): ("NoSchedule", "PreferNoSchedule", "NoExecute"),
    ("V1Container", "imagePullPolicy"): ("Always", "IfNotPresent", "Never"),
    ("V1Container", "terminationMessagePolicy"): ("File", "FallbackToLogsOnError"),
    ("V1EphemeralContainer", "imagePullPolicy"): ("Always", "IfNotPresent", "Never"),
    ("V1ContainerPort", "protocol"): ("TCP", "UDP", "SCTP"),
    ("V1PodSpec", "restartPolicy"): ("Always", "OnFailure", "Never"),
    ("V1PodSpec", "dnsPolicy"): ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    ("V1PodSpec", "preemptionPolicy"): ("PreemptLowerPriority", "Never"),
    ("V1NodeSelectorRequirement", "operator"): ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"),
    ("V1LabelSelectorRequirement", "operator"): ("In", "NotIn", "Exists", "DoesNotExist"),
}
# (model, manifest field) whose values are resource quantities ("500m", "1Gi").
QUANTITIES = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1PodSpec", "overhead"),
    ("V1EmptyDirVolumeSource", "sizeLimit"),
}


@functools.cache
def _model(name: str) -> Any:
    from kubernetes.client import models

    return getattr(models, name, None)


@functools.cache
def _fields(name: str) -> dict[str, str]:
    """Manifest field name -> its type string, for the model called ``name``."""
    cls = _model(name)
    return {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def nearest(name: str, choices: list[str]) -> str | None:
    """The valid name closest to a misspelt one, if any is close."""
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    found = difflib.get_close_matches(name, choices, n=1, cutoff=0.7)
    return found[0] if found else None


def _quantity(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    from kubernetes.utils.quantity import parse_quantity

    try:
        parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return False
    return True


def schema_problems(value: Any, kind: str = "V1Job", where: str = "") -> list[str]:
    """Every field of ``value`` (an API-form dict) the ``kind`` model does not have, every
    quantity that does not parse and every value outside its closed set, one line each."""
    problems: list[str] = []
    _walk(value, kind, where, problems)
    return problems


def _walk(value: Any, kind: str, where: str, problems: list[str]) -> None:
    if value is None or _templated(value):
        return
    if m := _LIST.match(kind):
        if isinstance(value, list):
            for i, v in enumerate(value):
                _walk(v, m.group(1), f"{where}[{i}]", problems)
        return
    if m := _DICT.match(kind):
        if isinstance(value, Mapping):
            for k, v in value.items():
                _walk(v, m.group(1) or m.group(2), f"{where}[{k!r}]", problems)
        return
    if _model(kind) is None or not hasattr(_model(kind), "attribute_map"):
        return  # str, int, bool, object, datetime: left to the apiserver
    if not isinstance(value, Mapping):
        return  # the wrong shape: the client's conversion or the apiserver says so
    fields = _fields(kind)
    for key, v in value.items():
        here = f"{where}.{key}" if where else str(key)
        if key not in fields:
            best = nearest(str(key), list(fields))
            hint = f", did you mean {best}?" if best else f" (its fields: {', '.join(sorted(fields))})"
            problems.append(f"{here}: not a field of {kind[2:] if kind.startswith('V1') else kind}{hint}")
            continue
        if (kind, key) in ENUMS and v is not None and not _templated(v) and v not in ENUMS[kind, key]:
            problems.append(f"{here} must be one of {', '.join(ENUMS[kind, key])}, not {v!r}")
        elif (kind, key) in QUANTITIES and v is not None:
            values = v.items() if isinstance(v, Mapping) else [(None, v)]
            for name, q in values:
                if not _templated(q) and not _quantity(q):
                    at = f"{here}[{name!r}]" if name is not None else here
                    problems.append(
                        f"{at} = {q!r} is not a quantity: write e.g. '500m' or 2 (CPU), "
                        "'256Mi' or '1Gi' (memory)"
                    )
        else:
            _walk(v, fields[key], here, problems)

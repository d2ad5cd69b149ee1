"""What each constructor parameter of cncf.kubernetes' ``KubernetesJobOperator`` becomes here.

One table (``PEER_PARAMS``, in ``core/peertable.py``) answers every one of the peer's
parameters (through its MRO, ``BaseOperator``'s aside): the same parameter here, an alias of
ours, a value mapped onto ours, a polling knob that a watch makes pointless (accepted, and the
task log says so once), or a refusal naming what to use instead. ``translate`` applies it to the
keyword arguments an operator was given, so a DAG written for the peer fails at parse time only
where nothing here can mean the same, with the parameter and the counterpart in the message.
``scripts/gen_migration.py`` writes the migration table (``docs/migration.rst``) from the same
entries.

Pure: no Airflow, no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batchjob.core.peertable import (
    PEER_ONLY,
    PEER_PARAMS,
    PeerParam,
    PeerParamError,
    exit_codes,
)

__all__ = [
    "PEER_ONLY",
    "PEER_PARAMS",
    "PeerParam",
    "PeerParamError",
    "Translation",
    "exit_codes",
    "one_of",
    "take_peer_params",
    "translate",
    "with_init_logs",
]


@dataclass(frozen=True)
class Translation:
    """Our parameters set from peer ones (``values``), and the lines for the task log (``notes``)."""

    values: dict[str, Any]
    notes: tuple[str, ...]


def _accepted(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(value is a or (type(value) is type(a) and value == a) for a in allowed)


def one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """One value from a parameter and its cncf.kubernetes alias; both given is a mistake."""
    if value is not None and alias_value is not None:
        raise PeerParamError(f"{name} and {alias} are the same parameter: pass one of them")
    return value if value is not None else alias_value


def translate(given: Mapping[str, Any], ours: Mapping[str, Any]) -> Translation:
    """Apply ``PEER_PARAMS`` to the peer-only parameters in ``given``.

    ``ours`` holds the parameters of ours that were set (not left to their defaults); a peer
    parameter asking one of them for another value is a conflict (the task would run with one
    of two values); the same value twice is fine (cncf.kubernetes takes ``durable`` and
    ``reattach_on_restart`` together).
    Raises PeerParamError naming the parameter and what to use.
    """
    values: dict[str, Any] = {}
    notes: list[str] = []
    from_peer: dict[str, list[str]] = {}
    for name, value in given.items():
        entry = PEER_PARAMS.get(name)
        if entry is None or entry.answer == "same":
            raise PeerParamError(f"{name} is not a peer-only parameter (internal error)")
        if entry.answer == "watched":
            notes.append(f"{name}={value!r} has no effect: {entry.doc.removeprefix('accepted, no effect: ')}")
            continue
        if entry.answer == "fixed":
            if not _accepted(value, entry.accepted):
                raise PeerParamError(f"{name}={value!r} has no counterpart here: {entry.doc}")
            continue
        if value is None:
            continue  # the peer's "unset" for an alias or a mapped value: ours keeps its default
        target = str(entry.target)
        converted = entry.convert(value) if entry.convert else value
        if target == "diagnostics" and target in values:
            converted = bool(values[target]) or converted
        elif target == "pending_timeout" and target in values:
            converted = values[target] + converted
        elif target in values and values[target] != converted:
            raise PeerParamError(
                f"{' and '.join([*from_peer[target], name])} ask for different {target} values: pass one"
            )
        if target == "container_logs":
            continue  # merged below, with ours
        values[target] = converted
        from_peer.setdefault(target, []).append(name)
    for target, names in from_peer.items():
        if ours.get(target) is not None and ours[target] != values[target]:
            raise PeerParamError(
                f"{' and '.join(names)} and {target} are the same setting (cncf.kubernetes' name and "
                f"ours): pass only {target}"
            )
    if "init_container_logs" in given:
        values["container_logs"] = with_init_logs(ours.get("container_logs"), given["init_container_logs"])
    return Translation(values, tuple(notes))


INIT_CONTAINERS = "@init"  # in a container_logs list: every init container (core/podlog.py)
MAIN_CONTAINER = "@main"  # in a container_logs list: the main container


def with_init_logs(container_logs: Any, init: Any) -> Any:
    """``container_logs`` widened by the peer's ``init_container_logs`` (True, a name or names)."""
    if init is None or init is False or container_logs is True:
        return container_logs
    if container_logs is None or container_logs is False:
        wanted = [MAIN_CONTAINER]
    elif isinstance(container_logs, str):
        wanted = [container_logs]
    else:
        wanted = list(container_logs)
    if init is True:
        added = [INIT_CONTAINERS]
    elif isinstance(init, str):
        added = [init]
    elif isinstance(init, Sequence) and all(isinstance(n, str) for n in init):
        added = list(init)
    else:
        raise PeerParamError(
            f"init_container_logs={init!r}: use True, an init container's name or a list of names"
        )
    return wanted + [n for n in added if n not in wanted]


def take_peer_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the peer-only parameters out of an operator's ``**kwargs`` (in place)."""
    return {name: kwargs.pop(name) for name in list(kwargs) if name in PEER_ONLY}

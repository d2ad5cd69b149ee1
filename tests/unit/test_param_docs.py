"""Every public parameter is documented: each constructor parameter has its ``:param name:``.

The classes are found by walking the package, not listed, so a new operator, sensor, trigger or
hook is covered as soon as it exists: every public class (name not starting with ``_``) defined in
``airflow_batchjob`` that is an Airflow ``BaseOperator`` (sensors included), ``BaseTrigger`` or
``BaseHook``, and the public ``...Hook`` classes of ``airflow_batchjob.hooks`` (``BatchJobHook``
wraps cncf.kubernetes' hook rather than subclassing ``BaseHook``).

Each class's own ``__init__`` parameters (``self``, ``*args`` and ``**kwargs`` aside) must be in
that class's docstring, the page autodoc renders for it. A subclass that passes ``**kwargs`` on to
a base of ours does not repeat the base's parameters: those are checked on the base (a private
one such as ``_JobsOperator`` included), where each is taken.

Internal helpers that are none of these (``Subscription``, ``NamespaceWatch``, ``WaitDiagnostics``,
``LogSettings``, ``PodLogs``, ``ProgressLog``) are not checked.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger

import airflow_batchjob
from airflow_batchjob._compat import BaseHook

PACKAGE = airflow_batchjob.__name__
KINDS: tuple[type, ...] = (BaseOperator, BaseTrigger, BaseHook)
_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:", re.M)  # ":param name:" or ":param type name:"


def _modules() -> list[str]:
    names = [PACKAGE]
    for info in pkgutil.walk_packages(airflow_batchjob.__path__, f"{PACKAGE}."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # python -m airflow_batchjob.worker: runs the worker
            names.append(info.name)
    return names


def _is_public_api(cls: type, module: str) -> bool:
    if cls.__name__.startswith("_") or cls.__module__ != module:
        return False
    if issubclass(cls, KINDS):
        return True
    return module.startswith(f"{PACKAGE}.hooks.") and cls.__name__.endswith("Hook")


def public_classes() -> list[type]:
    """The operators, sensors, triggers and hooks the package defines, each once."""
    found: dict[str, type] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and _is_public_api(cls, name):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[key] for key in sorted(found)]


def documented(cls: type) -> set[str]:
    """The names of the class docstring's ``:param name:`` fields."""
    return set(_PARAM.findall(cls.__dict__.get("__doc__") or ""))


def own_params(cls: type) -> list[str]:
    """The parameters the class's own ``__init__`` takes, ``self``, ``*args`` and ``**kwargs`` aside."""
    init = cls.__dict__["__init__"]
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = list(inspect.signature(init).parameters.values())[1:]  # self
    return [p.name for p in params if p.kind not in skipped]


def missing_params(classes: Iterable[type], package: str = PACKAGE) -> list[str]:
    """``Class.param`` for each undocumented parameter of these classes and of their bases in
    ``package`` (each base once, checked against its own docstring)."""
    checked: set[type] = set()
    missing: list[str] = []
    for cls in classes:
        for klass in cls.__mro__:
            ours = klass.__module__ == package or klass.__module__.startswith(f"{package}.")
            if klass in checked or not ours or "__init__" not in klass.__dict__:
                continue
            checked.add(klass)
            have = documented(klass)
            missing += [f"{klass.__qualname__}.{p}" for p in own_params(klass) if p not in have]
    return missing


def test_the_walk_finds_every_kind_of_public_class() -> None:
    """Not vacuous: the walk finds operators, sensors, triggers and hooks, and no private class."""
    names = {cls.__name__ for cls in public_classes()}
    expected = {
        "BaseBatchJobOperator",
        "BatchJobOperator",
        "JobGroupOperator",
        "IndexedJobOperator",
        "BatchMapOperator",
        "QueuePrefillOperator",
        "QueueJobOperator",
        "DeleteJobOperator",
        "BaseJobWatchSensor",
        "JobSensor",
        "JobGroupSensor",
        "JobTrigger",
        "JobGroupTrigger",
        "BatchJobHook",
        "RabbitMQHook",
    }
    assert expected <= names, sorted(expected - names)
    assert not any(n.startswith("_") for n in names)
    assert not {"Subscription", "NamespaceWatch", "WaitDiagnostics", "PodLogs", "ProgressLog"} & names


def test_every_public_constructor_parameter_has_a_param_field() -> None:
    missing = missing_params(public_classes())
    assert not missing, (
        f"{len(missing)} constructor parameters have no ':param name:' in their class's docstring "
        f"(document each on the class whose __init__ takes it): {', '.join(missing)}"
    )


class _ProbeBase(BaseOperator):
    """A base of "ours" that leaves its parameter to the subclass's docstring: not accepted."""

    def __init__(self, *, shared: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shared = shared


class _Probe(_ProbeBase):
    """A probe operator.

    :param shared: documented here, but taken by the base: the base must say it.
    :param documented_one: documented.
    """

    def __init__(self, documented_one: int, forgotten: str = "", *args: object, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.documented_one, self.forgotten = documented_one, forgotten


def test_the_check_reports_an_undocumented_parameter() -> None:
    """The check above can fail: a parameter with no ``:param`` is named, on the class that takes it."""
    assert documented(_Probe) == {"shared", "documented_one"}
    assert own_params(_Probe) == ["documented_one", "forgotten"]
    assert missing_params([_Probe], package=__name__) == ["_Probe.forgotten", "_ProbeBase.shared"]
    assert missing_params([_ProbeBase], package=__name__) == ["_ProbeBase.shared"]

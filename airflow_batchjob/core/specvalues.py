"""The Job spec parameters (``completions`` ... ``suspend``): their values as given, and as rendered.

The operators take these parameters as Airflow template fields. A value holding Jinja (or an XCom)
is known only at run time, so it waits for the run; a literal one is checked when the DAG is
parsed. Rendering gives text unless the DAG renders native objects
(``render_template_as_native_obj=True``), so ``rendered_value`` turns the text back into what the
Job takes (``"3"`` -> 3, ``"true"`` -> True, YAML/JSON text -> a dict), refusing anything else with
the parameter's name. The rules between fields (``max_failed_indexes`` needs
``backoff_limit_per_index``, ...) stay with ``validation.validate_job``, which sees the built Job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import yaml

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.manifest import to_api

# In JobOverrides' order (core/build.py), which is also the operators' parameter order.
SPEC_FIELDS: tuple[str, ...] = (
    "completions",
    "parallelism",
    "completion_mode",
    "backoff_limit",
    "backoff_limit_per_index",
    "max_failed_indexes",
    "pod_failure_policy",
    "success_policy",
    "pod_replacement_policy",
    "active_deadline_seconds",
    "ttl_seconds_after_finished",
    "suspend",
)
INT_FIELDS = frozenset(
    {
        "completions",
        "parallelism",
        "backoff_limit",
        "backoff_limit_per_index",
        "max_failed_indexes",
        "active_deadline_seconds",
        "ttl_seconds_after_finished",
    }
)
POLICY_FIELDS = frozenset({"pod_failure_policy", "success_policy"})
CHOICES: dict[str, tuple[str, ...]] = {
    "completion_mode": ("NonIndexed", "Indexed"),
    "pod_replacement_policy": ("Failed", "TerminatingOrFailed"),
}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def has_jinja(value: Any) -> bool:
    """Whether a value holds Jinja markup: a string with ``{{`` or ``{%``, or one inside a dict or
    list (a policy with one templated field waits for the run as a whole)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(has_jinja(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_jinja(v) for v in value)
    return False


def render_markup(value: Any, render: Callable[[str], Any], resolve: Callable[[Any], Any]) -> Any:
    """``value`` with each string that holds Jinja rendered by ``render``, inside dicts and lists too.

    Strings without markup are left alone: a native-object DAG would otherwise turn a policy's
    ``status: "True"`` into a bool or ``succeededIndexes: "0,2"`` into a tuple. Other objects
    (an XCom) go to ``resolve``.
    """
    if isinstance(value, str):
        return render(value) if has_jinja(value) else value
    if isinstance(value, Mapping):
        return {k: render_markup(v, render, resolve) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(render_markup(v, render, resolve) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return resolve(value)


def spec_field(name: str, value: Any) -> Mapping[str, Any] | None:
    """A Job spec field given as a dict or a ``V1...`` object (``pod_failure_policy``,
    ``success_policy``), as an API-form dict."""
    if value is None:
        return None
    if hasattr(value, "openapi_types"):
        return cast("Mapping[str, Any]", to_api(value))
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict or a V1... object, not {type(value).__name__}")
    return dict(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_int(name: str, value: Any) -> int:
    """An integer parameter as given or rendered: an int, or text of one (``"3"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise InvalidJobSpecError(
        f"{name}={_shown(value)} (as rendered): give a non-negative integer, e.g. {name}=3 or a "
        "template that renders to digits"
    )


def rendered_value(name: str, value: Any) -> Any:
    """A spec parameter's value as the Job takes it, from what rendering gave (text, or a native
    object). Literal values pass unchanged; what cannot be the parameter's type is refused, naming
    it. Ranges and the rules between fields are ``validate_job``'s."""
    if value is None:
        return None
    if name in INT_FIELDS:
        return to_int(name, value)
    if name == "suspend":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise InvalidJobSpecError(
            f"suspend={_shown(value)} (as rendered): give True or False, or a template that renders "
            "to true or false"
        )
    if name in POLICY_FIELDS:
        if isinstance(value, str):  # text rendering gives the policy as YAML or JSON text
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise InvalidJobSpecError(f"{name}: the rendered text is not valid YAML or JSON: {e}") from e
        try:
            return spec_field(name, value)
        except TypeError:
            raise InvalidJobSpecError(
                f"{name}={_shown(value)} (as rendered): give a dict or a V1... object, or a template "
                "that renders to one (or to its YAML/JSON text)"
            ) from None
    return value.strip() if isinstance(value, str) else value


def literal_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with each literal value on its own: when another parameter holds Jinja, the
    Job cannot be built at parse time, but these are still checked then."""
    problems = []
    for name, value in values.items():
        if value is None:
            continue
        if name in INT_FIELDS and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"{name}={_shown(value)}: give a non-negative integer (or a Jinja template)")
        elif name == "suspend" and not isinstance(value, bool):
            problems.append(f"suspend={_shown(value)}: give True or False (or a Jinja template)")
        elif name in CHOICES and value not in CHOICES[name]:
            problems.append(f"{name}={_shown(value)}: give one of {', '.join(CHOICES[name])}")
    return problems

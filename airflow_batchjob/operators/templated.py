"""The Job spec parameters as Airflow template fields (``core/specvalues.py`` holds the rules).

``BatchJobOperator`` keeps each spec parameter as an attribute of its own, so Jinja renders it
(and an XCom resolves into it). A value holding Jinja or an XCom is checked once rendered, when
the task runs and before it creates anything; a literal one when the DAG is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from airflow_batchjob.core.build import JobOverrides
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.specvalues import (
    POLICY_FIELDS,
    SPEC_FIELDS,
    has_jinja,
    literal_problems,
    render_markup,
    rendered_value,
    spec_field,
)
from airflow_batchjob.exceptions import InvalidJobTemplateError

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import BaseOperator, Context

    _Base = BaseOperator
else:
    _Base = object


def is_reference(value: Any) -> bool:
    """An XCom (``other_task.output``), resolved when the task runs."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    return isinstance(value, XComArg)


def waits_for_run(value: Any) -> bool:
    """Whether a parameter's value is known only at run time (Jinja or an XCom)."""
    return has_jinja(value) or is_reference(value)


class TemplatedSpec(_Base):
    """The spec parameters (``SPEC_FIELDS``): set, rendered, and read back as ``JobOverrides``."""

    # As given, then as rendered (text unless the DAG renders native objects): ``overrides`` reads them.
    completions: Any
    parallelism: Any
    completion_mode: Any
    backoff_limit: Any
    backoff_limit_per_index: Any
    max_failed_indexes: Any
    pod_failure_policy: Any
    success_policy: Any
    pod_replacement_policy: Any
    active_deadline_seconds: Any
    ttl_seconds_after_finished: Any
    suspend: Any

    def set_spec_fields(self, values: Mapping[str, Any]) -> None:
        """Keep the spec parameters as attributes; a literal policy becomes its API-form dict now
        (a ``V1...`` object, or a wrong type refused), a templated one once rendered."""
        for name in SPEC_FIELDS:
            value = values.get(name)
            if name in POLICY_FIELDS and not waits_for_run(value):
                try:
                    value = spec_field(name, value)
                except TypeError as e:
                    raise InvalidJobTemplateError(str(e)) from e
            setattr(self, name, value)

    def spec_fields_for_run(self) -> list[str]:
        """The spec parameters whose values Jinja or an XCom gives at run time."""
        return [name for name in SPEC_FIELDS if waits_for_run(getattr(self, name))]

    def given_overrides(self) -> JobOverrides:
        """The spec parameters as given, unconverted: a literal value is checked at parse time
        exactly as the Job will carry it (``parallelism="3"`` is refused, not read as 3)."""
        return JobOverrides(**{name: getattr(self, name) for name in SPEC_FIELDS})

    def check_literal_spec_fields(self) -> None:
        """At parse time, when some spec parameter waits for the run: check the others one by one
        (the rules between them wait for the built Job)."""
        literal = {n: getattr(self, n) for n in SPEC_FIELDS if n not in self.spec_fields_for_run()}
        problems = literal_problems(literal)
        if problems:
            raise InvalidJobSpecError(problems)

    @property
    def overrides(self) -> JobOverrides:
        """The spec parameters as the Job takes them: rendered text converted (``"3"`` -> 3),
        anything that cannot be the parameter's type refused, naming it."""
        values: dict[str, Any] = {}
        try:
            for name in SPEC_FIELDS:
                values[name] = rendered_value(name, getattr(self, name))
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {self.task_id}: {e}") from e
        return JobOverrides(**cast("dict[str, Any]", values))

    def check_spec_fields(self) -> JobOverrides:
        """The rendered spec parameters, checked: the first thing ``execute`` does, so a bad value
        fails the task before any call to the cluster (``build`` checks the whole Job next)."""
        return self.overrides

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Render the spec parameters' Jinja only; Airflow's pass renders every other field.

        Airflow renders every string of a field, and a native-object DAG would turn a policy's
        literal ``"True"`` or ``"0,2"`` into a bool or a tuple; here only strings with markup are
        rendered (an XCom is resolved). ``MappedOperator`` calls this on the unmapped task too.
        """
        names = list(template_fields)
        spec = [n for n in names if n in SPEC_FIELDS] if parent is self else []
        others = [n for n in names if n not in spec]
        super()._do_render_template_fields(parent, others, context, jinja_env, seen_oids)
        for name in spec:
            given = getattr(self, name)
            try:
                value = render_markup(
                    given,
                    lambda text: self._render(jinja_env.from_string(text), context),
                    lambda obj: self.render_template(obj, context, jinja_env, seen_oids),
                )
            except Exception:
                self.log.error("rendering %s failed; its template: %r", name, given)  # as Airflow names it
                raise
            setattr(self, name, value)

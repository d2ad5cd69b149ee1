"""The Job body a ``BatchJobOperator`` builds from its parameters (mixed into ``BatchJobOperator``).

At parse time (``_validate_early``) a literal set of parameters is built once and refused if the
Job would be invalid; at run time (``build``) the task instance's Job is built, named and labelled
for it, and validated before anything is created.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_batchjob import config
from airflow_batchjob.core import naming
from airflow_batchjob.core.build import ContainerParams, JobOverrides, build_job, env_list, hold_ttl
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.manifest import is_template_file
from airflow_batchjob.core.podsettings import PodSettings
from airflow_batchjob.core.results import add_result_env
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.podlayers import apply_pod_layers, check_settings, job_layers

if TYPE_CHECKING:
    from airflow.sdk import Context


class JobBuilding:
    """``build`` and the parse-time check of the Job; the parameters they read are ``BatchJobOperator``'s."""

    job_template: Any
    image: str | None
    cmds: Any
    arguments: Any
    env: Any
    container_resources: Any
    job_name: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    full_job_spec: Any
    base_container_name: str
    random_name_suffix: bool
    wait_until_job_complete: bool
    task_id: str
    log: Any
    if TYPE_CHECKING:  # TemplatedSpec's and PeerCompat's

        @property
        def overrides(self) -> JobOverrides: ...

        def given_overrides(self) -> JobOverrides: ...

        def spec_fields_for_run(self) -> list[str]: ...

        def check_literal_spec_fields(self) -> None: ...

        def _add_skip_rule(self, body: dict[str, Any]) -> None: ...

    def _validate_early(self) -> None:
        """Refuse bad parameters when the DAG is parsed, unless Jinja must render them first."""
        pod = self.pod_settings()
        fields = (
            self.job_template,
            self.image,
            self.cmds,
            self.arguments,
            self.env,
            self.container_resources,
            pod,
        )
        try:
            if "{{" not in repr(pod):
                check_settings(pod)
            spec_for_run = self.spec_fields_for_run()  # Jinja or an XCom: the Job waits for the run
            if spec_for_run:
                self.check_literal_spec_fields()  # the other spec parameters, one by one
            later = spec_for_run or is_template_file(self.job_template) or pod.pod_template_file
            if later or "{{" in repr(fields):
                return  # a file or a template: validated at run time, still before anything is created
            # YAML text (no file, no Jinja) is parsed here: a malformed one fails the DAG's parse
            exact = self.job_name if self.job_name and not self.random_name_suffix else None
            body = build_job(
                name=exact if exact and "{{" not in exact else "validate",
                namespace="default",
                template=job_layers(self.job_template, self.full_job_spec),
                container=self._container(),
                overrides=self.given_overrides(),
                pod=pod,
                lay_pod=apply_pod_layers,
            )
            self._add_skip_rule(body)
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {self.task_id}: {e}") from e

    def pod_settings(self) -> PodSettings:
        """The Pod parameters as given (or as Jinja rendered them)."""
        return PodSettings(**{key: getattr(self, key) for key in PodSettings.names()})

    def _container(self) -> ContainerParams:
        return ContainerParams(
            image=self.image,
            cmds=self.cmds,
            arguments=self.arguments,
            env=self.env,
            resources=self.container_resources,
            name=self.base_container_name,
        )

    def build(
        self,
        context: Context,
        namespace: str,
        *,
        name: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_labels: Mapping[str, str] | None = None,
        extra_annotations: Mapping[str, str] | None = None,
        overrides: JobOverrides | None = None,
    ) -> dict[str, Any]:
        """The Job spec for this task instance (or one of its items); validated before anything is created."""
        ti = context["ti"]
        dag_id, task_id, run_id = ti.dag_id, ti.task_id, ti.run_id
        map_index = -1 if ti.map_index is None else ti.map_index
        if name is None and self.job_name and not self.random_name_suffix:
            name = self.job_name
        name = name or naming.job_name(dag_id, task_id, run_id, map_index, prefix=self.job_name or None)
        labels = {
            **naming.task_labels(dag_id, task_id, run_id, map_index, ti.try_number),
            **self.labels,
            **(extra_labels or {}),
        }
        annotations = {
            **naming.task_annotations(dag_id, task_id, run_id, map_index),
            **self.annotations,
            **(extra_annotations or {}),
        }
        container = self._container()
        if extra_env:
            env = env_list(container.env) + [{"name": k, "value": v} for k, v in extra_env.items()]
            container = dataclasses.replace(container, env=env)
        try:
            body = build_job(
                name=name,
                namespace=namespace,
                template=job_layers(self.job_template, self.full_job_spec),
                container=container,
                overrides=overrides or self.overrides,
                labels=labels,
                annotations=annotations,
                pod=self.pod_settings(),
                lay_pod=apply_pod_layers,
                on_override=lambda line: self.log.warning("Pod setting replaced: %s", line),
            )
            self._add_skip_rule(body)
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {task_id}: {e}") from e
        default_ttl = config.get("default_ttl_seconds_after_finished")
        if self.wait_until_job_complete:
            hold_ttl(body, default_ttl)  # set once the task has read the outcome
        elif default_ttl is not None and default_ttl >= 0:  # nobody reads it here: the TTL runs now
            body["spec"].setdefault("ttlSecondsAfterFinished", default_ttl)
        add_result_env(body)
        return body

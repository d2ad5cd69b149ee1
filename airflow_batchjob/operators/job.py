"""BatchJobOperator: run one Kubernetes Job (one Pod, or a fixed completion count) from a task.

The Job's name is derived from the task instance (dag, task, run, map index), so a retry or a
restarted worker finds the Job it already created instead of creating a second one: a running Job
is adopted and waited on; a failed one is replaced by a fresh Job; a succeeded one is kept unless
the user cleared the task after a try reported it (``core/reported.py``). Waiting is a watch, in
the worker for ``defer_after`` seconds, then deferred to the triggerer (``deferrable=False``: the
same watch in the worker to the end).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from kubernetes.client.rest import ApiException

from airflow_batchjob.core import naming
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.reported import job_mark, keep_succeeded
from airflow_batchjob.core.results import PodResult, add_result_env, results_in_order
from airflow_batchjob.core.spec import (
    ContainerParams,
    JobOverrides,
    build_job,
    env_list,
    hold_ttl,
    load_template,
)
from airflow_batchjob.exceptions import (
    BatchJobError,
    InvalidJobTemplateError,
    InvalidResultError,
    JobFailedError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.operators.base import (  # noqa: F401 (re-exported: the names users import from here)
    API_CONCURRENCY,
    DEFER_AFTER,
    BaseBatchJobOperator,
    decided_event,
    run_wait,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """One value from a parameter and its cncf.kubernetes alias; both given is a mistake."""
    if value is not None and alias_value is not None:
        raise InvalidJobTemplateError(f"{name} and {alias} are the same parameter: pass one of them")
    return value if value is not None else alias_value


class BatchJobOperator(BaseBatchJobOperator):
    """Run a Kubernetes Job and wait for it; deferrable (watch-based) by default.

    Give either ``job_template`` (a dict, a YAML/JSON string, a ``.yaml``/``.yml``/``.json`` file
    path rendered by Jinja, or a ``V1Job``) or ``image`` plus ``cmds`` / ``arguments`` / ``env`` /
    ``container_resources`` (which also override the template's first container). The first-class
    parameters (``completions`` ... ``suspend``) override the template's spec. Returns (XCom) the
    Job's name, namespace, uid and outcome; also pushes ``job_name``/``job_namespace``/``job_uid``
    right after creating it.

    :param job_name: a prefix for the Job's name (alias: ``name``, cncf.kubernetes' name): the
        deterministic per-task-instance suffix is added, so runs never share a Job and retries
        adopt theirs. ``random_name_suffix=False`` uses it as the exact name.
    :param random_name_suffix: add the suffix to ``job_name`` (default True). cncf.kubernetes'
        name; the suffix here is derived from dag, task, run and map index, not random.
    :param env_vars: alias of ``env`` (cncf.kubernetes' name).
    :param wait_until_job_complete: wait for the Job's outcome (default True). False creates (or
        adopts) the Job and returns ``{name, namespace, uid}`` at once; a ``JobSensor`` waits.
    :param reuse_succeeded: if this task instance's Job already succeeded, return its result
        even when the user cleared the task after it succeeded. Default: a clear runs it again.
        (A retry always keeps a succeeded Job whose outcome the failed try never reported.)
    :param delete_on_finish: ``never`` (default), ``on_success`` or ``always``.
    :param wait_timeout: fail (and delete the Job if ``delete_on_finish="always"``) after this long.
    """

    template_fields: Sequence[str] = (
        "annotations",
        "arguments",
        "cmds",
        "env",
        "image",
        "job_name",
        "job_template",
        "labels",
        "namespace",
    )
    template_ext: Sequence[str] = (".yaml", ".yml", ".json")
    template_fields_renderers: ClassVar[dict[str, str]] = {"job_template": "yaml", "env": "json"}
    ui_color = "#d7e8fc"

    def __init__(
        self,
        *,
        job_template: Mapping[str, Any] | str | Any | None = None,
        image: str | None = None,
        cmds: list[str] | None = None,
        arguments: list[str] | None = None,
        env: Mapping[str, str] | list[dict[str, Any]] | None = None,
        container_resources: Mapping[str, Any] | None = None,
        job_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        completions: int | None = None,
        parallelism: int | None = None,
        completion_mode: str | None = None,
        backoff_limit: int | None = None,
        backoff_limit_per_index: int | None = None,
        max_failed_indexes: int | None = None,
        pod_failure_policy: Mapping[str, Any] | None = None,
        success_policy: Mapping[str, Any] | None = None,
        pod_replacement_policy: str | None = None,
        active_deadline_seconds: int | None = None,
        ttl_seconds_after_finished: int | None = None,
        suspend: bool | None = None,
        reuse_succeeded: bool = False,
        name: str | None = None,
        random_name_suffix: bool = True,
        env_vars: Mapping[str, str] | list[dict[str, Any]] | None = None,
        wait_until_job_complete: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        job_name = _alias("job_name", job_name, "name", name)
        env = _alias("env", env, "env_vars", env_vars)
        self.random_name_suffix = random_name_suffix
        self.wait_until_job_complete = wait_until_job_complete
        if job_template is None and image is None:
            raise InvalidJobTemplateError("BatchJobOperator needs job_template or image: pass one of them")
        self.job_template = job_template
        self.image = image
        self.cmds = cmds
        self.arguments = arguments
        self.env = env if env is None or isinstance(env, list) else dict(env)
        self.container_resources = dict(container_resources) if container_resources else None
        self.job_name = job_name
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        try:
            self.overrides = JobOverrides(
                completions=completions,
                parallelism=parallelism,
                completion_mode=cast("Any", completion_mode),
                backoff_limit=backoff_limit,
                backoff_limit_per_index=backoff_limit_per_index,
                max_failed_indexes=max_failed_indexes,
                pod_failure_policy=dict(pod_failure_policy) if pod_failure_policy else None,
                success_policy=dict(success_policy) if success_policy else None,
                pod_replacement_policy=cast("Any", pod_replacement_policy),
                active_deadline_seconds=active_deadline_seconds,
                ttl_seconds_after_finished=ttl_seconds_after_finished,
                suspend=suspend,
            )
        except (InvalidJobSpecError, TypeError, ValueError) as e:
            raise InvalidJobTemplateError(str(e)) from e
        self.reuse_succeeded = reuse_succeeded
        self._validate_early()

    def _validate_early(self) -> None:
        """Refuse bad parameters when the DAG is parsed, unless Jinja must render them first."""
        fields = (self.job_template, self.image, self.cmds, self.arguments, self.env)
        if isinstance(self.job_template, str) or "{{" in repr(fields):
            return  # a file path or a template: validated at run time, still before anything is created
        try:
            build_job(
                name="validate",
                namespace="default",
                template=load_template(self.job_template),
                container=self._container(),
                overrides=self.overrides,
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {self.task_id}: {e}") from e

    def _container(self) -> ContainerParams | None:
        if not (self.image or self.cmds or self.arguments or self.env or self.container_resources):
            return None
        return ContainerParams(
            image=self.image,
            cmds=self.cmds,
            arguments=self.arguments,
            env=self.env,
            resources=self.container_resources,
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
            base = container or ContainerParams()
            env = env_list(base.env) + [{"name": k, "value": v} for k, v in extra_env.items()]
            container = dataclasses.replace(base, env=env)
        try:
            body = build_job(
                name=name,
                namespace=namespace,
                template=load_template(self.job_template),
                container=container,
                overrides=overrides or self.overrides,
                labels=labels,
                annotations=annotations,
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {task_id}: {e}") from e
        hold_ttl(body)
        add_result_env(body)
        return body

    def execute(self, context: Context) -> Any:
        namespace = self.resolve_namespace()
        body = self.build(context, namespace)
        name = body["metadata"]["name"]
        job = self.create_or_adopt(self.hook, namespace, body, context)
        uid = job["metadata"]["uid"]
        self.push(context, "job_name", name)
        self.push(context, "job_namespace", namespace)
        self.push(context, "job_uid", uid)
        if not self.wait_until_job_complete:
            self.log.info("not waiting for Job %s/%s (wait_until_job_complete=False)", namespace, name)
            return {"name": name, "namespace": namespace, "uid": uid}
        return self.wait(context, namespace, name, uid, job)

    def create_or_adopt(
        self, hook: BatchJobHook, namespace: str, body: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """Create the Job, or adopt / keep / replace the one this task instance already created.

        Adopted: a running Job, and a succeeded one that ``keep_succeeded`` says an earlier try
        left unreported (or ``reuse_succeeded``). Replaced: a failed Job, and one whose success a
        try reported before the user cleared the task. The caller finishes a kept Job at once.
        """
        name = body["metadata"]["name"]
        ann = body["metadata"].get("annotations") or {}
        me = (
            ann.get(naming.ANNOTATION_DAG_ID, ""),
            ann.get(naming.ANNOTATION_TASK_ID, ""),
            ann.get(naming.ANNOTATION_RUN_ID, ""),
            int(ann.get(naming.LABEL_MAP_INDEX, "-1")),
        )
        for _ in range(3):
            existing = hook.get_job(namespace, name)
            if existing is not None:
                outcome = outcome_from_job(existing)
                uid = existing["metadata"]["uid"]
                mine = naming.owned_by(existing, *me)
                if not mine and not outcome.done:
                    raise BatchJobError(
                        f"Job {namespace}/{name} is still running, but another run (or a person) "
                        "made it: with random_name_suffix=False every run uses this one name. Let "
                        "the name take its per-run suffix, or wait for that Job first"
                    )
                if not outcome.done:
                    self.log.info(
                        "adopting Job %s/%s (uid %s), still running: %s",
                        namespace,
                        name,
                        uid,
                        outcome.summary(),
                    )
                    return existing
                if (
                    mine
                    and outcome.state is JobState.SUCCEEDED
                    and (self.reuse_succeeded or keep_succeeded(existing, self.max_tries(context)))
                    and self.work_left_done(existing)
                ):
                    self.log.info(
                        "Job %s/%s (uid %s) already succeeded; keeping it (%s)",
                        namespace,
                        name,
                        uid,
                        "reuse_succeeded=True"
                        if self.reuse_succeeded
                        else "an earlier try of this task ended before it reported the outcome",
                    )
                    return existing
                why = (
                    "another run's Job of the same exact name"
                    if not mine
                    else "the task was cleared after it succeeded"
                    if job_mark(existing)
                    else "a retry runs a failed Job again"
                )
                self.log.info(
                    "Job %s/%s (uid %s) ended %s (%s); replacing it with a fresh Job: %s",
                    namespace,
                    name,
                    uid,
                    outcome.state.value,
                    outcome.reason,
                    why,
                )
                hook.delete_job(namespace, name, "Background", uid=uid)
                hook.wait_deleted(namespace, name, uid)
            try:
                job = hook.create_job(namespace, body)
            except ApiException as e:
                if e.status == 409:  # created meanwhile by a concurrent attempt: adopt it
                    continue
                if e.status == 422 or e.status == 400:
                    raise InvalidJobTemplateError(
                        f"the apiserver rejected Job {namespace}/{name}: {e.body}"
                    ) from e
                raise
            self.log.info("created Job %s/%s (uid %s)", namespace, name, job["metadata"]["uid"])
            return job
        raise BatchJobError(f"could not create or adopt Job {namespace}/{name}: it keeps changing")

    def work_left_done(self, job: dict[str, Any]) -> bool:
        """Whether a succeeded Job still stands for finished work (a queue may have items left)."""
        return True

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        try:  # the Pods' results are read before delete_on_finish or a TTL can remove them
            outcome = self.finish(event, context, cleanup=False)
        except JobFailedError as e:
            if e.outcome:
                self.cleanup_after(JobOutcome.from_dict(e.outcome), context)
            raise
        results = self.pod_results(outcome) if self.do_xcom_push else []
        bad = [r.error for r in results if r.error]
        if bad:
            self.release_ttl(outcome.namespace, outcome.name, outcome.uid)
            raise InvalidResultError(
                f"Job {outcome.namespace}/{outcome.name} succeeded, but " + "; ".join(bad)
            )
        self.cleanup_after(outcome, context)
        return self.result(outcome, results)

    def pod_results(self, outcome: JobOutcome) -> list[PodResult]:
        """What each succeeded Pod returned (``core/results.py``): one Pod list, no per-Pod call."""
        pods = self.hook.list_pods(outcome.namespace, f"batch.kubernetes.io/controller-uid={outcome.uid}")
        return results_in_order(pods)

    @staticmethod
    def result(outcome: JobOutcome, results: Sequence[PodResult] = ()) -> dict[str, Any]:
        """The return value: the Job, its outcome, and what its Pods returned (``results`` in
        completion order; ``result``, the one value when one Pod succeeded)."""
        values = [r.value for r in results]
        return {
            "name": outcome.name,
            "namespace": outcome.namespace,
            "uid": outcome.uid,
            "outcome": outcome.to_dict(),
            "result": values[0] if len(values) == 1 else None,
            "results": values,
        }

"""BatchJobOperator: run one Kubernetes Job (one Pod, or a fixed completion count) from a task.

The Job's name is derived from the task instance (dag, task, run, map index), so a retry or a
restarted worker finds the Job it already created instead of creating a second one: a running Job
is adopted and waited on; a failed one is replaced by a fresh Job; a succeeded one is kept unless
the user cleared the task after a try reported it (``core/reported.py``). Waiting is a watch, in
the worker for ``defer_after`` seconds, then deferred to the triggerer (``deferrable=False``: the
same watch in the worker to the end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_batchjob.core.build import EnvParam, ResourcesParam
from airflow_batchjob.core.outcome import JobOutcome
from airflow_batchjob.core.podsecurity import PodSecurity
from airflow_batchjob.core.podsettings import PodSettings
from airflow_batchjob.core.specvalues import SPEC_FIELDS
from airflow_batchjob.exceptions import InvalidJobTemplateError, InvalidResultError, JobFailedError
from airflow_batchjob.operators.adopting import JobAdopting
from airflow_batchjob.operators.base import (  # noqa: F401 (re-exported: the names users import from here)
    DEFER_AFTER,
    BaseBatchJobOperator,
    decided_event,
    run_wait,
)
from airflow_batchjob.operators.building import JobBuilding
from airflow_batchjob.operators.compat import PeerCompat
from airflow_batchjob.operators.templated import TemplatedSpec

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import V1PodFailurePolicy, V1SuccessPolicy


class BatchJobOperator(JobBuilding, TemplatedSpec, PeerCompat, JobAdopting, BaseBatchJobOperator):
    """Run a Kubernetes Job and wait for it; deferrable (watch-based) by default.

    Give either ``job_template`` (a dict, a YAML/JSON string, a ``.yaml``/``.yml``/``.json`` file
    path rendered by Jinja, or a ``V1Job``) or ``image`` plus ``cmds`` / ``arguments`` / ``env`` /
    ``container_resources`` (which also override the template's main container: the one named
    ``base_container_name``, else its first). The first-class
    parameters (``completions`` ... ``suspend``) override the template's spec. Returns (XCom) the
    Job's name, namespace, uid and outcome; also pushes ``job_name``/``job_namespace``/``job_uid``
    right after creating it.

    :param job_template: the Job to start from (templated): a dict, YAML/JSON text, a
        ``.yaml``/``.yml``/``.json`` file path (the file is rendered by Jinja) or a ``V1Job``.
        Without one, the Job is built from ``image`` and the other parameters.
    :param image: the main container's image (templated); needed unless a Job or Pod template
        gives the container. The container parameters go to the main container:
        ``base_container_name``'s, else the template's first.
    :param cmds: the main container's ``command`` (templated), a list: a bare string is refused.
    :param arguments: the main container's ``args`` (templated), a list: a bare string is refused.
    :param env: the main container's environment (templated): a name-to-value dict, or a list of
        ``V1EnvVar`` objects or EnvVar dicts (for ``valueFrom``); merged over the template's by name.
    :param container_resources: the main container's ``V1ResourceRequirements`` or its dict
        (templated; quantities checked), merged per quantity over the template's.
    :param labels: labels added to the Job and its Pod template, beside the task-instance labels
        this provider sets (templated).
    :param annotations: annotations added to the Job and its Pod template (templated).
    :param job_name: a prefix for the Job's name (alias: ``name``, cncf.kubernetes' name): the
        deterministic per-task-instance suffix is added, so runs never share a Job and retries
        adopt theirs. ``random_name_suffix=False`` uses it as the exact name.
    :param random_name_suffix: add the suffix to ``job_name`` (default True). cncf.kubernetes'
        name; the suffix here is derived from dag, task, run and map index, not random.
    :param wait_until_job_complete: wait for the Job's outcome (default True). False creates (or
        adopts) the Job and returns ``{name, namespace, uid}`` at once; a ``JobSensor`` waits.
    :param reuse_succeeded: if this task instance's Job already succeeded, return its result
        even when the user cleared the task after it succeeded. Default: a clear runs it again.
        (A retry always keeps a succeeded Job whose outcome the failed try never reported.)
    :param reattach_on_restart: a retried or restarted task adopts the Job its earlier try
        created (default True, as cncf.kubernetes); False deletes that Job and creates a fresh one.
        cncf.kubernetes' ``durable`` is an alias.
    :param skip_on_exit_code: an exit code (or a list) that skips the task instead of failing it:
        the Job fails at once when the main container exits with one of them (a ``FailJob`` rule
        put first in the Job's ``podFailurePolicy``, with ``restartPolicy: Never``), and the task
        raises ``AirflowSkipException``.
    :param ignore_disruptions: a Pod stopped by a disruption (a drained or lost node, preemption,
        an eviction: condition ``DisruptionTarget``) is replaced without counting against
        ``backoff_limit``: an ``Ignore`` rule first in ``podFailurePolicy`` (restartPolicy Never).
    :param pod_security: ``"restricted"``: set what Pod Security Admission's restricted profile
        needs on every container (non-root uid 65532 unless given, RuntimeDefault seccomp, no
        privilege escalation, capabilities dropped); what contradicts it is refused at parse time.

    The Job spec parameters lie over the template's spec. Each is templated: a Jinja string (or
    an XCom) is accepted when the DAG is parsed and checked once rendered, before the task creates
    anything. Rendered text is converted (digits to an integer, ``true``/``false`` for
    ``suspend``, YAML/JSON text to a dict for the policies); anything else is refused, naming the
    parameter. A literal value is checked when the DAG is parsed.

    :param completions: Pods that must succeed (templated).
    :param parallelism: Pods that run at once (templated).
    :param completion_mode: ``NonIndexed`` or ``Indexed`` (templated).
    :param backoff_limit: failed Pods before the Job fails (templated).
    :param backoff_limit_per_index: an Indexed Job's failed Pods per index (templated).
    :param max_failed_indexes: failed indexes before an Indexed Job fails (templated).
    :param pod_failure_policy: a ``V1PodFailurePolicy`` or its dict (templated).
    :param success_policy: a ``V1SuccessPolicy`` or its dict, Indexed Jobs (templated).
    :param pod_replacement_policy: ``Failed`` or ``TerminatingOrFailed`` (templated).
    :param active_deadline_seconds: the Job fails after this many seconds (templated).
    :param ttl_seconds_after_finished: the Job is deleted this long after it finished; set only
        once the task has read its outcome (templated).
    :param suspend: create the Job suspended (templated).

    Every other cncf.kubernetes ``KubernetesJobOperator`` parameter is answered by
    ``core/peertable.py`` (``docs/migration.rst``): an alias (``name`` -> ``job_name``,
    ``env_vars`` -> ``env``, ``job_template_file`` -> ``job_template``,
    ``on_kill_propagation_policy`` -> ``propagation_policy``, ``durable`` ->
    ``reattach_on_restart``), a mapped value (``on_finish_action`` / ``is_delete_operator_pod`` ->
    ``delete_on_finish``, ``startup_timeout_seconds`` / ``schedule_timeout_seconds`` ->
    ``pending_timeout``, ``on_kill_action`` -> ``delete_on_kill``, ``log_events_on_failure`` /
    ``log_events_on_startup`` -> ``diagnostics``, ``init_container_logs`` -> ``container_logs``),
    a polling knob that has no effect because the waits watch (``job_poll_interval``,
    ``poll_interval``, ``logging_interval``, ...; the task log says so once), or a refusal at
    parse time naming what to use.

    :param name: alias of ``job_name`` (cncf.kubernetes' name).
    :param env_vars: alias of ``env`` (cncf.kubernetes' name).
    :param job_template_file: alias of ``job_template`` given as a file (cncf.kubernetes' name).
    :param on_kill_propagation_policy: alias of ``propagation_policy`` (cncf.kubernetes' name).
    :param job_poll_interval: accepted for cncf.kubernetes compatibility, no effect (the wait
        watches the Job); the task log says so.
    :param full_job_spec: a ``V1Job`` (or dict) laid over ``job_template`` as cncf.kubernetes does.
    :param base_container_name: the main container's name (default ``main``): the container
        parameters and the Pod parameters go to the template's container of that name, else to
        its first container.

    Pod parameters, with cncf.kubernetes' names and types (``V1...`` objects or API-form dicts;
    Jinja is rendered inside them). They lie over the Pod template, which lies over the Job
    template's Pod; each value they replace is logged (``core/podsettings.py``):

    :param pod_template_file: a Pod manifest file (or YAML text) for the Job's Pods.
    :param pod_template_dict: the same as a dict.
    :param full_pod_spec: a ``V1Pod`` laid over the Pod template.
    :param volumes: ``V1Volume`` list, added to the template's.
    :param volume_mounts: ``V1VolumeMount`` list for the main container, added to the template's.
    :param env_from: ``V1EnvFromSource`` list for the main container.
    :param configmaps: ConfigMap names whose keys become the main container's environment.
    :param secrets: cncf.kubernetes ``Secret`` objects: a Secret's key as an env var, all its keys,
        or a volume, on the main container.
    :param ports: ``V1ContainerPort`` list for the main container.
    :param pod_runtime_info_envs: ``V1EnvVar`` list (``valueFrom`` a field of the Pod).
    :param image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``.
    :param container_security_context: the main container's ``V1SecurityContext``.
    :param termination_message_policy: ``File`` or ``FallbackToLogsOnError``.
    :param node_selector: node labels the Pods must match.
    :param tolerations: ``V1Toleration`` list.
    :param affinity: ``V1Affinity``.
    :param service_account_name: the Pods' service account.
    :param automount_service_account_token: mount its token (True/False).
    :param image_pull_secrets: ``V1LocalObjectReference`` list, or names as ``"a,b"``.
    :param security_context: the Pods' ``V1PodSecurityContext``.
    :param init_containers: ``V1Container`` list run before the main container.
    :param priority_class_name: the Pods' PriorityClass.
    :param termination_grace_period: seconds between SIGTERM and SIGKILL when a Pod is stopped.
    :param runtime_class_name: the Pods' RuntimeClass.
    :param host_aliases: ``V1HostAlias`` list for /etc/hosts.
    :param hostnetwork: run the Pods in the node's network namespace.
    :param dnspolicy: the Pods' DNS policy.
    :param dns_config: ``V1PodDNSConfig``.
    :param hostname: the Pods' hostname (an Indexed Job sets its own).
    :param subdomain: the Pods' subdomain.
    :param schedulername: the scheduler that places the Pods.
    :param delete_on_finish: ``never`` (default), ``on_success`` or ``always``.
    :param wait_timeout: fail (and delete the Job if ``delete_on_finish="always"``) after this long.
    """

    template_fields: Sequence[str] = (
        "affinity",
        "annotations",
        "arguments",
        "cluster_context",
        "cmds",
        "config_file",
        "configmaps",
        "container_resources",
        "env",
        "env_from",
        "image",
        "image_pull_secrets",
        "init_containers",
        "job_name",
        "job_template",
        "labels",
        "namespace",
        "node_selector",
        "pod_template_dict",
        "pod_template_file",
        "priority_class_name",
        "service_account_name",
        "tolerations",
        "volume_mounts",
        "volumes",
        *SPEC_FIELDS,
    )
    template_ext: Sequence[str] = (".yaml", ".yml", ".json")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "job_template": "yaml",
        "env": "json",
        "pod_failure_policy": "json",
        "success_policy": "json",
    }
    ui_color = "#d7e8fc"

    def __init__(
        self,
        *,
        job_template: Mapping[str, Any] | str | Any | None = None,
        image: str | None = None,
        cmds: Sequence[str] | None = None,
        arguments: Sequence[str] | None = None,
        env: EnvParam | None = None,
        container_resources: ResourcesParam | None = None,
        job_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        # The spec parameters also take a Jinja string (or an XCom): template fields.
        completions: int | str | None = None,
        parallelism: int | str | None = None,
        completion_mode: str | None = None,
        backoff_limit: int | str | None = None,
        backoff_limit_per_index: int | str | None = None,
        max_failed_indexes: int | str | None = None,
        pod_failure_policy: Mapping[str, Any] | V1PodFailurePolicy | str | None = None,
        success_policy: Mapping[str, Any] | V1SuccessPolicy | str | None = None,
        pod_replacement_policy: str | None = None,
        active_deadline_seconds: int | str | None = None,
        ttl_seconds_after_finished: int | str | None = None,
        suspend: bool | str | None = None,
        reuse_succeeded: bool = False,
        random_name_suffix: bool = True,
        wait_until_job_complete: bool = True,
        reattach_on_restart: bool | None = None,
        skip_on_exit_code: int | Sequence[int] | None = None,
        ignore_disruptions: bool = False,
        pod_security: PodSecurity | None = None,
        full_job_spec: Any = None,
        base_container_name: str | None = None,
        volumes: list[Any] | None = None,
        volume_mounts: list[Any] | None = None,
        env_from: list[Any] | None = None,
        configmaps: list[str] | None = None,
        secrets: list[Any] | None = None,
        ports: list[Any] | None = None,
        pod_runtime_info_envs: list[Any] | None = None,
        image_pull_policy: str | None = None,
        container_security_context: Any = None,
        termination_message_policy: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: list[Any] | None = None,
        affinity: Any = None,
        service_account_name: str | None = None,
        automount_service_account_token: bool | None = None,
        image_pull_secrets: str | list[Any] | None = None,
        security_context: Any = None,
        init_containers: list[Any] | None = None,
        priority_class_name: str | None = None,
        termination_grace_period: int | None = None,
        runtime_class_name: str | None = None,
        host_aliases: list[Any] | None = None,
        hostnetwork: bool | None = None,
        dnspolicy: str | None = None,
        dns_config: Any = None,
        hostname: str | None = None,
        subdomain: str | None = None,
        schedulername: str | None = None,
        pod_template_file: str | None = None,
        pod_template_dict: Mapping[str, Any] | None = None,
        full_pod_spec: Any = None,
        **kwargs: Any,
    ) -> None:
        own: dict[str, Any] = {"job_name": job_name, "env": env, "job_template": job_template}
        own["reattach_on_restart"] = reattach_on_restart
        notes, skip_codes = self.take_peer_params(kwargs, own, skip_on_exit_code)
        job_name, env, job_template = own["job_name"], own["env"], own["job_template"]
        given = {
            **kwargs,
            "random_name_suffix": random_name_suffix,
            "wait_until_job_complete": wait_until_job_complete,
            "skip_on_exit_code": skip_on_exit_code,
            "reattach_on_restart": own["reattach_on_restart"],
        }
        self._refuse_unhonoured(given)
        for what, value in (("cmds", cmds), ("arguments", arguments)):
            if isinstance(value, str):
                raise InvalidJobTemplateError(
                    f"{what}={value!r} is a string: give a list, e.g. ['sh', '-c', {value!r}]"
                )
        super().__init__(**kwargs)
        self.peer_notes = notes
        self.skip_on_exit_code, self.ignore_disruptions = skip_codes, bool(ignore_disruptions)
        self.reattach_on_restart = own["reattach_on_restart"] is not False
        # The Pod settings stay attributes of their own: Jinja renders them (template_fields).
        for key, value in locals().items():
            if key in PodSettings.names():
                setattr(self, key, value)
        self.full_job_spec = full_job_spec
        self.base_container_name = base_container_name or "main"
        self.random_name_suffix = random_name_suffix
        self.wait_until_job_complete = wait_until_job_complete
        if (
            job_template is None
            and image is None
            and full_job_spec is None
            and not (pod_template_file or pod_template_dict or full_pod_spec)
        ):
            raise InvalidJobTemplateError(
                "BatchJobOperator needs an image, a job_template (job_template_file, full_job_spec) "
                "or a Pod template (pod_template_file, pod_template_dict, full_pod_spec)"
            )
        self.job_template = job_template
        self.image = image
        self.cmds = cmds
        self.arguments = arguments
        self.env = None if env is None else dict(env) if isinstance(env, Mapping) else list(env)
        self.container_resources = container_resources
        self.job_name = job_name
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.set_spec_fields(locals())  # attributes of their own: template fields
        self.reuse_succeeded = reuse_succeeded
        if reuse_succeeded and not self.reattach_on_restart:
            raise InvalidJobTemplateError(
                "reuse_succeeded=True keeps this task instance's succeeded Job, reattach_on_restart=False "
                "never uses an earlier try's Job: pass one of them"
            )
        self._validate_early()

    def execute(self, context: Context) -> Any:
        self.check_spec_fields()
        self.log_peer_notes()
        namespace = self.resolve_namespace()
        body = self.build(context, namespace)
        name = body["metadata"]["name"]
        self.server_dry_run(self.hook, namespace, body)  # before an earlier try's Job is replaced
        job = self.create_or_adopt(self.hook, namespace, body, context)
        uid = job["metadata"]["uid"]
        self.push(context, "job_name", name)
        self.push(context, "job_namespace", namespace)
        self.push(context, "job_uid", uid)
        if not self.wait_until_job_complete:
            self.log.info("not waiting for Job %s/%s (wait_until_job_complete=False)", namespace, name)
            return {"name": name, "namespace": namespace, "uid": uid}
        return self.wait(context, namespace, name, uid, job)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        try:  # the Pods' results are read before delete_on_finish or a TTL can remove them
            outcome = self.finish(event, context, cleanup=False)
        except JobFailedError as e:
            if e.outcome:
                failed = JobOutcome.from_dict(e.outcome)
                try:
                    self.skip_if_exit_code(failed)
                finally:
                    self.cleanup_after(failed, context)
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

"""What ``BatchJobOperator`` (and the patterns built on it) does with cncf.kubernetes' parameters.

The answers are ``core/peertable.py``'s table, applied by ``core/peerparams.py``; this mixin
applies them to an operator's keyword arguments, refuses what a pattern cannot honour
(``cannot_honour``) or what only a waiting task does beside ``wait_until_job_complete=False``,
and runs ``skip_on_exit_code`` and ``ignore_disruptions`` (``core/skipcodes.py``). Also the
server-side dry run, with its Pod Security check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kubernetes.client.rest import ApiException

from airflow_batchjob._compat import AirflowSkipException
from airflow_batchjob.core.kueue import KueueSettings, apply_queue
from airflow_batchjob.core.outcome import JobOutcome
from airflow_batchjob.core.peerparams import PeerParamError, exit_codes, take_peer_params, translate
from airflow_batchjob.core.skipcodes import add_disruption_rule, add_skip_rule, skip_exit_code
from airflow_batchjob.core.validation import validate_job
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.hooks.batchjob import _api_message as api_message
from airflow_batchjob.hooks.kueue import check_local_queue

# Targets of cncf.kubernetes parameters that are BatchJobOperator's own arguments; the others are
# BaseBatchJobOperator's, passed on in **kwargs.
_OWN_TARGETS = ("job_name", "env", "job_template", "reattach_on_restart")


def warning_text(header: str) -> str:
    """An HTTP ``Warning`` header's text: ``299 - "would violate PodSecurity \\"restricted..."``."""
    code, _, rest = header.partition(" - ")
    text = rest.strip() if code.strip().isdigit() else header
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _drain(resp: Any) -> None:
    """Read an unread response (``_preload_content=False``), so its connection goes back to the pool."""
    with contextlib.suppress(Exception):
        resp.read()
        resp.release_conn()


class PeerCompat:
    """cncf.kubernetes' parameters for ``BatchJobOperator``: translated, refused, or run."""

    skip_on_exit_code: tuple[int, ...] | None
    ignore_disruptions: bool
    base_container_name: str
    kueue: KueueSettings
    log: Any
    if TYPE_CHECKING:

        @property
        def hook(self) -> BatchJobHook: ...

    # Inherited parameters a pattern cannot honour: (name, the only value it takes, why and the fix).
    # Given another value, the constructor refuses it (nothing is accepted and then ignored).
    cannot_honour: ClassVar[tuple[tuple[str, Any, str], ...]] = ()
    # What only a waiting task does; with wait_until_job_complete=False it is refused.
    _WAIT_ONLY: ClassVar[tuple[tuple[str, Any], ...]] = (
        ("delete_on_finish", "never"),
        ("wait_timeout", None),
        ("pending_timeout", None),
        ("skip_on_exit_code", None),
        ("log_pod_spec_on_failure", False),
    )

    def server_dry_run(self, hook: BatchJobHook, namespace: str, body: dict[str, Any]) -> None:
        """Send the Job as a server-side dry run before anything of the task is created or
        replaced (ConfigMaps, Secrets, an earlier try's Job): what the apiserver, a quota or an
        admission webhook refuses fails here, with its message, before any side effect. A Job
        of that name that exists already (409) is the adoption's business. A Kueue LocalQueue
        that does not exist fails here too, naming it."""
        if self.kueue.local_queue is not None:
            check_local_queue(hook.api, namespace, self.kueue.local_queue)
        try:  # as hook.create_job(dry_run=True), keeping the response's warnings
            resp = hook.batch.create_namespaced_job(
                namespace, body, field_validation="Strict", dry_run="All", _preload_content=False
            )
        except ApiException as e:
            if e.status == 409:
                return
            if e.status in (400, 403, 422):
                raise InvalidJobTemplateError(
                    f"the apiserver refuses Job {namespace}/{body['metadata']['name']} (dry run, "
                    f"nothing was created): {api_message(e)}"
                ) from e
            raise
        headers = getattr(resp, "headers", None)
        warnings = [w for w in (headers.getlist("Warning") if headers else []) if "PodSecurity" in w]
        _drain(resp)
        if warnings:
            self._pod_dry_run(hook, namespace, body, warning_text(warnings[0]))

    def _pod_dry_run(self, hook: BatchJobHook, namespace: str, body: dict[str, Any], warning: str) -> None:
        """Pod Security Admission enforces its profile on Pods only: it admits the Job with a
        warning, and then refuses each Pod the Job controller creates (the Job never starts). So,
        warned, send one Pod of the Job's template as a dry run: a PodSecurity refusal fails the
        task now, nothing created. Any other refusal (a quota, no right to create Pods) is not
        this check's business; the warning is logged."""
        template = body["spec"]["template"]
        meta = {**(template.get("metadata") or {}), "generateName": f"{body['metadata']['name']}-"}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}
        try:
            _drain(hook.core.create_namespaced_pod(namespace, pod, dry_run="All", _preload_content=False))
        except ApiException as e:
            message = api_message(e)
            if "violates PodSecurity" in message:
                raise InvalidJobTemplateError(
                    f"namespace {namespace} enforces Pod Security and refuses the Pods of Job "
                    f"{body['metadata']['name']} (dry run, nothing was created): {message}. Pass "
                    "pod_security='restricted' (it sets what the profile needs), or fix the fields named"
                ) from e
            self.log.warning("the apiserver warns: %s (could not check a Pod: %s)", warning, message)
            return
        self.log.warning("the apiserver warns (its Pods are admitted now): %s", warning)

    @staticmethod
    def take_peer_params(
        kwargs: dict[str, Any], own: dict[str, Any], skip_on_exit_code: Any
    ) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
        """Pop the peer-only parameters out of ``kwargs`` and set what they mean, in ``own`` (the
        operator's own arguments) or ``kwargs`` (the base's). Returns the notes for the task log
        and the checked ``skip_on_exit_code``."""
        try:
            peer = translate(take_peer_params(kwargs), {**kwargs, **own})
            codes = exit_codes(skip_on_exit_code)
        except PeerParamError as e:
            raise InvalidJobTemplateError(f"task {kwargs.get('task_id')}: {e}") from e
        for key, value in peer.values.items():
            if key in _OWN_TARGETS:
                own[key] = value
            else:
                kwargs[key] = value
        return peer.notes, codes

    def _refuse_unhonoured(self, given: Mapping[str, Any]) -> None:
        """Refuse, at parse time, what this pattern cannot honour and what only a wait does."""
        task = f"{type(self).__name__} {given.get('task_id')!r}"
        for name, only, why in self.cannot_honour:
            if given.get(name, only) != only:
                raise InvalidJobTemplateError(f"{task}: {name}={given[name]!r}: {why}")
        if given.get("wait_until_job_complete") is False:
            for name, default in self._WAIT_ONLY:
                if given.get(name, default) != default:
                    raise InvalidJobTemplateError(
                        f"{task}: {name}={given[name]!r} acts once the task has the Job's outcome, and "
                        "wait_until_job_complete=False returns at once: drop it, or wait (a JobSensor "
                        "downstream waits; ttl_seconds_after_finished or a DeleteJobOperator clean up)"
                    )

    def _add_skip_rule(self, body: dict[str, Any]) -> None:
        """``skip_on_exit_code``: those exit codes end the Job at once; ``ignore_disruptions``: a
        disrupted Pod is replaced, not counted; that rule first (``core/skipcodes.py``). Every
        Job built passes here: it also gets its Kueue queue labels and ``suspend`` (core/kueue.py)."""
        apply_queue(body, self.kueue)
        if self.skip_on_exit_code:
            add_skip_rule(body, self.skip_on_exit_code, self.base_container_name)
        if self.ignore_disruptions:
            add_disruption_rule(body)
        if self.skip_on_exit_code or self.ignore_disruptions:
            validate_job(body)

    def skip_if_exit_code(self, outcome: JobOutcome) -> None:
        """Raise AirflowSkipException when the failed Job's last failed Pod exited with one of
        ``skip_on_exit_code`` (as cncf.kubernetes skips the task)."""
        if not self.skip_on_exit_code or not outcome.uid:
            return
        pods = self.hook.list_pods(outcome.namespace, f"batch.kubernetes.io/controller-uid={outcome.uid}")
        code = skip_exit_code(pods, self.skip_on_exit_code, self.base_container_name)
        if code is not None:
            raise AirflowSkipException(
                f"Job {outcome.namespace}/{outcome.name}: the main container exited with {code} "
                f"(skip_on_exit_code={list(self.skip_on_exit_code)}): skipping the task"
            )

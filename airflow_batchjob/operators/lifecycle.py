"""Job lifecycle tasks: suspend, resume, patch and delete Jobs, by name or label selector.

The counterparts of cncf.kubernetes' ``KubernetesPatchJobOperator`` and
``KubernetesDeleteJobOperator``, with their parameter names. Each is idempotent, so a retry is
safe: suspending a suspended Job, resuming a running one or deleting a Job that is already gone
does nothing and says so. A selector acts on every Job it matches (none is not an error).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator

from airflow_batchjob.core.outcome import JobState, outcome_from_job
from airflow_batchjob.core.peerparams import PEER_PARAMS, PeerParamError, one_of
from airflow_batchjob.core.wait import WaitFor
from airflow_batchjob.exceptions import BatchJobError, InvalidJobTemplateError
from airflow_batchjob.hooks.batchjob import BatchJobHook, ClusterConnection
from airflow_batchjob.links import WatchedJobsView
from airflow_batchjob.operators.base import run_wait
from airflow_batchjob.triggers.job import wait_for_job

if TYPE_CHECKING:
    from airflow.sdk import Context

DeleteOn = Literal["Complete", "Failed"]


class _JobsOperator(WatchedJobsView, ClusterConnection, BaseOperator):
    """Acts on the Jobs named, or matched by a label selector, in one namespace.

    :param job_name: the Job (alias ``name``, cncf.kubernetes' name).
    :param name: alias of ``job_name`` (cncf.kubernetes' name); give one of them, not both.
    :param label_selector: or every Job these labels select (e.g. ``jobgroup=nightly``).
    :param namespace: default: the connection's, else ``default``.
    :param kubernetes_conn_id: the cncf.kubernetes connection.
    :param config_file: a kubeconfig file instead of the connection's (cncf.kubernetes' name).
    :param in_cluster: use the Pod's service account (True) or not, over the connection's setting.
    :param cluster_context: the kubeconfig context to use.
    """

    template_fields: Sequence[str] = ("job_name", "label_selector", "namespace")

    def __init__(
        self,
        *,
        job_name: str | None = None,
        name: str | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        config_file: str | None = None,
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config_file = config_file
        self.in_cluster = in_cluster
        self.cluster_context = cluster_context
        try:
            self.job_name = one_of("job_name", job_name, "name", name)
        except PeerParamError as e:
            raise InvalidJobTemplateError(str(e)) from e
        self.label_selector = label_selector
        if (self.job_name is None) == (label_selector is None):
            raise InvalidJobTemplateError("pass exactly one of job_name (or name) and label_selector")
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id

    @property
    def hook(self) -> BatchJobHook:
        return BatchJobHook(self.conn())

    def targets(self, hook: BatchJobHook, namespace: str) -> list[dict[str, Any]]:
        if self.job_name is not None:
            job = hook.get_job(namespace, self.job_name)
            return [job] if job is not None else []
        return hook.list_jobs(namespace, str(self.label_selector))

    def resolve(self) -> tuple[BatchJobHook, str, list[dict[str, Any]]]:
        hook = self.hook
        namespace = self.namespace or hook.default_namespace()
        jobs = self.targets(hook, namespace)
        if not jobs:
            what = self.job_name or f"Jobs {self.label_selector!r}"
            self.log.info("no %s in %s: nothing to do", what, namespace)
        return hook, namespace, jobs


class PatchJobOperator(_JobsOperator):
    """Merge-patch Jobs (``body``: a dict, as cncf.kubernetes' ``KubernetesPatchJobOperator``).

    Takes the parameters of the lifecycle operators (``job_name``/``name`` or ``label_selector``,
    ``namespace``, ``kubernetes_conn_id``) plus:

    :param body: the merge patch, e.g. ``{"spec": {"parallelism": 5}}``.

    Returns the names patched.
    """

    template_fields: Sequence[str] = (*_JobsOperator.template_fields, "body")

    def __init__(self, *, body: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = body

    def execute(self, context: Context) -> list[str]:
        hook, namespace, jobs = self.resolve()
        names = [j["metadata"]["name"] for j in jobs]
        for name in names:
            hook.patch_job(namespace, name, dict(self.body))
            self.log.info("patched Job %s/%s", namespace, name)
        return names


class SuspendJobOperator(_JobsOperator):
    """Suspend Jobs (``spec.suspend: true``): the Job controller stops their Pods; a finished Job
    is left alone. Returns the names suspended now."""

    suspend = True

    def execute(self, context: Context) -> list[str]:
        hook, namespace, jobs = self.resolve()
        changed = []
        for job in jobs:
            name = job["metadata"]["name"]
            if outcome_from_job(job).done:
                self.log.info("Job %s/%s has finished: nothing to %s", namespace, name, self.verb)
                continue
            if bool((job.get("spec") or {}).get("suspend")) == self.suspend:
                self.log.info("Job %s/%s is already %sed", namespace, name, self.verb)
                continue
            hook.patch_job(namespace, name, {"spec": {"suspend": self.suspend}})
            self.log.info("%sed Job %s/%s", self.verb, namespace, name)
            changed.append(name)
        return changed

    @property
    def verb(self) -> str:
        return "suspend" if self.suspend else "resum"


class ResumeJobOperator(SuspendJobOperator):
    """Resume suspended Jobs (``spec.suspend: false``). Returns the names resumed now."""

    suspend = False


class DeleteJobOperator(_JobsOperator):
    """Delete Jobs and their Pods (as cncf.kubernetes' ``KubernetesDeleteJobOperator``).

    Takes the parameters of the lifecycle operators plus:

    :param delete_on_status: ``None`` deletes whatever the outcome; ``"Complete"`` only succeeded
        Jobs, ``"Failed"`` only failed ones.
    :param wait_for_completion: first wait (watching, not polling) for each Job's outcome, then
        apply ``delete_on_status``.
    :param propagation_policy: ``Background`` (default), ``Foreground`` or ``Orphan``.
    :param wait_deleted: return only once the Jobs are gone (default True), so a task after it can
        create a Job of the same name.
    :param timeout: seconds for either wait (default 600).
    :param poll_interval: accepted for cncf.kubernetes compatibility, no effect: both waits watch
        (the task log says so).

    Returns the names deleted.
    """

    def __init__(
        self,
        *,
        delete_on_status: DeleteOn | None = None,
        wait_for_completion: bool = False,
        propagation_policy: str = "Background",
        wait_deleted: bool = True,
        timeout: float = 600.0,
        poll_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if delete_on_status not in (None, "Complete", "Failed"):
            raise InvalidJobTemplateError(
                f"delete_on_status={delete_on_status!r}: use None, 'Complete' or 'Failed'"
            )
        self.delete_on_status = delete_on_status
        self.wait_for_completion = wait_for_completion
        self.propagation_policy = propagation_policy
        self.wait_deleted = wait_deleted
        self.timeout = timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> list[str]:
        if self.poll_interval is not None:
            self.log.info(
                "cncf.kubernetes parameter poll_interval=%r has no effect: %s",
                self.poll_interval,
                PEER_PARAMS["poll_interval"].doc.removeprefix("accepted, no effect: "),
            )
        hook, namespace, jobs = self.resolve()
        deleted = []
        for job in jobs:
            name, uid = job["metadata"]["name"], job["metadata"]["uid"]
            if self.wait_for_completion and not outcome_from_job(job).done:
                event = run_wait(
                    wait_for_job(
                        namespace=namespace,
                        job_name=name,
                        job_uid=uid,
                        wait=WaitFor(),
                        kubernetes_conn_id=self.conn(),
                        deadline=time.time() + self.timeout,
                        progress=self.log.info,
                    )
                )
                if event.get("status") == "deleted":
                    self.log.info("Job %s/%s was deleted meanwhile", namespace, name)
                    continue
                if not event.get("job"):
                    raise BatchJobError(f"waiting for Job {namespace}/{name}: {event.get('message')}")
                state = event["job"]["state"]
            else:
                state = outcome_from_job(job).state.value
            if self.delete_on_status is not None:
                wanted = (
                    JobState.SUCCEEDED.value if self.delete_on_status == "Complete" else JobState.FAILED.value
                )
                if state != wanted:
                    self.log.info(
                        "Job %s/%s is %s, not %s: kept (delete_on_status)",
                        namespace,
                        name,
                        state,
                        self.delete_on_status,
                    )
                    continue
            if hook.delete_job(namespace, name, self.propagation_policy, uid=uid):
                self.log.info("deleted Job %s/%s", namespace, name)
            else:
                self.log.info("Job %s/%s was already gone", namespace, name)
            if self.wait_deleted:
                hook.wait_deleted(namespace, name, uid, timeout=self.timeout)
            deleted.append(name)
        return deleted

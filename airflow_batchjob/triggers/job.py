"""JobTrigger: waits on one Job through the shared namespace watch, deferrable or in the worker.

``wait_for_job`` is the one waiting engine: the trigger runs it in the triggerer, and operators
with ``deferrable=False`` run the same coroutine in the worker. It returns as soon as the
decisive condition is written (``SuccessCriteriaMet`` / ``FailureTarget`` count: there is no
waiting for Pods to finish terminating), and never polls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from airflow_batchjob.core.diagnose import CONTROLLER_UID
from airflow_batchjob.core.wait import Verdict, WaitFor, check
from airflow_batchjob.core.watchscope import Scope
from airflow_batchjob.exceptions import KubernetesCallError
from airflow_batchjob.hooks.asyncjobs import current_job_uids, delete_job
from airflow_batchjob.hooks.batchjob import async_api_client
from airflow_batchjob.hooks.watch import ClientFactory
from airflow_batchjob.triggers.base import ProgressLog, WaitTrigger
from airflow_batchjob.triggers.diagnostics import watched
from airflow_batchjob.triggers.kueue import follower
from airflow_batchjob.triggers.podlogs import LogSettings

log = logging.getLogger(__name__)

JOB_NAME = "batch.kubernetes.io/job-name"  # the Job controller's label on its Pods

# Event statuses: "met" (goal reached; for the default goal the Job may have succeeded or failed,
# see the outcome's state), "failed" (a fail_on condition, or the goal can no longer happen),
# "stuck" (a Pod could not be scheduled or started within pending_timeout), "deleted",
# "timeout", "error".


async def wait_for_job(
    *,
    namespace: str,
    job_name: str | None = None,
    label_selector: str | None = None,
    job_uid: str | None = None,
    wait: WaitFor | None = None,
    kubernetes_conn_id: str = "kubernetes_default",
    deadline: float | None = None,
    progress: Callable[[str], None] | None = None,
    progress_interval: float = 10.0,
    diagnostics: bool = False,
    diagnose_interval: float = 30.0,
    pending_timeout: float | None = None,
    logs: dict[str, Any] | None = None,
    kueue: dict[str, Any] | None = None,
    seen_diagnostics: dict[str, Any] | None = None,
    client_factory: ClientFactory = async_api_client,
) -> dict[str, Any]:
    """Wait on one Job (by name, or by a label selector matching exactly one) and return an event dict.

    With ``diagnostics`` (operators turn it on), a Job whose Pods do not all run is explained in
    the progress log (see ``triggers/diagnostics.py``), and the event carries a ``diagnostics``
    summary; ``pending_timeout`` ends the wait with status "stuck" when a Pod cannot be scheduled
    or started for that long. With ``kueue`` (``KueueSettings.to_dict()``), the Job's Workload is
    followed too (``triggers/kueue.py``): queued, admitted, evicted in the log, time queued and
    evictions in the summary, and ``queue_timeout`` ends the wait with status "stuck".
    """
    wait = wait or WaitFor()
    if bool(job_name) == bool(label_selector):
        raise ValueError("pass exactly one of job_name and label_selector")
    # What is listed and watched: this Job (by name or selector) and, for logs, its Pods (the Job
    # controller labels them with the Job's name and uid). A bad selector is refused here.
    if job_name:
        scope = Scope(name=job_name)
        of_uid = f",{CONTROLLER_UID}={job_uid}" if job_uid else ""
        pod_scope = Scope(selector=f"{JOB_NAME}={job_name}{of_uid}")
    else:
        scope = pod_scope = Scope(selector=label_selector or "")

    what = f"{namespace}/{job_name}" if job_name else f"Job with labels {label_selector!r} in {namespace}"
    say = ProgressLog(progress, progress_interval)
    seen_uid: str | None = None
    async with (
        watched(
            kubernetes_conn_id,
            namespace,
            scope,
            client_factory,
            progress=progress,
            interval=diagnose_interval,
            pending_timeout=pending_timeout,
            enabled=diagnostics,
            keep_deleted=True,
            logs=LogSettings.from_dict(logs),
            pod_scope=pod_scope,
            seen=seen_diagnostics,
        ) as (sub, diag),
        contextlib.AsyncExitStack() as stack,
    ):
        kq = follower(
            kueue, conn_id=kubernetes_conn_id, namespace=namespace, factory=client_factory,
            queue=diag.queue, progress=progress,
        )  # fmt: skip
        if kq is not None:
            await stack.enter_async_context(kq)

        def event(status: str, message: str, job: dict[str, Any] | None) -> dict[str, Any]:
            stamped = diag.stamp({"status": status, "message": message, "job": job})
            return kq.stamp(stamped) if kq is not None else stamped

        def decided_before_deletion(uid: str | None) -> dict[str, Any] | None:
            """The event for a Job deleted after its outcome was decided (e.g. ``ttlSecondsAfterFinished``
            0: the watch delivers its last state and its deletion together), judged on that state."""
            gone = [j for j in sub.deleted.values() if uid is None or j["metadata"]["uid"] == uid]
            if len(gone) != 1:  # none, or (by a selector) several: no one Job to judge
                return None
            verdict, outcome, why = check(gone[0], wait)
            if verdict is Verdict.WAITING:
                return None
            say(f"Job {outcome.namespace}/{outcome.name}", outcome.summary(), final=True)
            return event(verdict.value, f"{why} (the Job was deleted since)", outcome.to_dict())

        while True:
            until = kq.until(deadline) if kq is not None else deadline  # or queue_timeout's end
            if not await diag.next_update(until) and until == deadline:
                return event("timeout", f"timed out waiting for {wait.describe()} of {what}", None)
            if sub.error:
                return event("error", f"waiting on {what}: {sub.error}", None)
            if not sub.synced:
                continue
            jobs = list(sub.jobs.values())
            if len(jobs) > 1:
                names = ", ".join(sorted(j["metadata"]["name"] for j in jobs))
                return event(
                    "error",
                    f"label selector {label_selector!r} matches {len(jobs)} Jobs ({names}): "
                    "make it match exactly one",
                    None,
                )
            job = jobs[0] if jobs else None
            uid = job["metadata"]["uid"] if job else None
            if seen_uid and uid != seen_uid:  # the watch showed our Job, then it went: in order, so real
                return decided_before_deletion(seen_uid) or event(
                    "deleted", f"Job {what} (uid {seen_uid}) was deleted or replaced while waiting", None
                )
            if job_uid and uid != job_uid:
                if (decided := decided_before_deletion(job_uid)) is not None:
                    return decided
                # The shared watch may have listed before our Job was created (or before the Job it
                # replaced was deleted): ask the apiserver before calling it gone.
                if job_uid not in await current_job_uids(sub.api, namespace, job_name, label_selector):
                    return event(
                        "deleted", f"Job {what} (uid {job_uid}) was deleted or replaced while waiting", None
                    )
                continue  # it exists: the watch will deliver it
            if job is None:
                # Not created yet (a sensor may wait for a Job created later), or created, decided
                # and deleted between two looks.
                if (decided := decided_before_deletion(None)) is not None:
                    return decided
                continue
            seen_uid = uid
            verdict, outcome, why = check(job, wait)
            say(
                f"Job {outcome.namespace}/{outcome.name}",
                outcome.summary(),
                final=verdict is not Verdict.WAITING,
            )
            if verdict is not Verdict.WAITING:
                return event(verdict.value, why, outcome.to_dict())
            unadmitted = await kq.observe(job) if kq is not None else None
            if unadmitted is not None:
                return event("stuck", unadmitted, outcome.to_dict())
            stuck = await diag.observe([job])
            if stuck is not None:
                return event("stuck", diag.stuck_message(stuck), outcome.to_dict())


class JobTrigger(WaitTrigger):
    """Fires once when a Job meets a goal (by default: its outcome is decided), fails, or vanishes.

    Serialises identity only (namespace, name or selector, uid, goal, deadline): never the spec.
    With ``delete_on_kill``, a user killing the deferred task (mark failed / success, clear)
    deletes the Job and its Pods (Airflow 3.3+ ``on_kill``); a triggerer restart never does.
    Never fires sooner than ``settle_seconds`` (default: ``[batchjob] defer_settle_seconds``,
    15) after it starts running (``triggers/base.py``:
    Airflow's defer race).

    :param namespace: the Job's namespace.
    :param job_name: the Job to wait on; give it or ``label_selector``.
    :param label_selector: or labels that select the Job: matching several Jobs ends the wait with
        status ``error``; none yet is waited for.
    :param job_uid: the uid of the Job waited on: if it is deleted or replaced by a Job of the same
        name, the wait ends with status ``deleted``; ``on_kill`` deletes only this uid.
    :param wait_for: the goal as ``WaitFor.to_dict()`` gives it (``condition``,
        ``succeeded_at_least``, ``indexes``, ``fail_on``); default: the Job's outcome is decided.
    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``), or
        the task's ``conn_ref`` string with its ``in_cluster`` / ``config_file`` /
        ``cluster_context`` overrides.
    :param deadline: a ``time.time()`` instant after which the trigger fires with status
        ``timeout`` (default: none).
    :param delete_on_kill: a user killing the deferred task deletes the Job named by ``job_name``
        (default False; the operators pass theirs).
    :param propagation_policy: how that delete reaches the Pods (default ``Background``).
    :param progress_interval: seconds between the progress lines logged while the Job changes
        (default 10); the first and the last are logged at once.
    :param diagnostics: explain in the log why the Job's Pods do not all run, and add a
        ``diagnostics`` summary to the event (default False; the operators turn it on).
    :param diagnose_interval: seconds between two explanations of an unchanged situation (default 30).
    :param pending_timeout: seconds a Pod may stay unschedulable or unable to start its containers
        before the trigger fires with status ``stuck`` (default: no limit).
    :param settle_seconds: the hold described above, in seconds (default:
        ``[batchjob] defer_settle_seconds``); 0 turns it off.
    :param logs: what to show of the Pods' logs, as the operators' ``log_settings()`` dict
        (``triggers/podlogs.py``); default: no logs.
    :param kueue: the Job's Kueue settings (``core/kueue.KueueSettings.to_dict()``): follow its
        Workload (default: none).
    :param seen_diagnostics: the diagnostics summary of the wait in the worker that deferred
        (``max_observed_parallelism``, ``requested_parallelism``, ``problems``): the event's
        summary adds to it, so a Job over before the trigger first looks is not reported as
        having run no Pods at once.
    :param completion: how to end the task here when the wait decides a success
        (``triggers/completion.completion_spec``); default: the task always resumes on a worker.
    """

    def __init__(
        self,
        *,
        namespace: str,
        job_name: str | None = None,
        label_selector: str | None = None,
        job_uid: str | None = None,
        wait_for: dict[str, Any] | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deadline: float | None = None,
        delete_on_kill: bool = False,
        propagation_policy: str = "Background",
        progress_interval: float = 10.0,
        diagnostics: bool = False,
        diagnose_interval: float = 30.0,
        pending_timeout: float | None = None,
        settle_seconds: float | None = None,
        logs: dict[str, Any] | None = None,
        kueue: dict[str, Any] | None = None,
        completion: dict[str, Any] | None = None,
        seen_diagnostics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.completion = completion
        self.seen_diagnostics = seen_diagnostics
        self.kueue = kueue
        self.settle_seconds = settle_seconds
        self.logs = logs
        self.diagnose_interval = diagnose_interval
        self.diagnostics = diagnostics
        self.pending_timeout = pending_timeout
        self.namespace = namespace
        self.job_name = job_name
        self.label_selector = label_selector
        self.job_uid = job_uid
        self.wait_for = wait_for
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deadline = deadline
        self.delete_on_kill = delete_on_kill
        self.propagation_policy = propagation_policy
        self.progress_interval = progress_interval

    async def _wait(self) -> dict[str, Any]:
        return await wait_for_job(
            namespace=self.namespace,
            job_name=self.job_name,
            label_selector=self.label_selector,
            job_uid=self.job_uid,
            wait=WaitFor.from_dict(self.wait_for),
            kueue=self.kueue,
            seen_diagnostics=self.seen_diagnostics,
            **self.wait_settings(),
        )

    def _error_event(self, error: Exception) -> dict[str, Any]:
        self.log.exception(
            "waiting on Job %s/%s failed", self.namespace, self.job_name or self.label_selector
        )
        return {"status": "error", "message": f"{type(error).__name__}: {error}", "job": None}

    def _identity(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "job_name": self.job_name, "job_uid": self.job_uid}

    async def _kill(self) -> None:
        """A user killed the task: delete the Job (bounded), so it does not run on unobserved."""
        if not self.delete_on_kill or not self.job_name or await self.moved_not_killed():
            return
        with contextlib.suppress(KubernetesCallError):
            await delete_job(
                self.kubernetes_conn_id,
                self.namespace,
                self.job_name,
                uid=self.job_uid,
                propagation_policy=self.propagation_policy,
            )
        self.log.info("deleted Job %s/%s because the task was killed", self.namespace, self.job_name)

"""What every pattern's operator shares: connection, namespace, waiting (in the worker for
``defer_after`` seconds, then deferred), reading the outcome, cleanup, failure logs, ``on_kill``.

One waiting engine (``wait_for_job`` / ``wait_for_group``) runs in the worker or in the triggerer;
``run_wait`` runs it here with Airflow's SIGTERM handler on its event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from kubernetes.client.rest import ApiException

from airflow_batchjob.core.diagnose import pod_summary
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.reported import ANNOTATION_REPORTED, reported_mark
from airflow_batchjob.core.spec import (
    held_ttl,
)
from airflow_batchjob.core.wait import Verdict, WaitFor, check
from airflow_batchjob.exceptions import (
    BatchJobError,
    InvalidJobTemplateError,
    JobDeletedError,
    JobFailedError,
    JobStuckError,
    JobTimeoutError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.triggers.job import JobTrigger, wait_for_job

if TYPE_CHECKING:
    from airflow.sdk import Context

DeletePolicy = Literal["never", "on_success", "always"]
API_CONCURRENCY = 16  # concurrent API calls when an operator creates or patches many Jobs
DEFER_AFTER = 5.0  # seconds a deferrable operator watches in the worker before it defers
MAX_SUMMARY_PODS = 2000  # above this, the diagnostics summary does not list the Pods
ON_KILL_SECONDS = 30
_DELETE_POLICIES = ("never", "on_success", "always")
_PROPAGATION = ("Background", "Foreground", "Orphan")


def _seconds(value: dt.timedelta | float | None) -> float | None:
    return value.total_seconds() if isinstance(value, dt.timedelta) else value


def run_wait(wait: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a wait in the worker with SIGTERM handled by the wait's own event loop.

    Python runs signal handlers on the main thread only, when it next runs bytecode. A SIGTERM
    the kernel hands to another thread of the task (Airflow's supervisor comms, thread pools)
    does not interrupt the main thread's ``select()``, so a wait with no timer due slept through
    Airflow's SIGTERM handler, and never called ``on_kill``, until its Job changed (seen in CI).
    Registered with the loop, the same handler wakes it through its wakeup fd and runs at once;
    then the wait ends (``on_kill`` deleted what it waited on) with the handler's exception, or
    ``BatchJobError``, instead of waiting for the watch to report the deletion.
    """

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        on_main = threading.current_thread() is threading.main_thread()  # where signals can be set
        handler = previous if callable(previous) and on_main else None
        waiting = asyncio.current_task()
        failure: list[BaseException] = []

        def killed() -> None:
            # Airflow's handler calls on_kill (which deletes the Jobs) and may return without
            # raising: the wait then has nothing left to wait for, so end it here.
            try:
                handler(int(signal.SIGTERM), None)  # type: ignore[misc]
            except BaseException as e:
                failure.append(e)
            finally:
                if waiting is not None:
                    waiting.cancel()
                    failure.append(BatchJobError("the task was killed (SIGTERM) while it waited"))

        if handler is not None:
            loop.add_signal_handler(signal.SIGTERM, killed)
        try:
            return await wait
        except asyncio.CancelledError:
            if failure:
                raise failure[0] from None
            raise
        finally:
            if handler is not None:
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, handler)

    return asyncio.run(main())


def decided_event(job: dict[str, Any]) -> dict[str, Any] | None:
    """The event a wait would report for a Job whose outcome is already decided; None if it is not."""
    verdict, outcome, why = check(job, WaitFor())
    if verdict is Verdict.WAITING:
        return None
    return {"status": verdict.value, "message": why, "job": outcome.to_dict()}


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` where the deployment set it, else True (this provider's
    default: a waiting task costs no worker slot).

    "Set" means the environment (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``, ``_CMD``, ``_SECRET``)
    or a value other than Airflow's shipped default (False): ``airflow.cfg`` files are generated
    with every default written out, so a False there cannot be told from no setting at all.
    Without a running triggerer, deferred tasks stay ``deferred``: pass ``deferrable=False``.
    """
    from airflow.configuration import conf

    value = conf.getboolean("operators", "default_deferrable", fallback=True)
    names = [f"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE{s}" for s in ("", "_CMD", "_SECRET")]
    return value if any(n in os.environ for n in names) else True


class BaseBatchJobOperator(BaseOperator):
    """What every pattern's operator shares: connection, namespace, waiting, cleanup, failure logs.

    :param deferrable: wait in the triggerer (after ``defer_after`` seconds in the worker). Default:
        ``[operators] default_deferrable`` where the deployment sets it, else True.
    :param diagnostics: while waiting, explain in the task log why fewer Pods run than requested
        (quota, backoff, unschedulable, image pull, config errors), on each change and at most
        every ``diagnose_interval`` seconds; and push a ``diagnostics`` XCom summary at the end.
    :param pending_timeout: fail when a Pod stays unschedulable or cannot start its containers
        this long (off by default). The Job is then handled like a timeout: deleted only with
        ``delete_on_finish="always"``.
    :param get_logs: show the Pods' output in the task log while the Job runs (default True), each
        line prefixed with its Pod and its item or index, replacement Pods included; in the
        worker and, deferred, from the trigger (``triggers/podlogs.py``).
    :param container_logs: whose logs: the main container (default), ``True`` for every container
        (init containers too), or a container name or list of names (cncf.kubernetes' name).
    :param max_log_streams: Pods of this task followed at once (default 5: more interleaved
        streams are unreadable); the others show their last ``log_tail_lines`` lines at the end.
        A process (a triggerer) follows at most 50 streams over all its tasks.
    :param max_log_lines: lines shown per container (default 1000); the rest are counted.
    :param defer_after: with ``deferrable=True``, watch the Job in the worker this long (seconds or
        a ``timedelta``; default 5) and defer only if its outcome is still open then. A short Job
        finishes without a trigger round trip, and a Job already decided (adopted) never defers.
        0 defers at once.
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool | None = None,
        delete_on_finish: DeletePolicy = "never",
        propagation_policy: str = "Background",
        wait_timeout: dt.timedelta | float | None = None,
        progress_interval: float = 10.0,
        log_tail_lines: int = 50,
        max_failed_pod_logs: int = 5,
        diagnostics: bool = True,
        diagnose_interval: float = 30.0,
        pending_timeout: dt.timedelta | float | None = None,
        defer_after: dt.timedelta | float = DEFER_AFTER,
        get_logs: bool = True,
        container_logs: bool | str | list[str] | None = None,
        max_log_streams: int = 5,
        max_log_lines: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_log_streams < 1 or max_log_lines < 0:
            raise InvalidJobTemplateError("max_log_streams must be >= 1 and max_log_lines >= 0")
        self.get_logs = get_logs
        self.container_logs = container_logs
        self.max_log_streams = max_log_streams
        self.max_log_lines = max_log_lines
        self._log_positions: dict[str, list[Any]] = {}
        pending = _seconds(pending_timeout)
        self.defer_after = float(_seconds(defer_after) or 0.0)
        if self.defer_after < 0:
            raise InvalidJobTemplateError(f"defer_after={defer_after!r}: use 0 or a positive duration")
        if pending is not None and pending <= 0:
            raise InvalidJobTemplateError(f"pending_timeout={pending_timeout!r}: use a positive duration")
        if diagnose_interval <= 0:
            raise InvalidJobTemplateError(f"diagnose_interval={diagnose_interval!r}: use a positive number")
        self.diagnostics = diagnostics
        self.diagnose_interval = diagnose_interval
        self.pending_timeout = pending
        if delete_on_finish not in _DELETE_POLICIES:
            raise InvalidJobTemplateError(
                f"delete_on_finish={delete_on_finish!r}: use one of {_DELETE_POLICIES}"
            )
        if propagation_policy not in _PROPAGATION:
            raise InvalidJobTemplateError(
                f"propagation_policy={propagation_policy!r}: use one of {_PROPAGATION}"
            )
        if log_tail_lines < 0 or max_failed_pod_logs < 0:
            raise InvalidJobTemplateError("log_tail_lines and max_failed_pod_logs must be >= 0")
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.delete_on_finish = delete_on_finish
        self.propagation_policy = propagation_policy
        self.wait_timeout = _seconds(wait_timeout)
        self.progress_interval = progress_interval
        self.log_tail_lines = log_tail_lines
        self.max_failed_pod_logs = max_failed_pod_logs
        # What on_kill deletes: the Job waited on (namespace, name, uid), or a group (namespace, selector).
        self._job_ref: tuple[str, str, str] | None = None
        self._group_ref: tuple[str, str] | None = None
        self._kill_hook: BatchJobHook | None = None

    @property
    def hook(self) -> BatchJobHook:
        return BatchJobHook(self.kubernetes_conn_id)

    def resolve_namespace(self) -> str:
        return self.namespace or self.hook.default_namespace()

    # -- waiting ---------------------------------------------------------------------------
    def wait(
        self, context: Context, namespace: str, name: str, uid: str, job: dict[str, Any] | None = None
    ) -> Any:
        """Wait for the Job's outcome and hand it to ``execute_complete``.

        A Job already decided (``job``, as just read) finishes here. Otherwise the worker watches
        it for ``defer_after`` seconds, then defers to the trigger (or, with ``deferrable=False``,
        keeps watching here).
        """
        self._job_ref = (namespace, name, uid)
        deadline = time.time() + self.wait_timeout if self.wait_timeout else None

        def watch(until: float | None) -> Coroutine[Any, Any, dict[str, Any]]:
            return wait_for_job(namespace=namespace, job_name=name, job_uid=uid, **self.wait_options(until))

        event = decided_event(job) if job is not None else None
        if event is None:
            event = self.wait_in_worker(watch, deadline)
        if event is None:
            self.defer(
                trigger=JobTrigger(
                    namespace=namespace,
                    job_name=name,
                    job_uid=uid,
                    kubernetes_conn_id=self.kubernetes_conn_id,
                    deadline=deadline,
                    delete_on_kill=True,
                    propagation_policy=self.propagation_policy,
                    progress_interval=self.progress_interval,
                    diagnostics=self.diagnostics,
                    diagnose_interval=self.diagnose_interval,
                    pending_timeout=self.pending_timeout,
                    logs=self.log_settings(),
                ),
                method_name="execute_complete",
            )
        event.update(namespace=namespace, job_name=name, job_uid=uid)
        return self.execute_complete(context, event)

    def wait_in_worker(
        self, watch: Callable[[float | None], Coroutine[Any, Any, dict[str, Any]]], deadline: float | None
    ) -> dict[str, Any] | None:
        """Run the wait here: to the end (``deferrable=False``), or for at most ``defer_after``
        seconds before deferring. None: not decided yet, defer."""
        if self.deferrable and self.defer_after <= 0:
            return None
        brief = time.time() + self.defer_after if self.deferrable else None
        briefly = brief is not None and (deadline is None or brief < deadline)
        self.prepare_kill()
        event = run_wait(watch(brief if briefly else deadline))
        if briefly and event.get("status") == "timeout":
            self.log.info("not decided after %.0fs in the worker: deferring", self.defer_after)
            self._log_positions = dict(event.pop("log_positions", None) or {})  # the trigger goes on
            return None
        event.pop("log_positions", None)
        return event

    def wait_options(self, deadline: float | None) -> dict[str, Any]:
        """How a wait in the worker runs: the same settings the triggers get, logging to the task log."""
        return {
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "deadline": deadline,
            "progress": self.log.info,
            "progress_interval": self.progress_interval,
            "diagnostics": self.diagnostics,
            "diagnose_interval": self.diagnose_interval,
            "pending_timeout": self.pending_timeout,
            "logs": self.log_settings(),
        }

    def log_settings(self) -> dict[str, Any] | None:
        """What the wait's log streams do (``triggers/podlogs.py``); None without ``get_logs``."""
        if not self.get_logs:
            return None
        settings: dict[str, Any] = {
            "containers": self.container_logs,
            "max_streams": self.max_log_streams,
            "max_lines": self.max_log_lines,
            "tail_lines": self.log_tail_lines,
        }
        if self._log_positions:
            settings["resume"] = self._log_positions
        return settings

    def prepare_kill(self) -> None:
        """Build on_kill's client now: on_kill runs from a signal handler, maybe in the middle of
        a connection lookup or client build of this thread, so it must never have to do either."""
        self._kill_hook = self.hook
        self._kill_hook.api  # noqa: B018 (builds the client)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def push(self, context: Context, key: str, value: Any) -> None:
        """An XCom beside the return value; none at all with ``do_xcom_push=False``, as in Airflow."""
        if self.do_xcom_push:
            context["ti"].xcom_push(key=key, value=value)

    def resumed_without_event(self, context: Context, event: dict[str, Any] | None) -> bool:
        """True when Airflow resumed a deferred task whose trigger never fired (its process died).

        The task then simply starts over: ``execute`` finds and adopts the Jobs it created.
        """
        if event is not None:
            return False
        self.log.warning(
            "resumed without a trigger event (the deferred wait was interrupted): adopting again"
        )
        return True

    def report_diagnostics(
        self,
        context: Context | None,
        event: dict[str, Any],
        namespace: str,
        selector: str,
        outcomes: list[JobOutcome],
    ) -> dict[str, Any] | None:
        """Push the ``diagnostics`` XCom: the wait's summary plus what the Job's Pods show now."""
        if not self.diagnostics:
            return None
        summary: dict[str, Any] = dict(event.get("diagnostics") or {})
        summary["pods_created"] = sum(o.succeeded + o.failed + o.active + o.terminating for o in outcomes)
        summary["pods_failed"] = sum(o.failed for o in outcomes)
        try:
            if summary["pods_created"] <= MAX_SUMMARY_PODS:
                summary.update(pod_summary(self.hook.list_pods(namespace, selector), time.time()))
            else:  # listing ten thousand Pods would cost seconds for one summary
                self.log.info(
                    "diagnostics: %d Pods, too many to list for Pending times", summary["pods_created"]
                )
        except ApiException as e:  # a summary is not worth failing the task for
            self.log.warning("could not list Pods for the diagnostics summary: %s %s", e.status, e.reason)
        self.log.info(
            "diagnostics: at most %s Pods ran at once (%s requested), %s created, %s failed, "
            "%s evicted, %.1fs Pending in total (longest %.1fs)",
            summary.get("max_observed_parallelism", "?"),
            summary.get("requested_parallelism", "?"),
            summary["pods_created"],
            summary["pods_failed"],
            summary.get("pods_evicted", "?"),
            summary.get("pending_seconds_total", 0.0),
            summary.get("pending_seconds_max", 0.0),
        )
        if context is not None:
            self.push(context, "diagnostics", summary)
        return summary

    def finish(
        self, event: dict[str, Any], context: Context | None = None, cleanup: bool = True
    ) -> JobOutcome:
        """Turn a trigger event into an outcome, or raise the right error with the failing Pods' logs.

        With ``cleanup=False`` the caller reads more of the Job first, then calls ``cleanup_after``.
        """
        status = event.get("status")
        outcome = JobOutcome.from_dict(event["job"]) if event.get("job") else None
        if status == "deleted":
            raise JobDeletedError(event.get("message", "the Job was deleted"))
        if outcome is not None and event.get("job_uid"):
            self.report_diagnostics(
                context,
                event,
                outcome.namespace,
                f"batch.kubernetes.io/controller-uid={event['job_uid']}",
                [outcome],
            )
        if status in ("timeout", "stuck"):
            if self.delete_on_finish == "always" and event.get("job_name"):
                self.hook.delete_job(
                    event["namespace"], event["job_name"], self.propagation_policy, uid=event.get("job_uid")
                )
                self.log.info(
                    "deleted Job %s/%s (delete_on_finish=always)", event["namespace"], event["job_name"]
                )
            elif event.get("job_name"):  # it runs on unobserved: let its TTL clean it up when it ends
                self.release_ttl(event["namespace"], event["job_name"], event.get("job_uid"))
            if status == "stuck":
                raise JobStuckError(event.get("message", "a Pod could not start"))
            raise JobTimeoutError(event.get("message", "timed out"))
        if outcome is None or status == "error":
            raise BatchJobError(f"waiting on the Job failed: {event.get('message')}")
        self.log.info(
            "Job %s/%s %s: %s", outcome.namespace, outcome.name, outcome.state.value, outcome.summary()
        )
        if outcome.state is JobState.SUCCEEDED:
            if cleanup:
                self.cleanup_after(outcome, context)
            return outcome
        self.log_failed_pods(outcome)
        if cleanup:
            self.cleanup_after(outcome, context)
        raise JobFailedError(
            f"Job {outcome.namespace}/{outcome.name} failed: {outcome.reason}: {outcome.message}",
            outcome.to_dict(),
        )

    def log_failed_pods(self, outcome: JobOutcome) -> None:
        """For each failed Pod (capped): name, index, exit code, reason, and the tail of its log."""
        if not outcome.uid or not self.max_failed_pod_logs:
            return
        hook = self.hook
        pods = hook.list_pods(outcome.namespace, f"batch.kubernetes.io/controller-uid={outcome.uid}")
        failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        failed.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if not failed:
            self.log.warning("no failed Pods of Job %s/%s are left to show", outcome.namespace, outcome.name)
        for pod in failed[-self.max_failed_pod_logs :]:
            meta = pod["metadata"]
            index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
            for cs in (pod["status"].get("initContainerStatuses") or []) + (
                pod["status"].get("containerStatuses") or []
            ):
                term = (cs.get("state") or {}).get("terminated") or {}
                if not term or term.get("exitCode") == 0:
                    continue
                tail = hook.pod_log_tail(outcome.namespace, meta["name"], cs["name"], self.log_tail_lines)
                self.log.error(
                    "Pod %s/%s%s container %s exited %s (%s)%s; last %d log lines:\n%s",
                    outcome.namespace,
                    meta["name"],
                    f" (index {index})" if index is not None else "",
                    cs["name"],
                    term.get("exitCode"),
                    term.get("reason"),
                    f": {term['message'].strip()}" if term.get("message") else "",
                    self.log_tail_lines,
                    tail.rstrip(),
                )
        if len(failed) > self.max_failed_pod_logs:
            self.log.error("%d more failed Pods not shown", len(failed) - self.max_failed_pod_logs)

    def cleanup_after(self, outcome: JobOutcome, context: Context | None = None) -> None:
        """The outcome is read: delete the Job if ``delete_on_finish`` asks for it, else set its TTL
        and, on success, mark it reported (``core/reported.py``).

        A failed Job keeps its TTL held while a retry of the task is still to come: the retry
        reads it to run only what failed (Indexed Jobs, groups).
        """
        succeeded = outcome.state is JobState.SUCCEEDED
        ns, name = outcome.namespace, outcome.name
        if self.delete_on_finish == "always" or (self.delete_on_finish == "on_success" and succeeded):
            if self.hook.delete_job(ns, name, self.propagation_policy, uid=outcome.uid):
                self.log.info("deleted Job %s/%s (delete_on_finish=%s)", ns, name, self.delete_on_finish)
        elif succeeded or self.ttl_due(succeeded, context):
            self.release_ttl(ns, name, outcome.uid, mark=self.success_mark(context) if succeeded else None)

    @staticmethod
    def ttl_due(ok: bool, context: Context | None) -> bool:
        """Whether held TTLs are set now: after success, or once no retry of the task is to come
        (a retry reads the failed try's Jobs to run only what failed)."""
        if ok or context is None:
            return True
        ti = context["ti"]
        return int(ti.try_number or 1) > int(getattr(ti, "max_tries", 0) or 0)

    @staticmethod
    def max_tries(context: Context | None) -> int:
        """The task instance's ``max_tries``: a clear sets a new one (``core/reported.py``)."""
        return int(getattr(context["ti"], "max_tries", 0) or 0) if context is not None else 0

    @staticmethod
    def success_mark(context: Context | None) -> str | None:
        """What a succeeding try writes on the Jobs it reports, so a later try can tell a user's
        clear (run again) from Airflow failing this try after the work was done (keep it)."""
        if context is None:
            return None
        ti = context["ti"]
        return reported_mark(int(ti.try_number or 1), BaseBatchJobOperator.max_tries(context))

    def release_ttl(self, namespace: str, name: str, uid: str | None = None, mark: str | None = None) -> None:
        """Set the ``ttlSecondsAfterFinished`` that ``hold_ttl`` kept back, and the success mark
        (one read, one patch if anything is to change)."""
        hook = self.hook
        job = hook.get_job(namespace, name)
        if job is not None and (uid is None or job["metadata"]["uid"] == uid):
            self.set_held_ttls(hook, namespace, [job], mark)

    @staticmethod
    def set_held_ttls(
        hook: BatchJobHook, namespace: str, jobs: list[dict[str, Any]], mark: str | None = None
    ) -> None:
        """Give each Job its held TTL; with ``mark``, also mark the succeeded ones reported."""
        patches = []
        for job in jobs:
            patch: dict[str, Any] = {}
            if (ttl := held_ttl(job)) is not None:
                patch["spec"] = {"ttlSecondsAfterFinished": ttl}
            if (
                mark is not None
                and outcome_from_job(job).state is JobState.SUCCEEDED
                and ((job["metadata"].get("annotations") or {}).get(ANNOTATION_REPORTED) != mark)
            ):
                patch["metadata"] = {"annotations": {ANNOTATION_REPORTED: mark}}
            if patch:
                patches.append((job["metadata"]["name"], patch))
        if patches:
            with ThreadPoolExecutor(min(API_CONCURRENCY, len(patches))) as pool:
                list(pool.map(lambda np: hook.patch_job(namespace, np[0], np[1]), patches))

    def on_kill(self) -> None:
        """The task was killed while waiting in the worker: delete its Job(s) and their Pods.

        Airflow calls this from its SIGTERM handler, which ``run_wait`` runs on the wait's event
        loop (or, before the wait, the main thread runs it between two bytecodes). The delete
        runs on its own thread and is waited for at most ``ON_KILL_SECONDS``, so a stuck call can
        never keep the killed task alive.
        """
        hook = self._kill_hook or self.hook
        if self._group_ref is not None:
            ns, selector = self._group_ref
            what = f"Jobs {selector!r} in {ns}"

            def delete() -> bool:
                hook.delete_jobs(ns, selector, self.propagation_policy)
                return True
        elif self._job_ref is not None:
            ns, name, uid = self._job_ref
            what = f"Job {ns}/{name}"

            def delete() -> bool:
                return hook.delete_job(ns, name, self.propagation_policy, uid=uid)
        else:
            return
        done: list[bool] = []

        def run() -> None:
            try:
                done.append(delete())
            except Exception as e:
                self.log.warning("could not delete %s on kill: %s", what, e)

        worker = threading.Thread(target=run, name="batchjob-on-kill", daemon=True)
        worker.start()
        worker.join(ON_KILL_SECONDS)
        if done and done[0]:
            self.log.info("deleted %s because the task was killed", what)
        elif worker.is_alive():
            self.log.warning("deleting %s on kill takes over %ss; giving up", what, ON_KILL_SECONDS)

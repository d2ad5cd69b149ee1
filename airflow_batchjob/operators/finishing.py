"""Reading a wait's outcome: the diagnostics summary, failed Pods' logs, the errors to raise, the
return value with the Pods' results, and cleanup (``delete_on_finish``, held TTLs, the success
mark of ``core/reported.py``).

A mixin of ``BaseBatchJobOperator``: it uses the operator's settings (``delete_on_finish``,
``propagation_policy``, ``log_tail_lines``, ``max_failed_pod_logs``, ``diagnostics``) and hook.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes.client.rest import ApiException

from airflow_batchjob import config
from airflow_batchjob.core.build import held_ttl
from airflow_batchjob.core.diagnose import pod_summary
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.reported import ANNOTATION_REPORTED, reported_mark
from airflow_batchjob.core.results import PodResult, results_in_order
from airflow_batchjob.exceptions import (
    BatchJobError,
    JobDeletedError,
    JobFailedError,
    JobStuckError,
    JobTimeoutError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class JobFinishing:
    """Turning a wait's event into a result or the right error, and cleaning up after it."""

    log: Any
    delete_on_finish: str
    propagation_policy: str
    log_tail_lines: int
    max_failed_pod_logs: int
    diagnostics: bool
    log_pod_spec_on_failure: bool = False

    @property
    def hook(self) -> BatchJobHook:
        raise NotImplementedError

    def push(self, context: Context, key: str, value: Any) -> None:
        raise NotImplementedError

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
            if summary["pods_created"] <= config.get("max_summary_pods"):
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
        if self.log_pod_spec_on_failure:
            self.log_pod_spec(outcome)
        if cleanup:
            self.cleanup_after(outcome, context)
        raise JobFailedError(
            f"Job {outcome.namespace}/{outcome.name} failed: {outcome.reason}: {outcome.message}",
            outcome.to_dict(),
        )

    def log_pod_spec(self, outcome: JobOutcome) -> None:
        """The failed Job's Pod template, as YAML (cncf.kubernetes' ``log_pod_spec_on_failure``)."""
        job = self.hook.get_job(outcome.namespace, outcome.name)
        if job is None:
            return
        template = (job.get("spec") or {}).get("template") or {}
        self.log.error(
            "Pod template of the failed Job %s/%s:\n%s",
            outcome.namespace,
            outcome.name,
            yaml.safe_dump(template, sort_keys=False).rstrip(),
        )

    def log_disruptions(self, pods: list[dict[str, Any]]) -> None:
        """Pods stopped from outside (condition ``DisruptionTarget``: a drained or lost node's
        eviction, preemption): their failure says nothing about the program, so say what it was.
        Such a Pod may still be terminating (its node gone), not yet ``Failed``."""
        for pod in pods:
            conditions = (pod.get("status") or {}).get("conditions") or []
            cond = next(
                (c for c in conditions if c.get("type") == "DisruptionTarget" and c.get("status") == "True"),
                None,
            )
            if cond is None:
                continue
            self.log.warning(
                "Pod %s was stopped by a disruption, not by its program: %s: %s%s",
                pod["metadata"]["name"],
                cond.get("reason"),
                cond.get("message"),
                ""
                if getattr(self, "ignore_disruptions", False)
                else " (it counts against backoff_limit; ignore_disruptions=True replaces such a Pod "
                "without counting it)",
            )

    def log_failed_pods(self, outcome: JobOutcome) -> None:
        """For each failed Pod (capped): name, index, exit code, reason, and the tail of its log."""
        if not outcome.uid or not self.max_failed_pod_logs:
            return
        hook = self.hook
        pods = hook.list_pods(outcome.namespace, f"batch.kubernetes.io/controller-uid={outcome.uid}")
        self.log_disruptions(pods)
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
        return reported_mark(int(ti.try_number or 1), JobFinishing.max_tries(context))

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
            with ThreadPoolExecutor(min(config.get("api_concurrency"), len(patches))) as pool:
                list(pool.map(lambda np: hook.patch_job(namespace, np[0], np[1]), patches))

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

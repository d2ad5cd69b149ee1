"""JobGroupTrigger: waits on a group of Jobs (one label selector, one shared watch).

It also enforces ``max_active``: Jobs the operator created suspended (annotated as queued) are
resumed as others finish, computed afresh from the current Jobs on every change, so a triggerer
restart loses nothing. The event stays small (counts only); the operator lists the Jobs once to
build its per-item table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_batchjob.core.group import GroupGoal, judge_group, progress_of, to_resume, with_deleted
from airflow_batchjob.core.kueue import admission_counts
from airflow_batchjob.core.outcome import outcome_from_job
from airflow_batchjob.core.wait import Verdict
from airflow_batchjob.core.watchscope import Scope
from airflow_batchjob.hooks.asyncjobs import delete_jobs, resume_jobs
from airflow_batchjob.hooks.batchjob import async_api_client
from airflow_batchjob.hooks.watch import ClientFactory
from airflow_batchjob.triggers.base import ProgressLog, WaitTrigger
from airflow_batchjob.triggers.diagnostics import watched
from airflow_batchjob.triggers.podlogs import LogSettings


async def wait_for_group(
    *,
    namespace: str,
    label_selector: str,
    goal: GroupGoal | None = None,
    max_active: int | None = None,
    kubernetes_conn_id: str = "kubernetes_default",
    deadline: float | None = None,
    progress: Callable[[str], None] | None = None,
    progress_interval: float = 10.0,
    diagnostics: bool = False,
    diagnose_interval: float = 30.0,
    pending_timeout: float | None = None,
    logs: dict[str, Any] | None = None,
    seen_diagnostics: dict[str, Any] | None = None,
    client_factory: ClientFactory = async_api_client,
) -> dict[str, Any]:
    """Wait until the group meets ``goal``; return ``{"status", "message", "counts"}``.

    ``diagnostics`` and ``pending_timeout`` work as in ``wait_for_job``, over all the group's Jobs.
    """
    goal = goal or GroupGoal()
    # The group's Jobs; their Pods carry the same labels. A bad selector is refused here.
    scope = Scope(selector=label_selector)

    say = ProgressLog(progress, progress_interval)
    resumed: set[str] = set()
    async with watched(
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
        pod_scope=scope,
        seen=seen_diagnostics,
    ) as (sub, diag):

        def event(status: str, message: str, counts: dict[str, Any]) -> dict[str, Any]:
            return diag.stamp({"status": status, "message": message, "counts": counts})

        while True:
            if not await diag.next_update(deadline):
                group, _ = with_deleted(list(sub.jobs.values()), sub.deleted)
                p = progress_of([outcome_from_job(j) for j in group])
                return event(
                    "timeout",
                    f"timed out waiting for Jobs {label_selector!r}: {p.line(goal.expected)}",
                    p.__dict__,
                )
            if sub.error:
                return event("error", f"waiting on Jobs {label_selector!r}: {sub.error}", {})
            if not sub.synced:
                continue
            jobs = list(sub.jobs.values())
            group, lost = with_deleted(jobs, sub.deleted)
            if lost:
                p = progress_of([outcome_from_job(j) for j in group])
                return event(
                    "deleted",
                    f"{len(lost)} Jobs of group {label_selector!r} were deleted before they finished "
                    f"({', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}): {p.line(goal.expected)}",
                    p.__dict__,
                )
            if max_active:
                names = [n for n in to_resume(jobs, max_active) if n not in resumed]
                if names and sub.api is not None:
                    await resume_jobs(sub.api, namespace, names)
                    resumed.update(names)
            outcomes = [outcome_from_job(j) for j in group]
            verdict, why = judge_group(outcomes, goal)
            say(
                f"Jobs {label_selector}",
                progress_of(outcomes).line(goal.expected) + admission_counts(group),
                final=verdict is not Verdict.WAITING,
            )
            if verdict is not Verdict.WAITING:
                return event(verdict.value, why, progress_of(outcomes).__dict__)
            stuck = await diag.observe(jobs)
            if stuck is not None:
                return event("stuck", diag.stuck_message(stuck), progress_of(outcomes).__dict__)


class JobGroupTrigger(WaitTrigger):
    """Fires once when a group of Jobs (by label selector) meets its goal, fails it, or times out.

    Never sooner than ``settle_seconds`` after it starts running (``triggers/base.py``: Airflow's
    defer race).

    :param namespace: the Jobs' namespace.
    :param label_selector: the labels of the group's Jobs.
    :param goal: when the wait ends, as ``GroupGoal.to_dict()`` gives it (``expected``,
        ``fail_fast``, ``succeeded_at_least``); default: every Job's outcome is decided.
    :param max_active: resume the group's queued (suspended) Jobs in item order so that at most
        this many run (default: none resumed).
    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``), or
        the task's ``conn_ref`` string with its ``in_cluster`` / ``config_file`` /
        ``cluster_context`` overrides.
    :param deadline: a ``time.time()`` instant after which the trigger fires with status
        ``timeout`` (default: none).
    :param delete_on_kill: a user killing the deferred task deletes every Job of the group and
        their Pods (default False; the operators pass theirs).
    :param progress_interval: seconds between the progress lines logged while the group changes
        (default 10); the first and the last are logged at once.
    :param diagnostics: explain in the log why the Jobs' Pods do not all run, and add a
        ``diagnostics`` summary to the event (default False; the operators turn it on).
    :param diagnose_interval: seconds between two explanations of an unchanged situation (default 30).
    :param pending_timeout: seconds a Pod may stay unschedulable or unable to start its containers
        before the trigger fires with status ``stuck`` (default: no limit).
    :param settle_seconds: the hold described above, in seconds (default:
        ``[batchjob] defer_settle_seconds``, 15); 0 turns it off.
    :param logs: what to show of the Pods' logs, as the operators' ``log_settings()`` dict
        (``triggers/podlogs.py``); default: no logs.
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
        label_selector: str,
        goal: dict[str, Any] | None = None,
        max_active: int | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deadline: float | None = None,
        delete_on_kill: bool = False,
        progress_interval: float = 10.0,
        diagnostics: bool = False,
        diagnose_interval: float = 30.0,
        pending_timeout: float | None = None,
        settle_seconds: float | None = None,
        logs: dict[str, Any] | None = None,
        completion: dict[str, Any] | None = None,
        seen_diagnostics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.completion = completion
        self.seen_diagnostics = seen_diagnostics
        self.settle_seconds = settle_seconds
        self.logs = logs
        self.diagnose_interval = diagnose_interval
        self.diagnostics = diagnostics
        self.pending_timeout = pending_timeout
        self.namespace = namespace
        self.label_selector = label_selector
        self.goal = goal
        self.max_active = max_active
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deadline = deadline
        self.delete_on_kill = delete_on_kill
        self.progress_interval = progress_interval

    async def _wait(self) -> dict[str, Any]:
        return await wait_for_group(
            namespace=self.namespace,
            label_selector=self.label_selector,
            goal=GroupGoal.from_dict(self.goal),
            max_active=self.max_active,
            seen_diagnostics=self.seen_diagnostics,
            **self.wait_settings(),
        )

    def _error_event(self, error: Exception) -> dict[str, Any]:
        self.log.exception("waiting on Jobs %s in %s failed", self.label_selector, self.namespace)
        return {"status": "error", "message": f"{type(error).__name__}: {error}", "counts": None}

    def _identity(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "label_selector": self.label_selector}

    async def _kill(self) -> None:
        """A user killed the task: delete the group's Jobs and their Pods (one collection delete)."""
        if not self.delete_on_kill or await self.moved_not_killed():
            return
        await delete_jobs(self.kubernetes_conn_id, self.namespace, self.label_selector)
        self.log.info(
            "deleted Jobs %s in %s because the task was killed", self.label_selector, self.namespace
        )

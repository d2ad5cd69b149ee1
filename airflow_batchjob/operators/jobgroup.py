"""JobGroupOperator: template expansion, one Job per work item, from one task.

Kubernetes' recipe renders a Job template per item with ``sed`` and labels the Jobs
``jobgroup=<name>``. Here items are data: each Job gets its item as environment variables
(``ITEM``, plus one per scalar key of an object item), never spliced into the spec's text. Job
names are deterministic per item, so a retry adopts what exists: succeeded Jobs are kept, running
ones waited on, failed ones replaced, missing ones created. A user's clear of a task that
succeeded runs every item again (``core/reported.py`` tells a clear from a retry).

``max_active_jobs`` is enforced with Kubernetes' own ``suspend``: every Job is created at once
(visible to ``kubectl get jobs -l jobgroup=...``, adoptable by a retry, created in one concurrent
pass), those beyond the limit suspended, and the trigger resumes them as others finish. A
suspended Job has no Pods and its ``activeDeadlineSeconds`` clock does not run.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from kubernetes.client.rest import ApiException

from airflow_batchjob import config
from airflow_batchjob._compat import AirflowSkipException
from airflow_batchjob.core import naming
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.group import ANNOTATION_ITEM_INDEX, ANNOTATION_QUEUED, GroupGoal, item_index
from airflow_batchjob.core.items import Item, item_env, normalize_items
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.reported import keep_succeeded
from airflow_batchjob.core.results import PodResult, pod_result
from airflow_batchjob.core.skipcodes import skip_exit_code
from airflow_batchjob.exceptions import (
    BatchJobError,
    InvalidJobTemplateError,
    JobFailedError,
    JobStuckError,
    JobTimeoutError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.operators.base import items_at_parse
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.triggers.completion import completion_spec
from airflow_batchjob.triggers.jobgroup import JobGroupTrigger, wait_for_group

if TYPE_CHECKING:
    from airflow.sdk import Context

LABEL_JOBGROUP = "jobgroup"  # the label Kubernetes' template-expansion recipe uses


class JobGroupOperator(BatchJobOperator):
    """Run one Job per item of ``items`` from one template, and wait for the whole group.

    Takes every parameter of :class:`BatchJobOperator` (template or image/cmds, Job spec
    overrides) plus:

    :param items: a list (templated, or an XCom) of strings or JSON objects; each becomes one Job.
    :param group_name: the ``jobgroup`` label value (default: derived from the task instance).
    :param max_active_jobs: at most this many Jobs run at once; the others wait suspended.
    :param failure_policy: ``"any"`` (default) fails the task if any item failed;
        ``"min_success"`` succeeds when at least ``min_success`` items succeeded.
    :param min_success: with ``failure_policy="min_success"``, and only then: how many items must
        succeed, at least 1.
    :param fail_fast: stop waiting at the first failed item (the others keep running unless
        ``delete_on_finish="always"``).

    Of the inherited parameters: ``job_name`` prefixes every item's Job name;
    ``random_name_suffix=False`` is refused (several Jobs cannot share one exact name);
    ``wait_until_job_complete=False`` creates the group and returns ``{"group", "namespace",
    "selector", "expected_jobs", "jobs"}`` at once, for a ``JobGroupSensor`` downstream;
    ``reattach_on_restart=False`` replaces every Job an earlier try created; ``skip_on_exit_code``
    marks an item whose Job's main container exited with one of the codes ``skipped`` (not
    failed), and skips the task when every item that did not succeed was skipped.

    ``ttl_seconds_after_finished`` (or the template's ``ttlSecondsAfterFinished``) is set on the
    group's Jobs only once the task has read the group's outcome: the TTL controller then deletes
    each Job that long after it finished, but never before its result is in the per-item table.

    Returns a per-item table (XCom), in item order:
    ``[{"index", "item", "job", "state", "reason", "message", "succeeded", "failed", "result"}]``;
    ``result`` is what the item's Pod wrote to ``$BATCHJOB_RESULT_FILE`` (``core/results.py``). An
    unusable result (not JSON, over 4 KiB) fails its item (reason ``InvalidResult``).
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "group_name", "items")
    cannot_honour = (
        (
            "random_name_suffix",
            True,
            "each item's Job is named from the task instance and its item, so one exact name cannot "
            "name them; job_name is used as the names' prefix, group_name labels the group",
        ),
    )

    def __init__(
        self,
        *,
        items: Any,
        group_name: str | None = None,
        max_active_jobs: int | None = None,
        failure_policy: Literal["any", "min_success"] = "any",
        min_success: int | None = None,
        fail_fast: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not self.wait_until_job_complete:
            given = {"max_active_jobs": max_active_jobs, "fail_fast": fail_fast, "min_success": min_success}
            waits = [k for k, v in given.items() if v not in (None, False)]
            waits += ["failure_policy"] if failure_policy != "any" else []
            if waits:
                raise InvalidJobTemplateError(
                    f"{', '.join(waits)} need the task to wait for the group (the trigger resumes "
                    "suspended Jobs and counts outcomes): drop them or wait_until_job_complete=False"
                )
        if max_active_jobs is not None and max_active_jobs < 1:
            raise InvalidJobTemplateError("max_active_jobs must be >= 1 (or None for no limit)")
        if failure_policy not in ("any", "min_success"):
            raise InvalidJobTemplateError(f"failure_policy={failure_policy!r}: use 'any' or 'min_success'")
        if (failure_policy == "min_success") != (min_success is not None):
            raise InvalidJobTemplateError("failure_policy='min_success' needs min_success=N (and only then)")
        if min_success is not None and min_success < 1:
            raise InvalidJobTemplateError("min_success must be >= 1")
        literal = items_at_parse(items)
        if literal is not None:
            items = literal
            self._items_checked(items)
        self.items = items
        self.group_name = group_name
        self.max_active_jobs = max_active_jobs
        self.failure_policy = failure_policy
        self.min_success = min_success
        self.fail_fast = fail_fast

    @staticmethod
    def _items_checked(values: Any) -> list[Item]:
        try:
            return normalize_items(values)
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"items: {e}") from e

    def _group(self, context: Context) -> tuple[str, str]:
        """The group name and the selector of this task instance's Jobs in it."""
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        group = self.group_name or naming.job_name(ti.dag_id, ti.task_id, ti.run_id, map_index)
        if naming.sanitize_label_value(group) != group:
            raise InvalidJobTemplateError(
                f"group_name {group!r} is not a valid label value: use letters, digits, "
                "'-', '_' and '.', at most 63 characters"
            )
        selector = (
            f"{naming.task_selector(ti.dag_id, ti.task_id, ti.run_id, map_index)},{LABEL_JOBGROUP}={group}"
        )
        return group, selector

    def execute(self, context: Context) -> Any:
        self.check_spec_fields()
        self.log_peer_notes()
        items = self._items_checked(self.items)
        namespace = self.resolve_namespace()
        group, selector = self._group(context)
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        bodies = []
        for i, item in enumerate(items):
            name = naming.job_name(
                ti.dag_id, ti.task_id, ti.run_id, map_index, item_key=item.key, prefix=self.job_name or None
            )
            body = self.build(
                context,
                namespace,
                name=name,
                extra_env=item_env(item),
                extra_labels={LABEL_JOBGROUP: group, naming.LABEL_GROUP: group},
                extra_annotations={naming.ANNOTATION_ITEM_KEY: item.key, ANNOTATION_ITEM_INDEX: str(i)},
            )
            bodies.append(body)
        self._group_ref = (namespace, selector)  # from here on, a killed task deletes what it created
        self.prepare_kill()
        hook = self.hook
        if bodies:  # the items' Jobs differ only in their item: one stands for all
            self.server_dry_run(hook, namespace, bodies[0])
        self.reconcile(hook, namespace, selector, bodies, self.max_tries(context))
        self.push(context, "group", group)
        self.push(context, "namespace", namespace)
        self.push(context, "selector", selector)
        if not bodies:
            self.log.info("no items: nothing to run")
            return []
        if not self.wait_until_job_complete:
            self.log.info(
                "not waiting for the group's %d Jobs (wait_until_job_complete=False); a JobGroupSensor "
                "with label_selector=%r and expected_jobs=%d waits for them",
                len(bodies),
                selector,
                len(bodies),
            )
            return {
                "group": group,
                "namespace": namespace,
                "selector": selector,
                "expected_jobs": len(bodies),
                "jobs": [b["metadata"]["name"] for b in bodies],
            }
        return self.wait_group(context, namespace, selector, len(bodies))

    def reconcile(
        self,
        hook: BatchJobHook,
        namespace: str,
        selector: str,
        bodies: list[dict[str, Any]],
        max_tries: int = 0,
    ) -> None:
        """Create the group's Jobs concurrently; adopt running and succeeded ones, replace failed
        ones, and succeeded ones too if the user cleared the task after it succeeded."""
        existing = {j["metadata"]["name"]: j for j in hook.list_jobs(namespace, selector)}
        to_create, to_replace, kept_running = [], [], 0
        for body in bodies:
            job = existing.get(body["metadata"]["name"])
            if job is None:
                to_create.append(body)
                continue
            outcome = outcome_from_job(job)
            fresh_try = not self.reattach_on_restart and naming.earlier_try(job, body)
            if (
                fresh_try
                or outcome.state is JobState.FAILED
                or (
                    outcome.state is JobState.SUCCEEDED
                    and not self.reuse_succeeded
                    and not keep_succeeded(job, max_tries)
                )
            ):
                to_replace.append((body, job["metadata"]["uid"]))
            elif not outcome.done and not (job.get("spec") or {}).get("suspend"):
                kept_running += 1
        adopted = len(bodies) - len(to_create) - len(to_replace)
        if adopted:
            self.log.info(
                "adopting %d Jobs of this group from an earlier try (%d still running)", adopted, kept_running
            )
        with ThreadPoolExecutor(config.get("api_concurrency")) as pool:
            list(
                pool.map(
                    lambda bu: hook.delete_job(namespace, bu[0]["metadata"]["name"], "Background", bu[1]),
                    to_replace,
                )
            )
            list(
                pool.map(
                    lambda bu: hook.wait_deleted(namespace, bu[0]["metadata"]["name"], bu[1]), to_replace
                )
            )
            fresh = to_create + [b for b, _ in to_replace]
            fresh.sort(key=item_index)
            slots = None if self.max_active_jobs is None else max(0, self.max_active_jobs - kept_running)
            for n, body in enumerate(fresh):
                if slots is not None and n >= slots and not body["spec"].get("suspend"):
                    body["spec"]["suspend"] = True
                    body["metadata"].setdefault("annotations", {})[ANNOTATION_QUEUED] = "true"
            t0 = time.monotonic()
            list(pool.map(lambda b: self._create(hook, namespace, b), fresh))
        if fresh:
            self.log.info(
                "created %d Jobs (%d replacing finished ones) in %.1fs; group selector %s",
                len(fresh),
                len(to_replace),
                time.monotonic() - t0,
                selector,
            )

    @staticmethod
    def _create(hook: BatchJobHook, namespace: str, body: dict[str, Any]) -> None:
        try:
            hook.create_job(namespace, body)
        except ApiException as e:
            if e.status == 409:
                return  # created meanwhile (a concurrent try): it is adopted by the wait
            if e.status in (400, 422):
                raise InvalidJobTemplateError(
                    f"the apiserver rejected Job {body['metadata']['name']}: {e.body}"
                ) from e
            raise

    def _goal(self, expected: int) -> GroupGoal:
        return GroupGoal(expected=expected, fail_fast=self.fail_fast)

    def wait_group(self, context: Context, namespace: str, selector: str, expected: int) -> Any:
        deadline = time.time() + self.wait_timeout if self.wait_timeout else None
        goal = self._goal(expected)

        def watch(until: float | None) -> Coroutine[Any, Any, dict[str, Any]]:
            return wait_for_group(
                namespace=namespace,
                label_selector=selector,
                goal=goal,
                max_active=self.max_active_jobs,
                **self.wait_options(until),
            )

        event = self.wait_in_worker(watch, deadline)
        if event is None:
            self.defer(
                trigger=JobGroupTrigger(
                    namespace=namespace,
                    label_selector=selector,
                    goal=goal.to_dict(),
                    max_active=self.max_active_jobs,
                    **self.trigger_options(deadline),
                    completion=completion_spec(self, context["ti"]),
                ),
                method_name="execute_complete",
            )
        event.update(namespace=namespace, label_selector=selector)
        return self.execute_complete(context, event)

    def completes_in_triggerer(self, event: dict[str, Any]) -> bool:
        """A group whose every Job finished without a failure ends in the triggerer."""
        return event.get("status") == "met" and (event.get("counts") or {}).get("failed") == 0

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        status, namespace, selector = event.get("status"), event["namespace"], event["label_selector"]
        if status == "error":
            raise BatchJobError(f"waiting on the group failed: {event.get('message')}")
        hook = self.hook
        jobs = sorted(hook.list_jobs(namespace, selector), key=item_index)
        table = [self._row(job) for job in jobs]
        pods = hook.list_pods(namespace, selector) if self.do_xcom_push or self.skip_on_exit_code else []
        if self.do_xcom_push:  # before delete_on_finish or a TTL can remove the Pods
            self._add_results(table, pods)
        skipped = self._mark_skipped(table, pods)
        counts = event.get("counts") or {}
        if len(table) < counts.get("total", 0):  # some finished Jobs were deleted by someone else
            self.log.warning(
                "%d of the group's %d finished Jobs were deleted before their rows were read: "
                "they are counted, but missing from the per-item table",
                counts["total"] - len(table),
                counts["total"],
            )
        if status == "deleted":
            self.set_held_ttls(hook, namespace, jobs)
            raise BatchJobError(f"{event.get('message')}; run the task again to recreate them")
        self.log.info("group %s: %s", selector, event.get("message"))
        self.report_diagnostics(context, event, namespace, selector, [outcome_from_job(j) for j in jobs])
        if status in ("timeout", "stuck"):
            self._finish(hook, namespace, selector, jobs, delete=self.delete_on_finish == "always")
            if status == "stuck":
                raise JobStuckError(event.get("message", "a Pod could not start"))
            raise JobTimeoutError(event.get("message", "timed out"))
        failed = [r for r in table if r["state"] == JobState.FAILED.value]
        succeeded = [r for r in table if r["state"] == JobState.SUCCEEDED.value]
        for job in [j for j in jobs if outcome_from_job(j).state is JobState.FAILED][
            : self.max_failed_pod_logs
        ]:
            self.log_failed_pods(outcome_from_job(job))
        n_failed = max(len(failed), int(counts.get("failed", 0)) - len(skipped))
        n_succeeded = max(len(succeeded), int(counts.get("succeeded", 0)))
        ok = n_succeeded >= (self.min_success or 0) if self.failure_policy == "min_success" else not n_failed
        delete = self.delete_on_finish == "always" or (self.delete_on_finish == "on_success" and ok)
        if delete or self.ttl_due(ok, context):
            mark = self.success_mark(context) if ok else None
            self._finish(hook, namespace, selector, jobs, delete=delete, mark=mark)
        if not ok:
            names = ", ".join(repr(r["item"]) for r in failed[:20]) + (" ..." if len(failed) > 20 else "")
            total = max(len(table), int(counts.get("total", 0)))
            raise JobFailedError(f"{n_failed} of {total} items failed: {names}", {"items": table})
        if skipped and not n_succeeded:
            raise AirflowSkipException(
                f"every item was skipped (skip_on_exit_code={list(self.skip_on_exit_code or ())})"
            )
        return table

    def _mark_skipped(self, table: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows whose failed Job's main container exited with a ``skip_on_exit_code`` code: ``skipped``."""
        if not self.skip_on_exit_code:
            return []
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name")
            by_job.setdefault(str(job), []).append(pod)
        out = []
        for row in table:
            if row["state"] != JobState.FAILED.value or row.get("reason") == "InvalidResult":
                continue
            code = skip_exit_code(
                by_job.get(row["job"], []), self.skip_on_exit_code, self.base_container_name
            )
            if code is not None:
                row.update(
                    state="skipped", reason="SkipOnExitCode", message=f"the main container exited {code}"
                )
                out.append(row)
        return out

    def _finish(
        self,
        hook: BatchJobHook,
        namespace: str,
        selector: str,
        jobs: list[dict[str, Any]],
        delete: bool,
        mark: str | None = None,
    ) -> None:
        """The group's outcome is read: delete its Jobs, or hand them their held-back TTL (and,
        when the task succeeds, the success mark)."""
        if delete:
            hook.delete_jobs(namespace, selector, self.propagation_policy)
        else:
            self.set_held_ttls(hook, namespace, jobs, mark)

    @staticmethod
    def _add_results(table: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        """Each row's ``result``: what its Job's succeeded Pod returned; an unusable one fails the row."""
        latest: dict[str, tuple[str, PodResult]] = {}
        for pod in pods:
            job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name")
            r = pod_result(pod)
            created = pod["metadata"].get("creationTimestamp") or ""
            if job and r is not None and (job not in latest or latest[job][0] < created):
                latest[job] = (created, r)
        for row in table:
            found = latest.get(row["job"])
            row["result"] = found[1].value if found else None
            if found and found[1].error:
                row.update(state=JobState.FAILED.value, reason="InvalidResult", message=found[1].error)

    @staticmethod
    def _row(job: dict[str, Any]) -> dict[str, Any]:
        outcome: JobOutcome = outcome_from_job(job)
        key = (job["metadata"].get("annotations") or {}).get(naming.ANNOTATION_ITEM_KEY)
        return {
            "index": item_index(job),
            "item": key,
            "job": outcome.name,
            "state": outcome.state.value,
            "reason": outcome.reason,
            "message": outcome.message,
            "succeeded": outcome.succeeded,
            "failed": outcome.failed,
            "completed_indexes": list(outcome.completed_indexes),
            "failed_indexes": list(outcome.failed_indexes),
        }

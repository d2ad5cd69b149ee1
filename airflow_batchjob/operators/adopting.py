"""Create a task instance's Job, or adopt, keep or replace the one an earlier try created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes.client.rest import ApiException

from airflow_batchjob.core import naming
from airflow_batchjob.core.outcome import JobState, outcome_from_job
from airflow_batchjob.core.reported import job_mark, keep_succeeded
from airflow_batchjob.exceptions import BatchJobError, InvalidJobTemplateError
from airflow_batchjob.hooks.batchjob import BatchJobHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class JobAdopting:
    """``create_or_adopt`` for the operators that create Jobs (mixed into ``BatchJobOperator``)."""

    reuse_succeeded: bool
    reattach_on_restart: bool = True
    log: Any
    if TYPE_CHECKING:  # JobFinishing's

        @staticmethod
        def max_tries(context: Context | None) -> int: ...

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
                if mine and not self.reattach_on_restart and naming.earlier_try(existing, body):
                    self.log.info(
                        "Job %s/%s (uid %s) of an earlier try is %s; replacing it with a fresh Job "
                        "(reattach_on_restart=False)",
                        namespace,
                        name,
                        uid,
                        outcome.state.value,
                    )
                    hook.delete_job(namespace, name, "Background", uid=uid)
                    hook.wait_deleted(namespace, name, uid)
                    continue
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

"""JobGroupSensor: wait on a group of Jobs by label selector (e.g. ``jobgroup=nightly``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.group import GroupGoal, judge_group, progress_of
from airflow_batchjob.core.outcome import outcome_from_job
from airflow_batchjob.core.selector import parse_selector
from airflow_batchjob.core.wait import Verdict
from airflow_batchjob.exceptions import InvalidJobTemplateError, JobFailedSensorError
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.sensors.base import BaseJobWatchSensor
from airflow_batchjob.triggers.jobgroup import JobGroupTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class JobGroupSensor(BaseJobWatchSensor):
    """Wait until the Jobs matching ``label_selector`` all finished, or any failed, or N succeeded.

    :param label_selector: the labels of the group's Jobs (templated), e.g. ``jobgroup=nightly``.
    :param namespace: where the Jobs are (templated); default: the connection's namespace, else
        ``default``.
    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``).
    :param expected_jobs: how many Jobs make the group (default: whatever matches, at least one).
    :param succeeded_at_least: succeed as soon as this many Jobs succeeded.
    :param fail_on_any_failure: fail as soon as one Job failed (default True); with False, wait
        for all and succeed whatever their outcomes.
    :param deferrable: poke once, then wait in the triggerer; False pokes every ``poke_interval``.
        Default: ``[operators] default_deferrable`` where the deployment sets it, else True.

    Returns ``{"succeeded", "failed", "running", "queued", "total"}`` counts (XCom).
    """

    template_fields: Sequence[str] = ("label_selector", "namespace")
    event_value_key = "counts"

    def __init__(
        self,
        *,
        label_selector: str,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        expected_jobs: int | None = None,
        succeeded_at_least: int | None = None,
        fail_on_any_failure: bool = True,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            namespace=namespace, kubernetes_conn_id=kubernetes_conn_id, deferrable=deferrable, **kwargs
        )
        try:
            if "{{" not in label_selector:
                parse_selector(label_selector)
            self.goal = GroupGoal(
                expected=expected_jobs, fail_fast=fail_on_any_failure, succeeded_at_least=succeeded_at_least
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(str(e)) from e
        self.label_selector = label_selector

    def poke(self, context: Context) -> bool | PokeReturnValue:
        jobs = BatchJobHook(self.conn()).list_jobs(self._namespace(), self.label_selector)
        outcomes = [outcome_from_job(j) for j in jobs]
        verdict, why = judge_group(outcomes, self.goal) if jobs else (Verdict.WAITING, "no Jobs match yet")
        self.log.info("Jobs %s: %s", self.label_selector, why)
        if verdict is Verdict.FAILED:
            raise JobFailedSensorError(why, progress_of(outcomes).__dict__)
        return PokeReturnValue(is_done=verdict is Verdict.MET, xcom_value=progress_of(outcomes).__dict__)

    def trigger(self, namespace: str, deadline: float | None) -> JobGroupTrigger:
        return JobGroupTrigger(
            namespace=namespace,
            label_selector=self.label_selector,
            goal=self.goal.to_dict(),
            kubernetes_conn_id=self.conn(),
            deadline=deadline,
        )

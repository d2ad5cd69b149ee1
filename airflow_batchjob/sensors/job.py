"""JobSensor: wait on a Job this task did not create, for a condition, a count, or indexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import PokeReturnValue

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.selector import parse_selector
from airflow_batchjob.core.wait import CONDITIONS, Verdict, WaitFor, check
from airflow_batchjob.exceptions import BatchJobError, InvalidJobTemplateError, JobFailedSensorError
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.sensors.base import BaseJobWatchSensor
from airflow_batchjob.triggers.job import JobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class JobSensor(BaseJobWatchSensor):
    """Wait until a Job (by ``job_name``, or a ``label_selector`` matching exactly one) meets a goal.

    Goals: ``condition`` (Complete, Failed, SuccessCriteriaMet, FailureTarget, Suspended),
    ``succeeded_at_least=N``, and/or ``indexes=[...]`` all completed. ``fail_on`` lists conditions
    that fail the sensor at once (default: FailureTarget and Failed, unless waited for). A Job not
    created yet is waited for. Deferrable (one shared watch in the triggerer) by default; with
    ``deferrable=False`` it pokes every ``poke_interval``. Returns the Job's outcome (XCom).

    :param job_name: the Job to wait on (templated); give it or ``label_selector``.
    :param label_selector: or the labels of the Job (templated), e.g. ``jobgroup=nightly``: it must
        match one Job (several is an error; none yet is waited for).
    :param namespace: where the Job is (templated); default: the connection's namespace, else
        ``default``.
    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``).
    :param condition: the Job condition to wait for: ``Complete`` (default), ``Failed``,
        ``SuccessCriteriaMet``, ``FailureTarget`` or ``Suspended``. Every goal given must be met:
        pass ``condition=None`` to wait for ``succeeded_at_least`` or ``indexes`` alone.
    :param succeeded_at_least: wait until at least this many of the Job's Pods succeeded.
    :param indexes: wait until these completion indexes (an Indexed Job's) all completed; one of
        them failing fails the sensor.
    :param fail_on: a list of conditions that fail the sensor at once; default ``FailureTarget``
        and ``Failed``, unless ``condition`` is one of them.
    :param deferrable: poke once, then wait in the triggerer; False pokes every ``poke_interval``.
        Default: ``[operators] default_deferrable`` where the deployment sets it, else True.
    :param diagnostics: when deferred, explain in the log why the Job's Pods do not all run
        (as the operators do: scheduling, image pulls, quota, back-off).
    """

    template_fields: Sequence[str] = ("job_name", "label_selector", "namespace")
    ui_color = "#e8f1fd"

    def __init__(
        self,
        *,
        job_name: str | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        condition: str | None = "Complete",
        succeeded_at_least: int | None = None,
        indexes: Sequence[int] | None = None,
        fail_on: Sequence[str] | None = None,
        deferrable: bool | None = None,
        diagnostics: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            namespace=namespace, kubernetes_conn_id=kubernetes_conn_id, deferrable=deferrable, **kwargs
        )
        if bool(job_name) == bool(label_selector):
            raise InvalidJobTemplateError("JobSensor needs exactly one of job_name and label_selector")
        if fail_on is None:
            fail_on = tuple(
                c for c in ("FailureTarget", "Failed") if condition not in ("FailureTarget", "Failed")
            )
        try:
            if label_selector and "{{" not in label_selector:
                parse_selector(label_selector)
            self.wait_for = WaitFor(
                condition=condition,
                succeeded_at_least=succeeded_at_least,
                indexes=tuple(indexes or ()),
                fail_on=cast("tuple[str, ...]", fail_on),  # WaitFor checks the type: a bare string is refused
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(str(e)) from e
        if self.wait_for.decided:
            raise InvalidJobTemplateError(
                f"JobSensor needs a goal: condition (one of {CONDITIONS}), succeeded_at_least or indexes"
            )
        self.job_name = job_name
        self.label_selector = label_selector
        self.diagnostics = diagnostics

    def poke(self, context: Context) -> bool | PokeReturnValue:
        hook = BatchJobHook(self.conn())
        ns = self._namespace()
        if self.job_name:
            job = hook.get_job(ns, self.job_name)
            jobs = [job] if job else []
        else:
            jobs = hook.list_jobs(ns, str(self.label_selector))
        if len(jobs) > 1:
            raise BatchJobError(
                f"label selector {self.label_selector!r} matches {len(jobs)} Jobs in {ns}: "
                "make it match exactly one"
            )
        if not jobs:
            self.log.info("no Job %s in %s yet", self.job_name or self.label_selector, ns)
            return False
        verdict, outcome, why = check(jobs[0], self.wait_for)
        self.log.info("%s", why)
        if verdict is Verdict.FAILED:
            raise JobFailedSensorError(why, outcome.to_dict())
        return PokeReturnValue(is_done=verdict is Verdict.MET, xcom_value=outcome.to_dict())

    def trigger(self, namespace: str, deadline: float | None) -> JobTrigger:
        return JobTrigger(
            namespace=namespace,
            job_name=self.job_name,
            label_selector=self.label_selector,
            wait_for=self.wait_for.to_dict(),
            kubernetes_conn_id=self.conn(),
            deadline=deadline,
            diagnostics=self.diagnostics,
        )

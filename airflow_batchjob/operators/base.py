"""What every pattern's operator shares: connection, namespace, waiting (in the worker for
``defer_after`` seconds, then deferred), ``on_kill``; reading the outcome and cleaning up are in
``finishing.py``, running a wait in the worker in ``waiting.py``.

One waiting engine (``wait_for_job`` / ``wait_for_group``) runs in the worker or in the triggerer.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator

from airflow_batchjob import config
from airflow_batchjob.config import default_deferrable
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.items import check_items_param
from airflow_batchjob.core.kueue import settings as kueue_settings
from airflow_batchjob.core.outcome import JobOutcome, JobState
from airflow_batchjob.exceptions import (
    InvalidJobTemplateError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook, ClusterConnection
from airflow_batchjob.links import BatchViewLinks
from airflow_batchjob.operators.finishing import JobFinishing
from airflow_batchjob.operators.waiting import DEFER_AFTER, decided_event, run_wait
from airflow_batchjob.triggers.completion import completion_spec
from airflow_batchjob.triggers.job import JobTrigger, wait_for_job

__all__ = [  # what the operators and users import from here
    "DEFER_AFTER",
    "BaseBatchJobOperator",
    "decided_event",
    "default_deferrable",
    "items_at_parse",
    "run_wait",
]

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

DeletePolicy = Literal["never", "on_success", "always"]
ON_KILL_SECONDS = 30
_DELETE_POLICIES = ("never", "on_success", "always")
_PROPAGATION = ("Background", "Foreground", "Orphan")


def items_at_parse(items: Any) -> list[Any] | None:
    """An operator's ``items`` checked when the DAG is parsed (``core/items.check_items_param``):
    a literal list to check now, or None for a Jinja string or an XCom resolved at run time."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    try:
        return check_items_param(items, is_reference=isinstance(items, XComArg))
    except InvalidJobSpecError as e:
        raise InvalidJobTemplateError(str(e)) from e


def _seconds(value: dt.timedelta | float | None) -> float | None:
    return value.total_seconds() if isinstance(value, dt.timedelta) else value


class BaseBatchJobOperator(BatchViewLinks, ClusterConnection, JobFinishing, BaseOperator):
    """What every pattern's operator shares: connection, namespace, waiting, cleanup, failure logs.

    :param namespace: where the Job(s) run (templated); default: the connection's namespace, else
        ``default``.
    :param kubernetes_conn_id: the cncf.kubernetes connection to the cluster (default
        ``kubernetes_default``; cncf.kubernetes' name).
    :param deferrable: wait in the triggerer (after ``defer_after`` seconds in the worker). Default:
        ``[operators] default_deferrable`` where the deployment sets it, else True.
    :param diagnostics: while waiting, explain in the task log why fewer Pods run than requested
        (quota, backoff, unschedulable, image pull, config errors), on each change and at most
        every ``diagnose_interval`` seconds (default 30); and push a ``diagnostics`` XCom summary at
        the end. Default True. Both defaults come from ``[batchjob] diagnostics`` and
        ``diagnose_interval`` where the deployment sets them.
    :param diagnose_interval: seconds between two explanations of an unchanged situation (positive;
        default 30, or ``[batchjob] diagnose_interval``).
    :param pending_timeout: fail when a Pod stays unschedulable or cannot start its containers
        this long (off by default). The Job is then handled like a timeout: deleted only with
        ``delete_on_finish="always"``.
    :param get_logs: show the Pods' output in the task log while the Job runs (default True, or
        ``[batchjob] get_logs``), each line prefixed with its Pod and its item or index,
        replacement Pods included; in the worker and, deferred, from the trigger
        (``triggers/podlogs.py``).
    :param container_logs: whose logs: the main container (default), ``True`` for every container
        (init containers too), or a container name or list of names (cncf.kubernetes' name).
    :param max_log_streams: Pods of this task followed at once (default 5: more interleaved
        streams are unreadable); the others show their last ``log_tail_lines`` lines at the end.
        A process (a triggerer) follows at most 50 streams over all its tasks. Deployment default:
        ``[batchjob] max_log_streams``.
    :param max_log_lines: lines shown per container (default 1000, or ``[batchjob] max_log_lines``);
        the rest are counted.
    :param defer_after: with ``deferrable=True``, watch the Job in the worker this long (seconds or
        a ``timedelta``; default 5) and defer only if its outcome is still open then. A short Job
        finishes without a trigger round trip, and a Job already decided (adopted) never defers.
        0 defers at once.
    :param config_file: a kubeconfig file to use instead of the connection's (cncf.kubernetes' name;
        templated).
    :param in_cluster: use the Pod's service account (True) or not (False) instead of the
        connection's setting.
    :param cluster_context: the kubeconfig context to use (templated).
    :param delete_on_finish: ``never`` (default), ``on_success`` or ``always``: delete the Job(s) and
        their Pods once the task has read the outcome (cncf.kubernetes' ``on_finish_action`` and
        ``is_delete_operator_pod`` map onto it).
    :param propagation_policy: how a delete reaches the Pods: ``Background`` (default),
        ``Foreground`` or ``Orphan`` (cncf.kubernetes' ``on_kill_propagation_policy``).
    :param delete_on_kill: a task killed by a user (mark failed or success, clear) deletes the
        Job(s) it waits on (default True); False keeps them running (cncf.kubernetes'
        ``on_kill_action="keep_pod"``).
    :param wait_timeout: fail after this long (seconds or a ``timedelta``); the Job is deleted
        only with ``delete_on_finish="always"``.
    :param progress_interval: seconds between progress lines in the task log (default 10).
    :param log_tail_lines: lines of each failed Pod's log shown at the end (default 50).
    :param max_failed_pod_logs: failed Pods whose log tail is shown (default 5).
    :param log_pod_spec_on_failure: log a failed Job's Pod template (as YAML) with its failed Pods'
        logs (default False; cncf.kubernetes' name).
    :param queue_name: the Kueue LocalQueue of the Job(s) (cncf.kubernetes' name): they are
        labelled ``kueue.x-k8s.io/queue-name``, created suspended, and admitted (unsuspended) by
        Kueue only; the wait logs the Workload's queueing, admission and evictions
        (docs/guides/kueue.rst). A LocalQueue that does not exist fails before anything is created.
    :param local_queue: the same as ``queue_name`` (``QueueJobOperator``, whose ``queue_name``
        is the broker's queue, takes only this one).
    :param priority_class: the Kueue ``WorkloadPriorityClass`` of the Job(s) (label
        ``kueue.x-k8s.io/priority-class``); not the Pods' PriorityClass (``priority_class_name``).
    :param queue_timeout: fail when the Job is still not admitted by Kueue this long (seconds or a
        ``timedelta``) after it queued; default: it may queue as long as the wait lasts.
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool | None = None,
        delete_on_finish: DeletePolicy = "never",
        propagation_policy: str = "Background",
        delete_on_kill: bool = True,
        log_pod_spec_on_failure: bool = False,
        wait_timeout: dt.timedelta | float | None = None,
        progress_interval: float = 10.0,
        log_tail_lines: int = 50,
        max_failed_pod_logs: int = 5,
        diagnostics: bool | None = None,
        diagnose_interval: float | None = None,
        pending_timeout: dt.timedelta | float | None = None,
        defer_after: dt.timedelta | float = DEFER_AFTER,
        get_logs: bool | None = None,
        container_logs: bool | str | list[str] | None = None,
        max_log_streams: int | None = None,
        max_log_lines: int | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
        queue_name: str | None = None,
        local_queue: str | None = None,
        priority_class: str | None = None,
        queue_timeout: dt.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:  # Kueue (core/kueue.py): names checked as the label values they become
            self.kueue = kueue_settings(
                queue_name=queue_name,
                local_queue=local_queue,
                priority_class=priority_class,
                queue_timeout=_seconds(queue_timeout),
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {self.task_id}: {e}") from e
        self.config_file = config_file
        self.in_cluster = in_cluster
        self.cluster_context = cluster_context
        # Unset, these four and the two diagnostics settings take the deployment's [batchjob] values.
        get_logs = config.get("get_logs") if get_logs is None else get_logs
        max_log_streams = config.get("max_log_streams") if max_log_streams is None else max_log_streams
        max_log_lines = config.get("max_log_lines") if max_log_lines is None else max_log_lines
        diagnostics = config.get("diagnostics") if diagnostics is None else diagnostics
        diagnose_interval = (
            config.get("diagnose_interval") if diagnose_interval is None else diagnose_interval
        )
        if max_log_streams < 1 or max_log_lines < 0:
            raise InvalidJobTemplateError("max_log_streams must be >= 1 and max_log_lines >= 0")
        self.get_logs = get_logs
        self.container_logs = container_logs
        self.max_log_streams = max_log_streams
        self.max_log_lines = max_log_lines
        self._log_positions: dict[str, list[Any]] = {}
        self._seen_diagnostics: dict[str, Any] | None = None  # the worker's wait's, for the trigger
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
        self.delete_on_kill = bool(delete_on_kill)
        self.log_pod_spec_on_failure = bool(log_pod_spec_on_failure)
        # What cncf.kubernetes parameters that have no effect here (polling knobs) say once, at execute.
        self.peer_notes: tuple[str, ...] = ()
        self.wait_timeout = _seconds(wait_timeout)
        self.progress_interval = progress_interval
        self.log_tail_lines = log_tail_lines
        self.max_failed_pod_logs = max_failed_pod_logs
        # What on_kill deletes: the Job waited on (namespace, name, uid), or a group (namespace, selector).
        self._job_ref: tuple[str, str, str] | None = None
        self._group_ref: tuple[str, str] | None = None
        self._kill_hook: BatchJobHook | None = None

    def _render_nested_template_fields(
        self, content: Any, context: Context, jinja_env: jinja2.Environment, seen_oids: set[int]
    ) -> None:
        """Jinja inside kubernetes client models (``V1EnvVar``, ``V1Volume``, ...): every field.

        A string is rendered only if it holds Jinja markup, so a ``config.yaml`` inside a
        ConfigMap volume is not mistaken for a template file to load.
        """
        if not hasattr(content, "openapi_types"):
            super()._render_nested_template_fields(content, context, jinja_env, seen_oids)
            return

        def render(value: Any) -> Any:
            if isinstance(value, str):
                markup = "{{" in value or "{%" in value
                return self._render(jinja_env.from_string(value), context) if markup else value
            if isinstance(value, list):
                return [render(v) for v in value]
            if isinstance(value, dict):
                return {k: render(v) for k, v in value.items()}
            if hasattr(value, "openapi_types") and id(value) not in seen_oids:
                seen_oids.add(id(value))
                for attr in value.openapi_types:
                    setattr(value, attr, render(getattr(value, attr)))
            return value

        render(content)

    @property
    def hook(self) -> BatchJobHook:
        return BatchJobHook(self.conn())

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
            return wait_for_job(
                namespace=namespace,
                job_name=name,
                job_uid=uid,
                **self.wait_options(until),
                **self.kueue_wait(),
            )

        event = decided_event(job) if job is not None else None
        if event is None:
            event = self.wait_in_worker(watch, deadline)
        if event is None:
            self.defer(
                trigger=JobTrigger(
                    namespace=namespace,
                    job_name=name,
                    job_uid=uid,
                    propagation_policy=self.propagation_policy,
                    **self.trigger_options(deadline),
                    **self.kueue_wait(),
                    completion=completion_spec(self, context["ti"]),
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
            self._seen_diagnostics = event.get("diagnostics")
            return None
        event.pop("log_positions", None)
        return event

    def wait_options(self, deadline: float | None) -> dict[str, Any]:
        """How a wait in the worker runs: the same settings the triggers get, logging to the task log."""
        return {
            "kubernetes_conn_id": self.conn(),
            "deadline": deadline,
            "progress": self.log.info,
            "progress_interval": self.progress_interval,
            "diagnostics": self.diagnostics,
            "diagnose_interval": self.diagnose_interval,
            "pending_timeout": self.pending_timeout,
            "logs": self.log_settings(),
        }

    def kueue_wait(self) -> dict[str, Any]:
        """A single Job's wait follows its Kueue Workload when the Job has a queue."""
        return {"kueue": self.kueue.to_dict()} if self.kueue.enabled else {}

    def trigger_options(self, deadline: float | None) -> dict[str, Any]:
        """What a deferred wait gets: the worker wait's settings (one source for both), and
        deletion of what it waits on when the user kills the task."""
        options = {k: v for k, v in self.wait_options(deadline).items() if k != "progress"}
        if self._seen_diagnostics:
            options["seen_diagnostics"] = self._seen_diagnostics
        return {**options, "delete_on_kill": self.delete_on_kill}

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

    def completes_in_triggerer(self, event: dict[str, Any]) -> bool:
        """Whether the trigger ends the task on this event (``triggers/completion.py``): a Job that
        succeeded. Anything else resumes on a worker, which raises as usual."""
        job = event.get("job")
        if event.get("status") != "met" or not job:
            return False
        return JobOutcome.from_dict(job).state is JobState.SUCCEEDED

    def log_peer_notes(self) -> None:
        """Say once, at execute, which cncf.kubernetes parameters given have no effect here."""
        for note in self.peer_notes:
            self.log.info("cncf.kubernetes parameter %s", note)

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

    def on_kill(self) -> None:
        """The task was killed while waiting in the worker: delete its Job(s) and their Pods.

        Airflow calls this from its SIGTERM handler, which ``run_wait`` runs on the wait's event
        loop (or, before the wait, the main thread runs it between two bytecodes). The delete
        runs on its own thread and is waited for at most ``ON_KILL_SECONDS``, so a stuck call can
        never keep the killed task alive.
        """
        if not self.delete_on_kill:
            if self._group_ref or self._job_ref:
                self.log.info("the task was killed: its Jobs keep running (delete_on_kill=False)")
            return
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

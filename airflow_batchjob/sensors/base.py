"""What both sensors share: poke once, then defer to a watch-based trigger, then judge its event."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_batchjob._compat import AirflowSensorTimeout
from airflow_batchjob.config import default_deferrable
from airflow_batchjob.exceptions import BatchJobError, JobFailedSensorError
from airflow_batchjob.hooks.batchjob import BatchJobHook, ClusterConnection
from airflow_batchjob.links import WatchedJobsView
from airflow_batchjob.triggers.base import WaitTrigger
from airflow_batchjob.triggers.completion import completion_spec

if TYPE_CHECKING:
    from airflow.sdk import Context


class BaseJobWatchSensor(WatchedJobsView, ClusterConnection, BaseSensorOperator):
    """Deferrable by default: one poke (already met? done), else one shared watch in the triggerer.

    Subclasses give ``trigger(namespace, deadline)`` and the event key holding their XCom value.
    Sensor failures are ``JobFailedSensorError`` (an ``AirflowFailException``), so ``soft_fail``
    behaves the same in poke and deferrable mode.

    :param namespace: where the Jobs are; default: the connection's namespace, else ``default``.
    :param kubernetes_conn_id: the cncf.kubernetes connection to the cluster (default
        ``kubernetes_default``).
    :param deferrable: poke once, then wait in the triggerer (one shared watch); False pokes every
        ``poke_interval`` instead. Default: ``[operators] default_deferrable`` where the deployment
        sets it, else True.
    :param config_file: a kubeconfig file to use instead of the connection's (cncf.kubernetes' name).
    :param in_cluster: use the Pod's service account (True) or not (False) instead of the
        connection's setting.
    :param cluster_context: the kubeconfig context to use.
    """

    event_value_key = "job"

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.config_file = config_file
        self.in_cluster = in_cluster
        self.cluster_context = cluster_context

    def _namespace(self) -> str:
        return self.namespace or BatchJobHook(self.conn()).default_namespace()

    def trigger(self, namespace: str, deadline: float | None) -> WaitTrigger:
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if isinstance(first, PokeReturnValue) and first.is_done:
            return first.xcom_value
        deadline = time.time() + self.timeout if self.timeout else None
        trigger = self.trigger(self._namespace(), deadline)
        trigger.completion = completion_spec(self, context["ti"])  # met: the sensor ends there
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def completes_in_triggerer(self, event: dict[str, Any]) -> bool:
        """A goal met ends the sensor in the triggerer (``triggers/completion.py``)."""
        return event.get("status") == "met"

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if event is None:  # resumed although the trigger never fired (its process died): start over
            self.log.warning("resumed without a trigger event: waiting again")
            return self.execute(context)
        status, message = event.get("status"), event.get("message", "")
        if status == "met":
            self.log.info("%s", message)
            return event.get(self.event_value_key)
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        if status == "failed":
            raise JobFailedSensorError(message, event.get(self.event_value_key))
        raise BatchJobError(f"{type(self).__name__}: {message}")

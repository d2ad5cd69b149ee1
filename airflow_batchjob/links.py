"""Extra links on every operator and sensor: "Batch view" and, when configured, "Kubernetes Jobs".

Airflow 3 computes a link in the worker (``get_link``) and stores it as an XCom that the
api-server shows; it does so when the task defers or ends. So that the Batch view is one click
away while the task runs, ``pre_execute`` stores the link at once, with the *view reference*
(``_batchjob_view`` XCom: the connection, namespace and selector of the task's Jobs) that the
api-server plugin (``plugins/``) reads to find them. The Batch view link goes to the plugin's own
page, which every Airflow 3 serves (a plugin's FastAPI app); Airflow 3.1+ also shows it as a tab
of the task instance page. The external link comes from ``[batchjob] job_link_template``
(off by default: it is then empty and Airflow shows no button).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_batchjob import config
from airflow_batchjob.core import naming
from airflow_batchjob.core.batchview import job_link

if TYPE_CHECKING:
    from airflow.sdk import Context

URL_PREFIX = "/batchjob"  # where the api-server mounts the plugin's app
VIEW_XCOM = "_batchjob_view"


def view_path(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The Batch view page of one task instance, below the api-server's root."""
    q = urllib.parse.quote
    path = f"{URL_PREFIX}/dags/{q(dag_id, safe='')}/runs/{q(run_id, safe='')}/tasks/{q(task_id, safe='')}"
    return path + (f"?map_index={map_index}" if map_index is not None and map_index >= 0 else "")


def view_url(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The page's address: under ``[api] base_url`` where the deployment sets one, else relative
    to the UI's own address (which is where a user clicks it)."""
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return base + view_path(dag_id, run_id, task_id, map_index)


def _map_index(ti_key: Any) -> int:
    value = getattr(ti_key, "map_index", -1)
    return -1 if value is None else int(value)


class BatchViewLink(BaseOperatorLink):
    """The Batch view of this task instance: its Jobs, items or indexes, live."""

    name = "Batch view"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return view_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id, _map_index(ti_key))


class JobLink(BaseOperatorLink):
    """``[batchjob] job_link_template`` filled in for this task's Jobs (a dashboard, Lens, a log
    search); "" (no button) when the template is unset."""

    name = "Kubernetes Jobs"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        template = str(config.get("job_link_template") or "")
        if not template:
            return ""
        ref = getattr(operator, "_batch_view_ref", None) or {}
        selector = ref.get("selector") or naming.task_selector(
            ti_key.dag_id, ti_key.task_id, ti_key.run_id, _map_index(ti_key)
        )
        job = getattr(operator, "_job_ref", None)
        name = job[1] if job else ref.get("name") or ""
        return job_link(template, str(ref.get("namespace") or getattr(operator, "namespace", "") or ""),
                        str(name), str(selector))  # fmt: skip


class BatchViewLinks:
    """Mixed into the operators' and sensors' base classes: the two links, and the view
    reference stored before ``execute``. Subclasses say where their Jobs are
    (:meth:`batch_view_scope`)."""

    operator_extra_links: Collection[BaseOperatorLink] = (BatchViewLink(), JobLink())

    def view_namespace(self) -> str:
        """The namespace as the task resolves it (the connection's default where none is given)."""
        for method in ("resolve_namespace", "_namespace"):
            resolve = getattr(self, method, None)
            if callable(resolve):
                return str(resolve())
        return str(getattr(self, "namespace", None) or self.hook.default_namespace())  # type: ignore[attr-defined]

    def batch_view_scope(self, context: Context) -> dict[str, Any]:
        """``{"namespace", "selector"}`` (a label selector) or ``{"namespace", "names"}``, and
        ``name`` for the external link. Here: the Jobs this task instance creates, which every
        pattern labels with the task instance (``core/naming.task_labels``)."""
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        return {
            "namespace": self.view_namespace(),
            "selector": naming.task_selector(ti.dag_id, ti.task_id, ti.run_id, map_index),
            "name": getattr(self, "group_name", None)
            or naming.job_name(ti.dag_id, ti.task_id, ti.run_id, map_index),
        }

    def pre_execute(self, context: Context) -> None:
        ti = context["ti"]
        ref: dict[str, Any] = {"conn": self.conn(), **self.batch_view_scope(context)}  # type: ignore[attr-defined]
        ref["pattern"] = type(self).__name__
        self._batch_view_ref = ref
        ti.xcom_push(key=VIEW_XCOM, value=ref)
        # The link now, not only when the task defers or ends (Airflow's own push overwrites it).
        link = BatchViewLink()
        ti.xcom_push(key=link.xcom_key, value=link.get_link(self, ti_key=ti))
        super().pre_execute(context)  # type: ignore[misc]


class WatchedJobsView(BatchViewLinks):
    """Sensors and lifecycle tasks: the view shows the Jobs they watch or act on (their
    ``label_selector``, or the Job ``job_name``)."""

    def batch_view_scope(self, context: Context) -> dict[str, Any]:
        selector = getattr(self, "label_selector", None)
        name = getattr(self, "job_name", None)
        scope: dict[str, Any] = {"namespace": self.view_namespace()}
        if selector:
            return {**scope, "selector": str(selector), "name": str(name or "")}
        return {**scope, "names": [str(name)], "name": str(name)}

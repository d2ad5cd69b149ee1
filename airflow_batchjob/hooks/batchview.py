"""The Batch view's Kubernetes reads: two lists per refresh, whatever the batch's size.

``resourceVersion=0`` lets the apiserver answer from its watch cache (no etcd read; the answer
may be a moment old, which a view refreshed every few seconds does not mind). Pods that
succeeded are left out by a field selector: their Jobs' status counts them, and at 10,000
indexes they are nearly all of them; what is left (running, pending, failed) is bounded by the
parallelism and the failures. A log tail is read only when a user opens a failed cell.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow_batchjob.hooks.batchjob import BatchJobHook, _json

Obj = dict[str, Any]
UNFINISHED = "status.phase!=Succeeded"

_hooks: dict[str, BatchJobHook] = {}
_lock = threading.Lock()


def view_hook(conn: str) -> BatchJobHook:
    """One hook (one connection pool) per connection for the api-server's lifetime."""
    with _lock:
        if conn not in _hooks:
            _hooks[conn] = BatchJobHook(conn)
        return _hooks[conn]


class BatchViewReader:
    """What one refresh of the view reads.

    :param conn: the task's connection (a ``conn_ref``: id plus its cluster overrides).
    """

    def __init__(self, conn: str) -> None:
        self.hook = view_hook(conn)
        self.calls = 0  # API requests made by this reader (the view reports them)

    def jobs(self, namespace: str, label_selector: str | None, names: list[str] | None = None) -> list[Obj]:
        """The Jobs a label selector matches, or the ones named (a field selector per name is no
        list; names come from sensors and lifecycle tasks, one or a few)."""
        batch = self.hook.batch
        if label_selector is not None:
            self.calls += 1
            resp = batch.list_namespaced_job(
                namespace, label_selector=label_selector, resource_version="0", _preload_content=False
            )
            return list(_json(resp)["items"])
        out = []
        for name in names or []:
            self.calls += 1
            resp = batch.list_namespaced_job(
                namespace,
                field_selector=f"metadata.name={name}",
                resource_version="0",
                _preload_content=False,
            )
            out += list(_json(resp)["items"])
        return out

    def unfinished_pods(self, namespace: str, label_selector: str | None, job_names: list[str]) -> list[Obj]:
        """The Pods of these Jobs that have not succeeded (running, pending, failed)."""
        if label_selector is None:
            if not job_names:
                return []
            label_selector = f"batch.kubernetes.io/job-name in ({','.join(job_names)})"
        self.calls += 1
        resp = self.hook.core.list_namespaced_pod(
            namespace,
            label_selector=label_selector,
            field_selector=UNFINISHED,
            resource_version="0",
            _preload_content=False,
        )
        return list(_json(resp)["items"])

    def pod(self, namespace: str, name: str) -> Obj | None:
        self.calls += 1
        pods = self.hook.core.list_namespaced_pod(
            namespace, field_selector=f"metadata.name={name}", _preload_content=False
        )
        items = list(_json(pods)["items"])
        return items[0] if items else None

    def log_tail(self, namespace: str, pod: str, container: str | None, lines: int) -> str:
        self.calls += 1
        return self.hook.pod_log_tail(namespace, pod, container, lines)

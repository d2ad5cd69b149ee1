"""The history of ``benchmarks/namespace_history.py``: namespaces of finished Jobs, and new Jobs to wait on.

Jobs look like a ``JobGroupOperator``'s (labels on the Job and its Pods, item annotations); the
history's are written directly, finished (see :func:`populate`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common as c

from localcluster import kwok

DAY = 1000  # Jobs of one "day" of the group
MANAGED_BY = "batchjob.local/history"  # the history's Jobs: not the Job controller's (see populate)
PREFIX = "batchjob.airflow.io"


def job_body(name: str, run: str, item: int, hold: str) -> dict[str, Any]:
    """A Job as ``JobGroupOperator`` makes them (labels on Job and Pods, item annotations)."""
    labels = {
        f"{PREFIX}/dag": "daily",
        f"{PREFIX}/task": "fanout",
        f"{PREFIX}/run": run,
        f"{PREFIX}/try": "1",
        f"{PREFIX}/group": f"daily-fanout-{run}",
        f"{PREFIX}/item": str(item),
    }
    annotations = {f"{PREFIX}/item-index": str(item), f"{PREFIX}/item-key": f"item-{item}"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": {**annotations, kwok.DELAY_ANNOTATION: hold}},
                "spec": {
                    "restartPolicy": "Never",
                    **kwok.pod_placement(),
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", "process-item"],
                            "env": [{"name": "BATCHJOB_ITEM", "value": str(item)}],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                },
            },
        },
    }


def batch_api(st: c.State) -> Any:
    from kubernetes import client

    return client.BatchV1Api(c.sync_api(st))


def unfinished(batch: Any, ns: str, selector: str = "") -> int:
    """Jobs not yet succeeded (at most one page: 0 means all have)."""
    r = batch.list_namespaced_job(
        ns, label_selector=selector, field_selector="status.successful!=1", limit=500
    )
    return len(r.items)


def create_jobs(st: c.State, ns: str, bodies: list[dict[str, Any]], workers: int = 16) -> float:
    from kubernetes.client.rest import ApiException

    batch = batch_api(st)

    def create(body: dict[str, Any]) -> None:
        for attempt in range(20):
            try:
                batch.create_namespaced_job(ns, body)
                return
            except ApiException as e:
                if e.status == 409:
                    return
                if e.status not in (429, 500, 503, 504) or attempt == 19:
                    raise
                time.sleep(1)

    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, bodies))
    return time.monotonic() - t0


def ensure_namespace(st: c.State, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(c.sync_api(st))
    try:
        core.create_namespace({"metadata": {"name": name}})
    except ApiException as e:
        if e.status != 409:
            raise
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _finished_now() -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    done = {"status": "True", "reason": "CompletionsReached", "lastProbeTime": now, "lastTransitionTime": now,
            "message": "Reached expected number of succeeded pods"}  # fmt: skip
    return {
        "startTime": now,
        "completionTime": now,
        "succeeded": 1,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": [{"type": "SuccessCriteriaMet", **done}, {"type": "Complete", **done}],
    }


def history_job(st: c.State, ns: str, i: int, with_pod: bool) -> None:
    """One finished Job of the history and its Pod, written directly (see ``populate``)."""
    from kubernetes import client

    api = getattr(_local, "api", None) or c.sync_api(st)  # one client (connection pool) per thread
    _local.api = api
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = f"h-{i // DAY:03d}-{i % DAY:04d}"
    body = job_body(name, f"day-{i // DAY:03d}", i % DAY, "0s")
    body["spec"]["managedBy"] = MANAGED_BY
    job = json.loads(batch.create_namespaced_job(ns, body, _preload_content=False).data)
    batch.patch_namespaced_job_status(name, ns, {"status": _finished_now()}, _preload_content=False)
    uid = job["metadata"]["uid"]
    template = body["spec"]["template"]
    labels = {**template["metadata"]["labels"], "batch.kubernetes.io/controller-uid": uid,
              "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name}  # fmt: skip
    if not with_pod:
        return
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True,
             "blockOwnerDeletion": True}  # fmt: skip
    pod = {
        "metadata": {
            "name": f"{name}-{uid[:5]}",
            "labels": labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [owner],
        },
        "spec": {**template["spec"], "nodeName": f"{kwok.NODE_PREFIX}{i % 2}"},
    }
    core.create_namespaced_pod(ns, pod, _preload_content=False)  # kwok runs it: Running, then Succeeded


def populate(st: c.State, history: int, pods_max: int) -> dict[str, Any]:
    """``hist-<H>`` with H finished Jobs and their Pods, created now or found from an earlier run.

    Through the Job controller, this machine finished 1 to 2 Jobs/s (50,000 would take hours), so
    the history is written directly: each Job is created with ``spec.managedBy`` (the Job
    controller leaves it alone), its status set to what the controller writes for a Job whose one
    Pod succeeded, and its Pod created on a kwok Node with the labels and owner the controller
    gives, where kwok runs it to Succeeded. The waited Jobs are ordinary, controller-run Jobs.
    """
    from kubernetes import client

    ns = f"hist-{history}"
    pods = history <= pods_max
    ensure_namespace(st, ns)
    batch = batch_api(st)
    have = 0
    cont = ""
    while True:  # how many are there already (from an earlier run)
        page = json.loads(
            batch.list_namespaced_job(ns, limit=5000, _continue=cont or None, _preload_content=False).data
        )
        have += sum(1 for j in page["items"] if j["metadata"]["name"].startswith("h-"))
        cont = page["metadata"].get("continue") or ""
        if not cont:
            break
    info: dict[str, Any] = {"namespace": ns, "jobs": history, "pods": pods, "found": have}
    if have < history:
        print(f"  writing {history - have} finished Jobs and Pods in {ns} ...", file=sys.stderr)
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: _retrying(history_job, st, ns, i, pods), range(have, history)))
        info["create_seconds"] = time.monotonic() - t0
    t0 = time.monotonic()
    core = client.CoreV1Api(c.sync_api(st))
    while core.list_namespaced_pod(ns, field_selector="status.phase!=Succeeded", limit=1).items:
        time.sleep(5)
    info["pods_finish_wait_seconds"] = time.monotonic() - t0
    # What one unpaginated LIST of the namespace's Jobs, and of its Job Pods, weighs.
    info["listed_bytes_all_jobs"] = len(batch.list_namespaced_job(ns, _preload_content=False).data)
    pods = core.list_namespaced_pod(
        ns, label_selector="batch.kubernetes.io/controller-uid", _preload_content=False
    )
    info["listed_bytes_all_job_pods"] = len(pods.data)
    return info


def _retrying(fn: Any, *args: Any) -> None:
    from kubernetes.client.rest import ApiException

    for attempt in range(20):
        try:
            fn(*args)
            return
        except ApiException as e:
            if e.status == 409:  # written by an earlier, interrupted run
                return
            if e.status not in (429, 500, 503, 504) or attempt == 19:
                raise
            time.sleep(1)


_local = threading.local()

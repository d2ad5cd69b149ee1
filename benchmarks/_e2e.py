"""What ``benchmarks/end_to_end.py`` reads besides Airflow's database: every Job of its namespace as
a watch sees it, and the task logs (worker starts, time in workers, endings in the triggerer)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from airflow_batchjob.core import naming
from benchmarks import _common as c

DECIDED = ("SuccessCriteriaMet", "Complete", "FailureTarget", "Failed")
PRE_EXECUTE = "::group::Pre Execute"  # the first line a task process writes: one per worker start
IN_TRIGGERER = "finished in the triggerer"  # triggers/completion.py, in the trigger's log


def when(stamp: str | None) -> float:
    """An RFC 3339 / ISO time (UTC when it has no offset) as epoch seconds; NaN for none."""
    if not stamp:
        return float("nan")
    t = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


class JobWatch:
    """Watches the namespace's Jobs from the start, so nothing is lost to a deletion: each Job as
    last seen, when it was first seen (this machine's clock, as Airflow's dates are) and when a
    deciding condition (``DECIDED``) first showed, to the millisecond (a condition's own
    ``lastTransitionTime`` has whole seconds only)."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.batch = client.BatchV1Api(api_client)
        self.namespace = namespace
        self.jobs: dict[str, dict[str, Any]] = {}
        self.first_seen: dict[str, float] = {}
        self.decided: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="job-watch", daemon=True)

    def __enter__(self) -> JobWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=15)

    def _seen(self, job: dict[str, Any], now: float) -> None:
        uid = job["metadata"]["uid"]
        with self.lock:
            self.jobs[uid] = job
            self.first_seen.setdefault(uid, now)
            conds = (job.get("status") or {}).get("conditions") or []
            if uid not in self.decided and any(
                c.get("type") in DECIDED and c.get("status") == "True" for c in conds
            ):
                self.decided[uid] = now

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        rv = ""
        while not self.stopped.is_set():
            try:
                if not rv:
                    listed = self.batch.list_namespaced_job(self.namespace, _preload_content=False)
                    body = json.loads(listed.data)
                    for job in body["items"]:
                        self._seen(job, time.time())
                    rv = body["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.batch.list_namespaced_job,
                    self.namespace,
                    resource_version=rv,
                    timeout_seconds=10,  # short, so that the thread notices the end
                    allow_watch_bookmarks=True,
                    deserialize=False,  # plain dicts: no model objects to build per event
                )
                for event in stream:  # an ERROR event (410 Gone: list again) raises ApiException
                    raw = event["object"]
                    rv = raw["metadata"].get("resourceVersion", rv)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._seen(raw, time.time())
            except ApiException as e:
                if e.status == 410:
                    rv = ""
                else:
                    time.sleep(1)
            except Exception:  # a dropped connection: resume from the last version
                time.sleep(1)

    def list_now(self) -> None:
        """Fold in a fresh list of the namespace's Jobs (their final states)."""
        listed = self.batch.list_namespaced_job(self.namespace, _preload_content=False)
        for job in json.loads(listed.data)["items"]:
            self._seen(job, time.time())


def job_key(job: dict[str, Any]) -> tuple[str, str, int] | None:
    """``(dag_id, run_id, map_index)`` of the task that created ``job``: ours writes the exact ids
    in annotations; the peer labels its Pod template with them."""
    meta = job["metadata"]
    ann = meta.get("annotations") or {}
    if naming.ANNOTATION_DAG_ID in ann:
        return (
            ann[naming.ANNOTATION_DAG_ID],
            ann[naming.ANNOTATION_RUN_ID],
            int(ann.get(naming.LABEL_MAP_INDEX, -1)),
        )
    labels = ((job.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    if "dag_id" in labels and "run_id" in labels:
        return labels["dag_id"], labels["run_id"], int(labels.get("map_index", -1))
    return None


def job_times(job: dict[str, Any], decided_seen: float | None) -> dict[str, Any]:
    """The Job's own run (``startTime`` to ``completionTime``) and its decision: when the watch
    saw the deciding condition, else that condition's ``lastTransitionTime``."""
    status = job.get("status") or {}
    conds = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    deciding = sorted((when(c.get("lastTransitionTime")), c["type"]) for c in conds if c["type"] in DECIDED)
    start, end = when(status.get("startTime")), when(status.get("completionTime"))
    return {
        "name": job["metadata"]["name"],
        "created": when(job["metadata"].get("creationTimestamp")),
        "start": start,
        "completion": end,
        "run_s": end - start,
        "state": "succeeded" if status.get("succeeded") else "failed" if status.get("failed") else "open",
        "decided_by": deciding[0][1] if deciding else None,
        "decided": decided_seen if decided_seen is not None else (deciding[0][0] if deciding else None),
        "decided_source": "watch" if decided_seen is not None else "condition" if deciding else None,
    }


def _events(path: Path) -> list[tuple[float, str]]:
    """``(time, message)`` of each JSON line of a task log (other lines have no time)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("timestamp"):
            out.append((when(rec["timestamp"]), str(rec.get("event", ""))))
    return out


def task_logs(logs: Path, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    """Worker starts (``Pre Execute`` in the attempt logs, never the trigger's), seconds in
    workers (each start to its last line), whether it deferred, and whether it ended in the
    triggerer (``triggers/completion.py`` logs that in the trigger's log)."""
    where = logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        where = where / f"map_index={map_index}"
    starts, worker_s, parse_s, deferred, done = 0, 0.0, 0.0, False, []
    for path in sorted(where.glob("attempt=*.log*")):
        if ".trigger." in path.name:
            done += [t for t, msg in _events(path) if msg.startswith(IN_TRIGGERER)]
            continue
        session: list[float] = []
        parsing = math.nan
        for t, msg in [*_events(path), (math.nan, PRE_EXECUTE)]:  # a sentinel closes the last
            if msg == PRE_EXECUTE:
                if session:
                    worker_s += session[-1] - session[0]
                starts += 1
                session = [t]
            else:
                session.append(t)
            deferred |= msg.startswith("Pausing task as DEFERRED")
            if msg.startswith("Filling up the DagBag"):  # the worker imports the DAG file
                parsing = t
            elif msg.startswith("Worker startup parse complete"):
                parse_s += t - parsing
        starts -= 1  # the sentinel
    return {
        "worker_starts": starts,
        "worker_s": worker_s,
        "parse_s": parse_s,
        "deferred": deferred,
        "in_triggerer": bool(done),
        "triggerer_finished": min(done, default=math.nan),  # when the trigger said it ended the task
    }


class LoadSampler(threading.Thread):
    """The machine's 1-minute load average every 5 s while the benchmark runs."""

    def __init__(self) -> None:
        super().__init__(name="load", daemon=True)
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(5):
            self.samples.append(os.getloadavg()[0])


def med(recs: list[dict[str, Any]], key: str) -> float:
    return c.median([v for r in recs if not math.isnan(v := float(r[key]))])


def pct(recs: list[dict[str, Any]], key: str, p: float) -> float:
    return c.percentile([v for r in recs if not math.isnan(v := float(r[key]))], p)


def f1(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"

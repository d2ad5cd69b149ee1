"""The Batch view's picture of one task instance's batch, from what Kubernetes and the task say.

Pure: the api-server plugin (``plugins/``) reads the task's Jobs and unfinished Pods (one list
of each per refresh) and its recorded XCom, and hands them here. A *cell* is one unit of the
batch: a Job of a group (an item), or an index of an Indexed Job, or the Job of a plain pattern.
Its state is one of :data:`STATES`; ``retried`` is a cell whose earlier Pods failed and that is
running (or waiting) again.
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow_batchjob.core.group import ANNOTATION_ITEM_INDEX
from airflow_batchjob.core.naming import ANNOTATION_ITEM_KEY
from airflow_batchjob.core.outcome import JobState, outcome_from_job

STATES = ("pending", "running", "retried", "succeeded", "failed", "skipped")
RESULT_CHARS = 200  # a cell's result as shown: longer ones are cut (the XCom keeps them whole)
MESSAGE_CHARS = 500
LINK_FIELDS = ("namespace", "name", "selector")
_JOB_LABEL = "batch.kubernetes.io/job-name"
_INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def check_link_template(template: str) -> None:
    """``[batchjob] job_link_template``: only ``{namespace}``, ``{name}``, ``{selector}``."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"[batchjob] job_link_template {template!r}: {e}") from e
    unknown = fields - set(LINK_FIELDS)
    if unknown:
        raise ValueError(
            f"[batchjob] job_link_template {template!r}: unknown placeholder(s) {sorted(unknown)}; "
            f"use {{namespace}}, {{name}} and {{selector}}"
        )


def job_link(template: str, namespace: str, name: str, selector: str) -> str:
    """The external link: the template with its placeholders URL-encoded ("" when off)."""
    if not template:
        return ""
    check_link_template(template)
    values = {"namespace": namespace, "name": name, "selector": selector}
    return template.format(**{k: urllib.parse.quote(v, safe="") for k, v in values.items()})


def _cut(text: Any, limit: int) -> str | None:
    if text is None:
        return None
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _seconds(start: str | None, end: str | None, now: float) -> float | None:
    t0 = _ts(start)
    if t0 is None:
        return None
    t1 = _ts(end) if end else now
    return None if t1 is None else round(max(0.0, t1 - t0), 1)


def pod_facts(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A Pod's name, phase, start, and (terminated) exit code and reason of its first container
    that failed (the main one, normally)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    facts: dict[str, Any] = {
        "pod": meta.get("name"),
        "phase": status.get("phase"),
        "created": meta.get("creationTimestamp") or "",
        "exit_code": None,
        "reason": status.get("reason"),
        "message": status.get("message"),
    }
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term and term.get("exitCode"):
            facts.update(exit_code=term.get("exitCode"), reason=term.get("reason") or facts["reason"])
            facts["message"] = term.get("message") or facts["message"]
            break
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and facts["reason"] is None:
            facts.update(reason=waiting.get("reason"), message=waiting.get("message"))
    return facts


def _latest(facts: list[dict[str, Any]], phase: str | None = None) -> dict[str, Any] | None:
    chosen = [f for f in facts if phase is None or f["phase"] == phase]
    return max(chosen, key=lambda f: f["created"]) if chosen else None


def _cell(key: str, label: str, state: str, **fields: Any) -> dict[str, Any]:
    cell = {"key": key, "label": label, "state": state}
    cell.update({k: v for k, v in fields.items() if v is not None})
    return cell


def _job_cell(job: Mapping[str, Any], pods: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """One Job as one cell (an item of a group, or a plain Job)."""
    o = outcome_from_job(job)
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    index = annotations.get(ANNOTATION_ITEM_INDEX)
    state = {
        JobState.SUCCEEDED: "succeeded",
        JobState.FAILED: "failed",
        JobState.RUNNING: "running",
    }.get(o.state, "pending")
    if state in ("running", "pending") and o.failed:
        state = "retried"
    failed_pod = _latest(pods, "Failed")
    live_pod = _latest([p for p in pods if p["phase"] != "Failed"])
    end = o.completion_time or (o.condition_time if o.done else None)
    return _cell(
        index if index is not None else o.name,
        annotations.get(ANNOTATION_ITEM_KEY) or o.name,
        state,
        index=int(index) if index is not None and index.isdigit() else None,
        job=o.name,
        pod=(failed_pod if state == "failed" and failed_pod else live_pod or failed_pod or {}).get("pod"),
        seconds=_seconds(o.start_time, end, now),
        failures=o.failed or None,
        reason=o.reason or (failed_pod or {}).get("reason") if state in ("failed", "retried") else o.reason,
        message=_cut(o.message or (failed_pod or {}).get("message"), MESSAGE_CHARS),
        exit_code=(failed_pod or {}).get("exit_code"),
    )


def _index_cells(job: Mapping[str, Any], pods: list[dict[str, Any]], now: float, prefix: str) -> list[Any]:
    """An Indexed Job as one cell per completion index (10,000 of them stay one list call)."""
    o = outcome_from_job(job)
    by_index: dict[int, list[dict[str, Any]]] = {}
    for p in pods:
        raw = p.get("index")
        if raw is not None and str(raw).isdigit():
            by_index.setdefault(int(raw), []).append(p)
    done, failed = set(o.completed_indexes), set(o.failed_indexes)
    cells = []
    for i in range(int(o.completions or 0)):
        mine = by_index.get(i, [])
        failed_pod, live_pod = _latest(mine, "Failed"), _latest([p for p in mine if p["phase"] != "Failed"])
        if i in done:
            state = "succeeded"
        elif i in failed or (o.state is JobState.FAILED and not live_pod):
            state = "failed" if i in failed or failed_pod else "pending"
        elif failed_pod:
            state = "retried"
        else:
            state = "running" if live_pod and live_pod["phase"] == "Running" else "pending"
        pod = failed_pod if state == "failed" else live_pod or failed_pod
        cells.append(
            _cell(
                f"{prefix}{i}",
                f"index {i}",
                state,
                index=i,
                pod=(pod or {}).get("pod"),
                exit_code=(failed_pod or {}).get("exit_code") if state in ("failed", "retried") else None,
                reason=(failed_pod or {}).get("reason") if state in ("failed", "retried") else None,
                message=_cut((failed_pod or {}).get("message"), MESSAGE_CHARS) if failed_pod else None,
            )
        )
    return cells


def live_cells(
    jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], now: float
) -> list[dict[str, Any]]:
    """The cells of the Jobs found, with the facts of their unfinished Pods (``pods``: every Pod of
    these Jobs that has not succeeded; succeeded ones are counted by their Job's status)."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        job = labels.get(_JOB_LABEL) or labels.get("job-name")
        if job:
            facts = pod_facts(pod)
            facts["index"] = annotations.get(_INDEX_KEY) or labels.get(_INDEX_KEY)
            by_job.setdefault(job, []).append(facts)
    ordered = sorted(
        jobs, key=lambda j: (int(((j.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_ITEM_INDEX, "0") or 0), (j.get("metadata") or {}).get("name", ""))
    )  # fmt: skip
    indexed = [j for j in ordered if (j.get("spec") or {}).get("completionMode") == "Indexed"]
    cells: list[dict[str, Any]] = []
    for job in ordered:
        name = (job.get("metadata") or {}).get("name", "")
        if job in indexed:
            prefix = f"{name}:" if len(indexed) > 1 else ""
            cells += _index_cells(job, by_job.get(name, []), now, prefix)
        else:
            cells.append(_job_cell(job, by_job.get(name, []), now))
    return cells


def recorded_cells(recorded: Any) -> list[dict[str, Any]]:
    """Cells from what the task returned (its XCom), for when its Jobs are gone: a group's
    per-item table (rows with ``state``), or a list of per-index results."""
    if not isinstance(recorded, list):
        return []
    cells = []
    for i, row in enumerate(recorded):
        if isinstance(row, Mapping) and "state" in row:
            index = row.get("index", i)
            state = str(row.get("state"))
            cells.append(
                _cell(
                    str(index),
                    str(row.get("item") or row.get("job") or f"item {index}"),
                    state if state in STATES else "pending",
                    index=index if isinstance(index, int) else None,
                    job=row.get("job"),
                    failures=row.get("failed") or None,
                    reason=row.get("reason"),
                    message=_cut(row.get("message"), MESSAGE_CHARS),
                    result=_cut(row.get("result"), RESULT_CHARS) if row.get("result") is not None else None,
                )
            )
        else:
            cells.append(_cell(str(i), f"index {i}", "succeeded", index=i, result=_cut(row, RESULT_CHARS)))
    return cells


def merge_results(cells: list[dict[str, Any]], recorded: list[dict[str, Any]]) -> None:
    """Give live cells the recorded results and final states (skipped) where the task wrote them."""
    by_key = {c["key"]: c for c in recorded}
    for cell in cells:
        rec = by_key.get(cell["key"])
        if rec is None:
            continue
        if "result" in rec:
            cell["result"] = rec["result"]
        if rec["state"] == "skipped":
            cell["state"] = "skipped"


def snapshot(cells: list[dict[str, Any]], source: str, now: float, finished: bool = False) -> dict[str, Any]:
    """What the page gets: the cells with their counts and progress."""
    counts = dict.fromkeys(STATES, 0)
    for cell in cells:
        counts[cell["state"]] = counts.get(cell["state"], 0) + 1
    total = len(cells)
    done = counts["succeeded"] + counts["failed"] + counts["skipped"]
    return {
        "source": source,
        "finished": finished,
        "as_of": datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="seconds"),
        "total": total,
        "done": done,
        "progress": round(done / total, 4) if total else 0.0,
        "counts": counts,
        "cells": cells,
    }

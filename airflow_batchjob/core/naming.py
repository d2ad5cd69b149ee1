"""Deterministic names, labels and selectors for the Jobs of an Airflow task instance.

Names are derived (never random) so that a retried or re-deferred task finds the Job it already
created instead of starting a second one, and so that a task instance's Jobs can be listed by label.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

LABEL_PREFIX = "batchjob.airflow.io"

LABEL_DAG = f"{LABEL_PREFIX}/dag"
LABEL_TASK = f"{LABEL_PREFIX}/task"
LABEL_RUN = f"{LABEL_PREFIX}/run"
LABEL_TRY = f"{LABEL_PREFIX}/try"
LABEL_MAP_INDEX = f"{LABEL_PREFIX}/map-index"
LABEL_GROUP = f"{LABEL_PREFIX}/group"
LABEL_ITEM = f"{LABEL_PREFIX}/item"

# Label values are lossy (63 chars, restricted alphabet); annotations keep the exact ids.
ANNOTATION_DAG_ID = f"{LABEL_PREFIX}/dag-id"
ANNOTATION_TASK_ID = f"{LABEL_PREFIX}/task-id"
ANNOTATION_RUN_ID = f"{LABEL_PREFIX}/run-id"
ANNOTATION_ITEM_KEY = f"{LABEL_PREFIX}/item-key"
# ttlSecondsAfterFinished held back until the task has read the Job's outcome (see build.hold_ttl)
ANNOTATION_HELD_TTL = f"{LABEL_PREFIX}/ttl-seconds-after-finished"

LABEL_VALUE_MAX = 63
DNS1123_LABEL_MAX = 63
# Indexed Jobs give Pods the hostname "<job>-<index>" (index up to 10 digits for an int32), which
# must itself be a DNS label; CronJob names have the same 52-char bound for the same reason.
JOB_NAME_MAX = 52

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_HASH_LEN = 10
_LABEL_HASH_LEN = 8


def is_dns1123_label(s: str) -> bool:
    """True if ``s`` is usable as a Kubernetes object name of the strictest kind (a DNS label)."""
    return len(s) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL_RE.match(s))


def is_label_value(s: str) -> bool:
    """True if ``s`` is accepted by the apiserver as a label value."""
    return len(s) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE_RE.match(s))


def _digest(payload: str, length: int) -> str:
    """Short lowercase base32 sha256 digest: alphanumeric, so it can end a name or label."""
    raw = hashlib.sha256(payload.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:length]


def sanitize_label_value(value: str) -> str:
    """Turn arbitrary text into a valid label value, keeping distinct inputs distinct.

    Valid values pass through unchanged so selectors stay human-readable. Anything that had to be
    altered gets a hash of the original appended, because plain character replacement would map
    e.g. run ids ending ``+00:00`` and ``+01:00`` (or two unicode strings) onto the same value.
    """
    if is_label_value(value):
        return value
    suffix = _digest(value, _LABEL_HASH_LEN)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)
    cleaned = cleaned[: LABEL_VALUE_MAX - _LABEL_HASH_LEN - 1]
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    return f"{cleaned}-{suffix}" if cleaned else suffix


def _dns_fragment(text: str) -> str:
    """Lowercase text squeezed into the DNS-label alphabet, for the readable part of a name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def job_name(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int = -1,
    *,
    item_key: str | None = None,
    attempt_suffix: str | None = None,
    prefix: str | None = None,
) -> str:
    """The Job name for a task instance (and optionally one work item / one attempt).

    ``<readable dag-task[-item|-map_index][-suffix]>-<hash>``, at most 52 chars. The hash covers the
    raw inputs as an unambiguous JSON tuple, so the name is stable across retries and workers while
    two runs of a backfill, or items that sanitise alike (``A b`` / ``a-b``), never collide. A
    user's ``prefix`` replaces ``dag-task`` in the readable part (the hash still covers them all).
    """
    ids = [dag_id, task_id, run_id, map_index, item_key, attempt_suffix]
    identity = json.dumps(ids if prefix is None else [*ids, prefix], ensure_ascii=True)
    digest = _digest(identity, _NAME_HASH_LEN)
    parts = [dag_id, task_id] if prefix is None else [prefix]
    if item_key is not None:
        parts.append(item_key)
    elif map_index >= 0:
        parts.append(str(map_index))
    if attempt_suffix:
        parts.append(attempt_suffix)
    readable = "-".join(f for f in (_dns_fragment(p) for p in parts) if f) or "job"
    if not readable[0].isalpha():
        # Some resource kinds (Services, DNS-1035) need a leading letter; be safe for all of them.
        readable = f"job-{readable}"
    readable = readable[: JOB_NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{readable}-{digest}"


def task_labels(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int = -1,
    try_number: int | None = None,
) -> dict[str, str]:
    """Labels identifying a task instance; put on the Job and its Pods so both are selectable."""
    labels = {
        LABEL_DAG: sanitize_label_value(dag_id),
        LABEL_TASK: sanitize_label_value(task_id),
        LABEL_RUN: sanitize_label_value(run_id),
    }
    # "-1" is not a valid label value; unmapped tasks simply carry no map-index label.
    if map_index >= 0:
        labels[LABEL_MAP_INDEX] = str(map_index)
    if try_number is not None:
        labels[LABEL_TRY] = sanitize_label_value(str(try_number))
    return labels


def task_annotations(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int = -1,
    *,
    item_key: str | None = None,
) -> dict[str, str]:
    """The exact, unsanitised ids, so a Job can be traced back even when its labels were hashed."""
    annotations = {ANNOTATION_DAG_ID: dag_id, ANNOTATION_TASK_ID: task_id, ANNOTATION_RUN_ID: run_id}
    if map_index >= 0:
        annotations[LABEL_MAP_INDEX] = str(map_index)
    if item_key is not None:
        annotations[ANNOTATION_ITEM_KEY] = item_key
    return annotations


def earlier_try(job: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether ``job`` was created by another try than the one about to create ``body`` (their
    ``try`` labels differ); a Job of this very try (a deferred wait resumed without its event) is not."""
    tried = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_TRY)
    return tried != ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_TRY)


def owned_by(job: dict[str, Any], dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> bool:
    """Whether a Job was made by this task instance (its exact ids in the annotations). A Job made
    by hand, or by another run under an exact name (``random_name_suffix=False``), is not."""
    ann = (job.get("metadata") or {}).get("annotations") or {}
    return (
        ann.get(ANNOTATION_DAG_ID) == dag_id
        and ann.get(ANNOTATION_TASK_ID) == task_id
        and (ann.get(ANNOTATION_RUN_ID) == run_id and ann.get(LABEL_MAP_INDEX, "-1") == str(map_index))
    )


def task_selector(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """Label selector for every Job of one task instance, whatever its try number.

    For an unmapped task it requires the map-index label to be absent, so it never also matches
    the Jobs of mapped instances of a same-named task.
    """
    terms = [f"{k}={v}" for k, v in task_labels(dag_id, task_id, run_id, map_index).items()]
    if map_index < 0:
        terms.append(f"!{LABEL_MAP_INDEX}")
    return ",".join(terms)

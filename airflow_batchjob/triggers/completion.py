"""Ending a deferred task in the triggerer, so no worker resumes it and Airflow's defer race cannot hit.

The race (apache/airflow#71580, #72716): the executor reports the deferring worker's exit as a
"success" of the try, and the scheduler handles that report at its own pace. If the trigger fired
first and the resumed try is already queued or running, the scheduler takes the stale report for
a task killed behind its back and fails the try. The scheduler queues the resumed try *before* it
reads executor reports in the same loop, so a loop stalled longer than any hold (a starved machine:
13 s of no scheduler loop was measured) beats every hold. A task that never resumes on a worker has
no try to fail: the trigger ends it with Airflow's ``TaskSuccessEvent`` and its XComs.

The trigger runs the operator's own ``execute_complete`` on a copy of the operator rebuilt from its
rendered settings (:func:`completion_spec`, taken by the worker when it defers), so the task ends
with exactly the XComs, clean-up and log lines the worker would have made; it writes the XComs
through the triggerer as a worker does, then ends the task. Only a decided success
ends here (the operator's ``completes_in_triggerer`` says which events are one): a failure goes back
to the worker, which raises with the failing Pods' logs and lets Airflow retry as usual. Anything
unexpected on the way (an error, a setting that does not travel) hands the event to the worker too:
slower, never wrong. Off unless ``[batchjob] complete_in_triggerer = True`` (why: docs/design.md).
"""

from __future__ import annotations

import copy
import importlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from airflow_batchjob import config

# Airflow's own bookkeeping on an operator: not a setting, and some of it does not serialize.
_SKIPPED = frozenset(
    {"params", "upstream_task_ids", "downstream_task_ids", "partial_kwargs", "_log", "_kill_hook"}
)


def _travels(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def completion_spec(operator: Any, ti: Any) -> dict[str, Any] | None:
    """What the trigger needs to finish ``operator``'s task (None: the worker finishes it).

    Only the provider's own ``execute_complete`` runs in the triggerer: a DAG author's subclass
    that overrides it wrote it for a worker.
    """
    cls = type(operator)
    if not config.get("complete_in_triggerer") or not cls.execute_complete.__module__.startswith(
        "airflow_batchjob."
    ):
        return None
    # The worker runs the triggerer's Airflow: on one that cannot use the spec, it is not sent (it
    # would only weigh on the trigger's row and on the triggerer's messages, which Airflow 3.0
    # caps at 64 KiB a line: its trigger runner died of a batch of these).
    if not triggerer_sets_xcoms():
        return None
    # Airflow's worker writes what a downstream mapped task needs (the value's length) and splits
    # multiple_outputs; a task that needs either finishes on a worker.
    if getattr(operator, "multiple_outputs", False) or _has_mapped_dependants(operator):
        return None
    fields: dict[str, Any] = {}
    for k, v in vars(operator).items():
        if k in _SKIPPED or k.startswith("_BaseOperator__"):
            continue
        if _travels(v):
            fields[k] = v
        elif k.startswith("_"):  # a private cache (a client, a connection): built again on use
            fields[k] = None
    map_index = getattr(ti, "map_index", None)
    return {
        "operator": f"{cls.__module__}.{cls.__qualname__}",
        "fields": fields,
        "ti": {
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "run_id": ti.run_id,
            "map_index": -1 if map_index is None else map_index,
            "try_number": int(ti.try_number or 1),
            "max_tries": int(getattr(ti, "max_tries", 0) or 0),
        },
    }


def _has_mapped_dependants(operator: Any) -> bool:
    try:
        return next(operator.iter_mapped_dependants(), None) is not None
    except Exception:  # no DAG to ask: assume one, the worker finishes the task
        return True


def triggerer_sets_xcoms() -> bool:
    """Whether this triggerer passes a trigger's XCom writes to the API server as a worker's are.

    The XComs of Airflow's ``TaskSuccessEvent`` are not used: its triggerer stores them encoded
    once more than a worker's (a downstream task reads a dict back as a JSON string; seen on
    Airflow 3.3). Airflow 3.0's triggerer takes no XCom writes at all: its tasks resume on a worker.
    """
    from airflow.jobs import triggerer_job_runner

    return hasattr(triggerer_job_runner, "SetXCom")


# One XCom write at a time from this triggerer. Each is a blocking call of the triggerer's
# supervisor to the API server, and the supervisor handles every request its trigger runner has
# queued before it heartbeats: thirty completions writing at once on a loaded machine (0.5 s a
# write) kept one from heartbeating for 18 s, its triggers went to the other triggerer, and the
# first then cancelled them as killed (CI run ci9, test_ha_failover). One at a time, it heartbeats
# between any two.
_XCOM_WRITES = threading.Lock()


def _push(ti: dict[str, Any], xcoms: dict[str, Any]) -> None:
    """Write the XComs as the worker would (the return value last, as Airflow does)."""
    from airflow.sdk.execution_time.xcom import XCom

    where = {k: ti[k] for k in ("dag_id", "task_id", "run_id", "map_index")}
    for key in sorted(xcoms, key=lambda k: k == "return_value"):
        with _XCOM_WRITES:
            XCom.set(key, xcoms[key], **where)


@dataclass
class TriggerTaskInstance:
    """The part of a task instance the operators' ``execute_complete`` reads; keeps its XComs."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    max_tries: int
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def run_completion(spec: dict[str, Any], event: dict[str, Any], log: Any) -> dict[str, Any] | None:
    """Run the operator's ``execute_complete`` on ``event``: the XComs it makes, or None when the
    event is not a success the operator ends here. Raises what ``execute_complete`` raises."""
    module, _, name = spec["operator"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    operator = cls.__new__(cls)  # the settings are set below, already rendered and checked
    operator.__dict__.update(copy.deepcopy(spec["fields"]))
    # As while a worker executes it (no parse-time bookkeeping on attribute writes); its lines
    # go to the task's log, as the trigger's own do.
    operator.__dict__.update(_lock_for_execution=True, _log=log)
    event = json.loads(json.dumps(event))  # as the worker would get it
    if not operator.completes_in_triggerer(event):
        return None
    ti = TriggerTaskInstance(**spec["ti"])
    value = operator.execute_complete({"ti": ti}, event)
    if operator.do_xcom_push and value is not None:
        ti.xcoms["return_value"] = value
    return ti.xcoms


def complete(spec: dict[str, Any], event: dict[str, Any], log: Any) -> bool:
    """End the task here: run its completion and write its XComs. False: a worker finishes it.

    Blocking (the operators' hook is synchronous): the trigger runs it in a thread.
    """
    try:
        if not triggerer_sets_xcoms():
            return False
        xcoms = run_completion(spec, event, log)
        if xcoms is None:
            return False
        _push(spec["ti"], xcoms)
    except Exception as e:  # its steps are safe to run again: the worker does them all
        log.warning("the task goes back to a worker to finish (%s: %s)", type(e).__name__, e)
        return False
    log.info("finished in the triggerer: no worker resumes the task")
    return True

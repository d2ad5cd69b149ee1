"""``@task.batch_map``: map a Python function over a list in one task, as one Indexed Job.

``square(items)`` runs one Indexed Job with a Pod per item; Pod *i* calls ``square(items[i])`` in
the image's Python and the task returns the results in item order. Everything else is
:class:`~airflow_batchjob.operators.indexed.IndexedJobOperator`'s: adoption on retry, a retry
running only the failed items, per-index retries, live logs, deferral and every Pod setting.

The function travels as data (``core/batchmap.py``): its source and the constant arguments as
JSON in a ConfigMap beside the items, read by ``worker/batch_map_boot.py``, which the image's
Python runs from that ConfigMap.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from airflow_batchjob.core import naming
from airflow_batchjob.core.batchmap import (
    BOOT_KEY,
    ItemError,
    build_payload,
    check_call,
    encode_items,
    errors_by_index,
    function_source,
    item_parameter,
    split_call,
    to_json,
)
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.items import Item
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.skipcodes import add_skip_rule
from airflow_batchjob.exceptions import InvalidJobTemplateError, JobFailedError
from airflow_batchjob.operators.indexed import ANNOTATION_ATTEMPT, IndexedJobOperator
from airflow_batchjob.worker.batch_map_boot import EXIT_SETUP, MIN_PYTHON

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

MAX_ERRORS_LOGGED = 50  # items whose error (and traceback tail) the task log shows in full
MAX_ERRORS_NAMED = 5  # in the exception's message
_REFUSED = {
    "cmds": "the Pods run the decorated function; to run a program use IndexedJobOperator",
    "arguments": "the function's other arguments are the call's: square(items, factor=2)",
    "items": "the items are the call's first argument: square(items)",
    "use_worker": "the function runs under batch_map's own bootstrap, not the worker",
    "worker_command": "the function runs under batch_map's own bootstrap, not the worker",
    "inject_worker": "the function runs in the image's Python under batch_map's own bootstrap",
    "worker_image": "the function runs in the image's Python under batch_map's own bootstrap",
}


def _preview(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BatchMapOperator(DecoratedOperator, IndexedJobOperator):
    """Call a Python function on each item of a list, one Pod per item, in one Indexed Job.

    Made by ``@task.batch_map(image=..., ...)`` (:func:`batch_map_task`); calling the decorated
    function of one item with a list (or an XCom) of items, ``square(items)``, runs one Indexed Job
    whose Pod *i* calls ``square(items[i])`` with the image's ``python3``, and returns (XCom) the
    results in item order. Other arguments of the call (``square(items, factor=2)``) are passed
    to every call, as JSON. Items and results are JSON values; a result must stay under the 4 KiB
    termination message that carries it (return a reference to bigger data).

    Takes every parameter of :class:`~airflow_batchjob.operators.indexed.IndexedJobOperator`
    (``image``, ``parallelism``, ``backoff_limit_per_index``, ``max_failed_indexes``, the Pod
    settings, ``items_mount_path`` ...) but ``items``, ``cmds``, ``arguments``, ``use_worker`` and
    ``worker_command`` (the call and the function take their place), plus:

    :param python_callable: the function, of one item (its first parameter); sent to the Pods as
        its source, so it imports what it needs inside and uses no other name of the DAG file.
    :param op_args: the call's positional arguments: the items first (templated).
    :param op_kwargs: the call's keyword arguments (templated).
    :param python_command: how the image runs Python (default ``["python3"]``), a list. The
        image's Python must be 3.9 or newer and able to compile the function: a mismatch fails the
        whole Job at once, naming both versions.

    A failed item's exception (type, message and traceback tail) is logged per item, and the
    first few are named in the task's error. Setting ``wait_until_job_complete=False`` or
    ``multiple_outputs=True`` is refused: the task returns one list of results.
    """

    custom_operator_name = "@task.batch_map"
    template_fields: Sequence[str] = (
        "op_args",
        "op_kwargs",
        *(f for f in IndexedJobOperator.template_fields if f not in ("cmds", "arguments", "items")),
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **IndexedJobOperator.template_fields_renderers,
        "op_args": "py",
        "op_kwargs": "py",
    }
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        python_command: Sequence[str] = ("python3",),
        **kwargs: Any,
    ) -> None:
        task = f"@task.batch_map {kwargs.get('task_id')!r}"
        for name, why in _REFUSED.items():
            if name in kwargs:
                raise InvalidJobTemplateError(f"{task}: {name} is not a parameter here: {why}")
        if kwargs.get("wait_until_job_complete", True) is not True:
            raise InvalidJobTemplateError(
                f"{task}: wait_until_job_complete=False: the task returns the results, so it waits for "
                "the Indexed Job; for a Job that runs on alone, use IndexedJobOperator and a JobSensor"
            )
        if kwargs.pop("multiple_outputs", False):
            raise InvalidJobTemplateError(f"{task}: multiple_outputs: the task returns one list of results")
        if (
            isinstance(python_command, str)
            or not python_command
            or not all(isinstance(p, str) and p for p in python_command)
        ):
            raise InvalidJobTemplateError(
                f"{task}: python_command={python_command!r}: give the command as a list, e.g. ['python3']"
            )
        args, call_kwargs = list(op_args or []), dict(op_kwargs or {})
        try:
            function = function_source(python_callable)
            param = item_parameter(python_callable)
            items, rest_args, rest_kwargs = split_call(python_callable, args, call_kwargs)
            if not _is_reference(items) and not (isinstance(items, str) and "{{" in items):
                encode_items(items, param)  # a literal list: checked now
            check_call(python_callable, rest_args, rest_kwargs)
            literal = [v for v in [*rest_args, *rest_kwargs.values()] if not _is_reference(v)]
            to_json(literal, f"the other arguments of {python_callable.__name__}()")
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"{task}: {e}") from e
        mount = kwargs.get("items_mount_path", "/batchjob/items")
        super().__init__(
            python_callable=python_callable,
            op_args=args,
            op_kwargs=call_kwargs,
            items=items,
            cmds=[*python_command, "-u", f"{mount.rstrip('/')}/{BOOT_KEY}", mount],
            use_worker=False,
            multiple_outputs=False,
            **kwargs,
        )
        self.function = function
        self.python_command = list(python_command)
        self.map_args: list[Any] = rest_args
        self.map_kwargs: dict[str, Any] = rest_kwargs
        self._failed_items: dict[int, ItemError] | None = None

    @staticmethod
    def _items_checked(values: Any) -> list[Item]:
        """The items as JSON text (so ``"5"`` and ``5`` stay apart in the Pod), checked as
        ``IndexedJobOperator`` checks its items."""
        try:
            texts = encode_items(values, "items")
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(str(e)) from e
        checked = IndexedJobOperator._items_checked(texts)
        return [Item(value=v, text=i.text, key=i.key) for v, i in zip(values, checked, strict=True)]

    def _take_call(self) -> None:
        """The rendered call (XComs resolved): its items and the arguments every Pod gets."""
        try:
            self.items, self.map_args, self.map_kwargs = split_call(
                self.python_callable, list(self.op_args), dict(self.op_kwargs)
            )
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(str(e)) from e

    def attempt_configmaps(self) -> list[dict[str, str]]:
        try:
            return [build_payload(self.function, self.map_args, self.map_kwargs, platform.python_version())]
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"task {self.task_id}: {e}") from e

    def build(self, context: Context, namespace: str, **kwargs: Any) -> dict[str, Any]:
        """The Indexed Job, with exit code 3 (the function cannot run in this image: every Pod
        would fail alike) ending it at once, where its Pods are not restarted in place."""
        body = super().build(context, namespace, **kwargs)
        if body["spec"]["template"]["spec"].get("restartPolicy") == "Never":
            add_skip_rule(body, [EXIT_SETUP], self.base_container_name)
        return body

    def execute(self, context: Context) -> Any:
        self._take_call()
        return super().execute(context)

    def _cleanup(self, outcome: JobOutcome, context: Context, jobs: list[dict[str, Any]]) -> None:
        """Read the failed items' errors before ``delete_on_finish`` can take their Pods away."""
        if outcome.state is not JobState.SUCCEEDED:
            self._failed_items = self.item_errors(context, outcome.namespace)
        super()._cleanup(outcome, context, jobs)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        self._take_call()
        self._failed_items = None
        try:
            result = super().execute_complete(context, event)
        except JobFailedError as e:
            raise self._explained(e, context, event["namespace"]) from e
        return self._values(result)

    def _values(self, result: dict[str, Any]) -> list[Any]:
        """The return value: the results in item order (None for an item that did not run)."""
        rows = result["items"]
        left = [r["index"] for r in rows if r["state"] != "succeeded"]
        if left:
            self.log.warning(
                "%d of %d items did not succeed (the Job's success policy was met): their results are "
                "None (indexes %s)",
                len(left),
                len(rows),
                ",".join(map(str, left[:50])),
            )
        self.log.info("batch_map: %d results from Indexed Job %s", len(rows), result["job"])
        return [r["result"] for r in rows]

    def _explained(self, error: JobFailedError, context: Context, namespace: str) -> JobFailedError:
        """The failed items' own words (exception, message, traceback tail) in the task log, the
        first few in the error."""
        errors = self._failed_items
        if errors is None:
            errors = self.item_errors(context, namespace)
        if not errors:
            return error
        items = self._items_checked(self.items)
        built = platform.python_version()
        named: list[str] = []
        for n, (index, err) in enumerate(sorted(errors.items())):
            what = f"item {index} ({_preview(items[index].value)})"
            differ = _minor(err.python) != _minor(built)
            versions = f" [image Python {err.python}; the DAG's {built}]" if differ else ""
            if n < MAX_ERRORS_LOGGED:
                tail = f"\n{err.traceback}" if err.traceback else ""
                self.log.error("%s failed (%s)%s: %s%s", what, err.stage, versions, err.message, tail)
            if n < MAX_ERRORS_NAMED:
                named.append(f"{what}: {err.message}{versions}")
        more = f" (and {len(errors) - len(named)} more)" if len(errors) > len(named) else ""
        if len(errors) > MAX_ERRORS_LOGGED:
            self.log.error(
                "... %d more failed items (the 'items' XCom lists them)", len(errors) - MAX_ERRORS_LOGGED
            )
        return JobFailedError(
            f"{error}\n{len(errors)} item(s) failed: " + "; ".join(named) + more, error.outcome
        )

    def item_errors(self, context: Context, namespace: str) -> dict[int, ItemError]:
        """Per original item index, what its latest failed Pod's bootstrap said, over every
        attempt (an item a later attempt completed is left out)."""
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        selector = naming.task_selector(ti.dag_id, ti.task_id, ti.run_id, map_index)
        hook = self.hook
        jobs = sorted(
            hook.list_jobs(namespace, selector),
            key=lambda j: int((j["metadata"].get("annotations") or {}).get(ANNOTATION_ATTEMPT, "1")),
        )
        errors: dict[int, ItemError] = {}
        for job in jobs:
            completed = set(outcome_from_job(job).completed_indexes)
            pods = hook.list_pods(namespace, f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}")
            found = errors_by_index(pods)
            for local, original in enumerate(self.covered(job)):
                if local in completed:
                    errors.pop(original, None)
                elif local in found:
                    errors[original] = found[local]
        return errors


def _minor(version: str | None) -> str:
    return ".".join((version or "").split(".")[:2])


def _is_reference(value: Any) -> bool:
    from airflow.sdk.definitions.xcom_arg import XComArg

    return isinstance(value, XComArg)


def batch_map_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """``@task.batch_map(image=..., parallelism=..., ...)``: the decorated function of one item,
    called with a list of items (or an XCom), runs as one Indexed Job and returns the results in
    item order. Takes :class:`BatchMapOperator`'s parameters.

    :param python_callable: the function (given when used as ``@task.batch_map`` without parentheses).
    :param multiple_outputs: refused when True: the task returns one list.
    """
    if multiple_outputs:
        raise InvalidJobTemplateError(
            "@task.batch_map: multiple_outputs: the task returns one list of results"
        )
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=False,
        decorated_operator_class=BatchMapOperator,
        **kwargs,
    )


__all__ = ["MIN_PYTHON", "BatchMapOperator", "batch_map_task"]

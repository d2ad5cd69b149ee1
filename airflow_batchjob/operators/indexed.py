"""IndexedJobOperator: static work assignment, item i to the Pod with ``JOB_COMPLETION_INDEX = i``.

Kubernetes' recipe indexes a bash array with ``$JOB_COMPLETION_INDEX`` in an init container. Here
the items travel as data: ConfigMaps (owned by the Job, so garbage-collected with it) mounted as
one file per index, and the worker entrypoint puts item i on the program's stdin and in ``ITEM``,
with the file's path in ``ITEM_FILE``. A retry runs only the failed or never-run items, in a new
Indexed Job over that subset (its index map kept in an annotation), and the result merges every
attempt, per original index.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_batchjob.core import inject, naming
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.indexes import format_indexes, parse_indexes
from airflow_batchjob.core.items import Item, normalize_items
from airflow_batchjob.core.outcome import JobOutcome, JobState, outcome_from_job
from airflow_batchjob.core.reported import cleared_since_success
from airflow_batchjob.exceptions import (
    BatchJobError,
    InvalidJobTemplateError,
    InvalidResultError,
    JobFailedError,
)
from airflow_batchjob.hooks.batchjob import BatchJobHook
from airflow_batchjob.operators.base import items_at_parse
from airflow_batchjob.operators.indexresults import IndexResults
from airflow_batchjob.operators.job import BatchJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

ANNOTATION_INDEXES = f"{naming.LABEL_PREFIX}/indexes"  # the original item indexes this Job covers
ANNOTATION_ATTEMPT = f"{naming.LABEL_PREFIX}/attempt"
CONFIGMAP_BYTES = 900 * 1024  # a ConfigMap (the whole object) must stay under 1 MiB
MAX_CONFIGMAPS = 64
WORKER = ["python", "-m", "airflow_batchjob.worker"]


def chunk_items(texts: Sequence[str], limit: int = CONFIGMAP_BYTES) -> list[dict[str, str]]:
    """Split ``{index: text}`` into ConfigMap-sized data dicts; refuse item sets too large to carry."""
    chunks: list[dict[str, str]] = [{}]
    size = 0
    for i, text in enumerate(texts):
        n = len(text.encode()) + len(str(i)) + 16
        if n > limit:
            raise InvalidJobSpecError(
                f"item {i} is {n} bytes; one item must fit a ConfigMap (under {limit} bytes): "
                "pass a reference (a path or URI) instead"
            )
        if size + n > limit:
            chunks.append({})
            size = 0
        chunks[-1][str(i)] = text
        size += n
    if len(chunks) > MAX_CONFIGMAPS:
        raise InvalidJobSpecError(
            f"the items need {len(chunks)} ConfigMaps (over {MAX_CONFIGMAPS}, about "
            f"{MAX_CONFIGMAPS * limit // 2**20} MiB): split the work across tasks or use a queue"
        )
    return chunks


class IndexedJobOperator(IndexResults, BatchJobOperator):
    """Run one Indexed Job over ``items``: Pod i processes item i with an unchanged program.

    Takes every parameter of :class:`BatchJobOperator` (``cmds``/``arguments`` or the template's
    container are the program; ``parallelism``, ``backoff_limit_per_index``,
    ``max_failed_indexes``, ``pod_failure_policy``, ``success_policy`` first-class) plus:

    :param items: list (templated, or an XCom) of strings or JSON objects.
    :param use_worker: wrap the program with the worker entrypoint (default), which feeds it
        the item on stdin and in ``ITEM``/``ITEM_INDEX``/``ITEM_FILE``. With False the program
        reads ``<items_mount_path>/$JOB_COMPLETION_INDEX`` itself.
    :param worker_command: how the image runs the worker (``python -m airflow_batchjob.worker``).
    :param inject_worker: copy the worker into the Pod: the image needs no Python (default: when needed).
    :param worker_image: the worker image the injected binary comes from.
    :param items_mount_path: where the items' ConfigMaps are mounted, one file per index
        (default ``/batchjob/items``).

    Of the inherited parameters: ``job_name`` prefixes the Jobs' names; ``random_name_suffix=False``
    and ``skip_on_exit_code`` are refused (see the messages); ``wait_until_job_complete=False``
    creates the Indexed Job and returns ``{"name", "namespace", "uid", "items"}`` at once, for a
    ``JobSensor`` downstream; ``reattach_on_restart=False`` deletes earlier tries' Jobs and runs
    every item again in a fresh one.

    Returns (XCom) ``{"job", "namespace", "completed_indexes", "failed_indexes", "items": [{"index",
    "item", "state" (succeeded|failed|not_run), "exit_code", "log_tail", "job", "result"}]}`` over
    every attempt. ``result`` is what the program wrote to ``$BATCHJOB_RESULT_FILE`` for its item
    (``core/results.py``); an unusable one (not JSON, over 4 KiB) fails the item (exit code 65
    under the worker).
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "items")
    cannot_honour = (
        (
            "random_name_suffix",
            True,
            "a retry runs the failed items in a new Indexed Job beside the first, so the Jobs cannot "
            "share one exact name; job_name is used as their names' prefix",
        ),
        (
            "skip_on_exit_code",
            None,
            "one Pod's exit code would end the whole Indexed Job; for a per-item answer use "
            "pod_failure_policy with action FailIndex (and backoff_limit_per_index), and read each "
            "item's exit_code in the returned rows",
        ),
    )

    def __init__(
        self,
        *,
        items: Any,
        use_worker: bool = True,
        worker_command: Sequence[str] = tuple(WORKER),
        items_mount_path: str = "/batchjob/items",
        inject_worker: bool | None = None,
        worker_image: str = inject.WORKER_IMAGE,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("completion_mode", "Indexed") != "Indexed":
            raise InvalidJobTemplateError("IndexedJobOperator always runs completion_mode='Indexed'")
        if kwargs.get("completions") is not None:
            raise InvalidJobTemplateError(
                "IndexedJobOperator sets completions from len(items): drop completions"
            )
        given = items_at_parse(items)
        literal = given is not None
        items = given if given is not None else items
        checked = self._items_checked(items) if literal else []
        kwargs.update(completion_mode="Indexed", completions=max(1, len(checked)) if literal else 1)
        super().__init__(**kwargs)
        self.items = items
        self.use_worker = use_worker
        self.worker_command = list(worker_command)
        self.inject_worker, self.worker_image = inject_worker, worker_image
        self.items_mount_path = items_mount_path

    @staticmethod
    def _items_checked(values: Any) -> list[Item]:
        try:
            items = normalize_items(values, max_item_bytes=CONFIGMAP_BYTES, allow_duplicates=True)
            if not items:
                raise InvalidJobSpecError("items is empty: an Indexed Job needs at least one item")
            chunk_items([i.text for i in items])
            return items
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"items: {e}") from e

    # -- attempts --------------------------------------------------------------------------
    @staticmethod
    def covered(job: dict[str, Any]) -> list[int]:
        """Original item indexes a Job covers, in its own index order."""
        ann = (job["metadata"].get("annotations") or {}).get(ANNOTATION_INDEXES, "")
        return parse_indexes(ann)

    def execute(self, context: Context) -> Any:
        self.check_spec_fields()
        self.log_peer_notes()
        items = self._items_checked(self.items)
        namespace = self.resolve_namespace()
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        selector = naming.task_selector(ti.dag_id, ti.task_id, ti.run_id, map_index)
        hook = self.hook
        previous = sorted(
            hook.list_jobs(namespace, selector),
            key=lambda j: int((j["metadata"].get("annotations") or {}).get(ANNOTATION_ATTEMPT, "1")),
        )
        this_try = {naming.LABEL_TRY: naming.sanitize_label_value(str(ti.try_number))}
        earlier = [j for j in previous if naming.earlier_try(j, {"metadata": {"labels": this_try}})]
        if earlier and not self.reattach_on_restart:
            self.log.info(
                "replacing %d Indexed Job(s) of earlier tries with a fresh one (reattach_on_restart=False)",
                len(previous),
            )
            self._forget(hook, namespace, previous)
            previous = []
        running = [j for j in previous if not outcome_from_job(j).done]
        if running:
            job = running[-1]
            self.log.info("adopting Indexed Job %s/%s, still running", namespace, job["metadata"]["name"])
        else:
            done = self.merge(previous, items, hook, namespace, with_logs=False)
            todo = [r["index"] for r in done if r["state"] != JobState.SUCCEEDED.value]
            cleared = cleared_since_success(previous, self.max_tries(context)) and not self.reuse_succeeded
            if not previous or cleared:
                self._forget(hook, namespace, previous)  # a clear of a task that succeeded
                previous, todo = [], list(range(len(items)))
            elif todo:
                self.log.info(
                    "retry: %d of %d items still to run (failed or never run): indexes %s",
                    len(todo),
                    len(items),
                    format_indexes(todo),
                )
            if previous and not todo:  # an earlier try ended before it reported the outcome: keep it
                job = previous[-1]
                self.log.info(
                    "every item already succeeded (Indexed Job %s/%s): keeping the result",
                    namespace,
                    job["metadata"]["name"],
                )
            else:
                job = self.create_attempt(context, hook, namespace, items, todo, attempt=len(previous) + 1)
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        self.push(context, "job_name", name)
        self.push(context, "job_namespace", namespace)
        if not self.wait_until_job_complete:
            self.log.info(
                "not waiting for Indexed Job %s/%s (wait_until_job_complete=False); a JobSensor waits",
                namespace,
                name,
            )
            return {"name": name, "namespace": namespace, "uid": uid, "items": len(items)}
        return self.wait(context, namespace, name, uid, job)

    def _forget(self, hook: BatchJobHook, namespace: str, jobs: list[dict[str, Any]]) -> None:
        """Delete earlier attempts and wait until they and their item ConfigMaps are gone.

        The fresh attempt reuses the first attempt's names; a ConfigMap still owned by a deleted
        Job would be garbage-collected under the new Job (or between a create and a replace).
        """
        for j in jobs:
            hook.delete_job(namespace, j["metadata"]["name"], "Background", j["metadata"]["uid"])
        for j in jobs:
            hook.wait_deleted(namespace, j["metadata"]["name"], j["metadata"]["uid"])
        names = [n for j in jobs for n in self._items_configmaps(j)]
        hook.wait_configmaps_collected(namespace, names, {j["metadata"]["uid"] for j in jobs})

    @staticmethod
    def _items_configmaps(job: dict[str, Any]) -> list[str]:
        """The names of the ConfigMaps a Job's items volume projects."""
        for volume in job["spec"]["template"]["spec"].get("volumes") or []:
            if volume.get("name") == "batchjob-items":
                return [s["configMap"]["name"] for s in volume["projected"]["sources"] if "configMap" in s]
        return []

    def create_attempt(
        self,
        context: Context,
        hook: BatchJobHook,
        namespace: str,
        items: list[Item],
        todo: list[int],
        attempt: int,
    ) -> dict[str, Any]:
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        name = naming.job_name(
            ti.dag_id,
            ti.task_id,
            ti.run_id,
            map_index,
            attempt_suffix=None if attempt == 1 else f"a{attempt}",
            prefix=self.job_name or None,
        )
        chunks = chunk_items([items[i].text for i in todo]) + self.attempt_configmaps()
        cm_names = [f"{name}-items-{k}" for k in range(len(chunks))]
        overrides = dataclasses.replace(self.overrides, completions=len(todo), completion_mode="Indexed")
        body = self.build(
            context,
            namespace,
            name=name,
            overrides=overrides,
            extra_annotations={ANNOTATION_INDEXES: format_indexes(todo), ANNOTATION_ATTEMPT: str(attempt)},
        )
        self._mount_items(body, cm_names)
        self.server_dry_run(hook, namespace, body)  # before the items' ConfigMaps exist
        for cm, data in zip(cm_names, chunks, strict=True):  # one left by a try that died: replaced
            meta = {"name": cm, "labels": body["metadata"]["labels"]}
            hook.put_configmap(namespace, {"metadata": meta, "data": data})
        job = self.create_or_adopt(hook, namespace, body, context)
        owner = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": job["metadata"]["uid"],
                "controller": False,
                "blockOwnerDeletion": False,
            }
        ]
        for cm in cm_names:
            hook.core.patch_namespaced_config_map(cm, namespace, {"metadata": {"ownerReferences": owner}})
        self.log.info(
            "Indexed Job %s/%s: %d items (attempt %d) in %d ConfigMap(s)",
            namespace,
            name,
            len(todo),
            attempt,
            len(cm_names),
        )
        return job

    def attempt_configmaps(self) -> list[dict[str, str]]:
        """More ConfigMap data for every Pod of an attempt, mounted with the items (keys that are
        not digits): none here; ``@task.batch_map`` adds its function and bootstrap."""
        return []

    def _mount_items(self, body: dict[str, Any], cm_names: list[str]) -> None:
        pod = body["spec"]["template"]["spec"]
        pod.setdefault("volumes", []).append(
            {
                "name": "batchjob-items",
                "projected": {"sources": [{"configMap": {"name": n}} for n in cm_names]},
            }
        )
        for c in pod["containers"]:
            c.setdefault("volumeMounts", []).append(
                {"name": "batchjob-items", "mountPath": self.items_mount_path, "readOnly": True}
            )
        if self.use_worker:
            main = pod["containers"][0]
            program = list(main.pop("command", None) or []) + list(main.pop("args", None) or [])
            if not program:
                raise InvalidJobTemplateError(
                    "IndexedJobOperator needs the program to run: pass cmds (and arguments)"
                )
            how = (self.inject_worker, "indexed", self.worker_image, self.worker_command)
            worker = inject.worker_for(body["spec"]["template"], *how)
            main["command"] = [*worker, "indexed", "--items-dir", self.items_mount_path, "--", *program]

    # -- results ---------------------------------------------------------------------------
    def _cleanup(self, outcome: JobOutcome, context: Context, jobs: list[dict[str, Any]]) -> None:
        """Clean up this try's Job; once no retry is to come, also hand earlier attempts their TTL."""
        self.cleanup_after(outcome, context)
        succeeded = outcome.state is JobState.SUCCEEDED
        if self.ttl_due(succeeded, context):
            earlier = [j for j in jobs if j["metadata"]["name"] != outcome.name]
            mark = self.success_mark(context) if succeeded else None
            self.set_held_ttls(self.hook, outcome.namespace, earlier, mark)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        if event.get("status") == "error":
            raise BatchJobError(f"waiting on the Job failed: {event.get('message')}")
        items = self._items_checked(self.items)
        namespace = event["namespace"]
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        selector = naming.task_selector(ti.dag_id, ti.task_id, ti.run_id, map_index)
        jobs = sorted(
            self.hook.list_jobs(namespace, selector),
            key=lambda j: int((j["metadata"].get("annotations") or {}).get(ANNOTATION_ATTEMPT, "1")),
        )
        try:  # the Job is deleted (delete_on_finish) or given its TTL only after its Pods are read
            outcome = self.finish(event, context, cleanup=False)
        except JobFailedError as e:
            result = self.indexed_result(jobs, items, namespace)
            if e.outcome:
                self._cleanup(JobOutcome.from_dict(e.outcome), context, jobs)
            failed = [r for r in result["items"] if r["state"] != "succeeded"]
            named = ", ".join(f"{r['index']}={json.dumps(r['item'])[:60]}" for r in failed[:20])
            self.push(context, "items", result)
            raise JobFailedError(
                f"{e}; items not done: {named}{' ...' if len(failed) > 20 else ''}", e.outcome
            ) from e
        result = self.indexed_result(jobs, items, namespace)
        bad = [r["error"] for r in result["items"] if r.get("error")]
        if bad:
            self.release_ttl(outcome.namespace, outcome.name, outcome.uid)
            raise InvalidResultError("; ".join(bad[:20]))
        self._cleanup(outcome, context, jobs)
        result["outcome"] = outcome.to_dict()
        return result

"""The per-index result of an Indexed task, merged over every attempt (mixed into ``IndexedJobOperator``).

Each original index gets the latest attempt's word: succeeded (with what the program wrote to
``$BATCHJOB_RESULT_FILE``), failed (exit code, log tail) or not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_batchjob.core.indexes import format_indexes
from airflow_batchjob.core.items import Item
from airflow_batchjob.core.outcome import outcome_from_job
from airflow_batchjob.core.results import results_by_index
from airflow_batchjob.hooks.batchjob import BatchJobHook


class IndexResults:
    """``merge`` and ``indexed_result`` for ``IndexedJobOperator`` (and ``@task.batch_map``)."""

    use_worker: bool
    do_xcom_push: bool
    max_failed_pod_logs: int
    log_tail_lines: int
    if TYPE_CHECKING:  # IndexedJobOperator's and BaseBatchJobOperator's

        @staticmethod
        def covered(job: dict[str, Any]) -> list[int]: ...

        @property
        def hook(self) -> BatchJobHook: ...

    def merge(
        self,
        jobs: list[dict[str, Any]],
        items: list[Item],
        hook: BatchJobHook,
        namespace: str,
        with_logs: bool = True,
    ) -> list[dict[str, Any]]:
        """Per original index, the latest attempt's word: succeeded, failed (exit code, log tail), not run."""
        rows = [
            {
                "index": i,
                "item": item.value,
                "state": "not_run",
                "exit_code": None,
                "log_tail": None,
                "job": None,
                "result": None,
            }
            for i, item in enumerate(items)
        ]
        logs_left = self.max_failed_pod_logs if with_logs else 0
        for job in jobs:
            covered = self.covered(job)
            outcome = outcome_from_job(job)
            want_results = with_logs and self.do_xcom_push
            pods = (
                hook.list_pods(namespace, f"batch.kubernetes.io/controller-uid={outcome.uid}")
                if outcome.failed or outcome.failed_indexes or want_results
                else []
            )
            failed_pods = self._failed_pods(pods)
            results = results_by_index(pods, envelope=self.use_worker) if want_results else {}
            completed, failed_indexes = set(outcome.completed_indexes), set(outcome.failed_indexes)
            for local, original in enumerate(covered):
                if original >= len(rows):
                    continue
                row = rows[original]
                row["job"] = outcome.name
                if local in completed:
                    found = results.get(local)
                    row.update(state="succeeded", exit_code=0, log_tail=None)
                    row["result"] = found.value if found else None
                    if found and found.error:  # a program run without the worker left an unusable one
                        row.update(state="failed", error=found.error)
                elif local in failed_pods or local in failed_indexes:
                    pod, container, code = failed_pods.get(local, (None, None, None))
                    tail = None
                    if pod and logs_left > 0:
                        tail = hook.pod_log_tail(namespace, pod, container, self.log_tail_lines)
                        logs_left -= 1
                    row.update(state="failed", exit_code=code, log_tail=tail)
                elif row["state"] != "succeeded":
                    row.update(state="not_run", exit_code=None, log_tail=None)
        return rows

    @staticmethod
    def _failed_pods(pods: list[dict[str, Any]]) -> dict[int, tuple[str, str, int]]:
        """The latest failed Pod of each index: (pod name, container, exit code)."""
        found: dict[int, tuple[str, str, int, str]] = {}
        for pod in pods:
            if (pod.get("status") or {}).get("phase") != "Failed":
                continue
            index = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
            for cs in pod["status"].get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if term and term.get("exitCode") != 0 and index is not None:
                    created = pod["metadata"].get("creationTimestamp") or ""
                    if int(index) not in found or found[int(index)][3] < created:
                        found[int(index)] = (pod["metadata"]["name"], cs["name"], term["exitCode"], created)
        return {i: v[:3] for i, v in found.items()}

    def indexed_result(self, jobs: list[dict[str, Any]], items: list[Item], namespace: str) -> dict[str, Any]:
        rows = self.merge(jobs, items, self.hook, namespace)
        return {
            "job": jobs[-1]["metadata"]["name"] if jobs else None,
            "namespace": namespace,
            "completed_indexes": format_indexes([r["index"] for r in rows if r["state"] == "succeeded"]),
            "failed_indexes": format_indexes([r["index"] for r in rows if r["state"] == "failed"]),
            "items": rows,
        }

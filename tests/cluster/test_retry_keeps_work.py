"""A retry after a failure that was not the Job's keeps the succeeded work; a user's clear of a
task that succeeded runs it again (``core/reported.py``).

The Airflow-side failure is played by a subclass whose first try fails right after (or right
before) the operator read the outcome: what the scheduler's defer race, a lost state report or a
worker lost at the wrong moment do to a try. The clear of a task that succeeded runs on the real
scheduler: ``tests/stack/test_defer_race.py``.
"""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from airflow_batchjob._compat import AirflowException
from airflow_batchjob.core import naming
from airflow_batchjob.core.reported import ANNOTATION_REPORTED
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from tests.cluster.helpers import jobs_in, new_dag

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]


class _FirstTryLost:
    """Fails the first try after the Job succeeded: ``after`` its outcome was read, or before."""

    lose: str = "after"

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        first = int(context["ti"].try_number) == 1
        if first and self.lose == "before" and event is not None:
            raise AirflowException("simulated: the try was lost before it read the outcome")
        result = super().execute_complete(context, event)  # type: ignore[misc]
        if first and self.lose == "after":
            raise AirflowException("simulated: Airflow failed the try after it read the outcome")
        return result


class LosingJob(_FirstTryLost, BatchJobOperator):
    pass


class LosingGroup(_FirstTryLost, JobGroupOperator):
    pass


class LosingIndexed(_FirstTryLost, IndexedJobOperator):
    pass


def _uids(api_client: Any, namespace: str) -> dict[str, str]:
    return {j.metadata.name: j.metadata.uid for j in jobs_in(api_client, namespace)}


def _tries(api_client: Any, namespace: str) -> set[str]:
    return {j.metadata.labels[naming.LABEL_TRY] for j in jobs_in(api_client, namespace)}


CASES = [
    ("job", LosingJob, {"cmds": ["sh", "-c", "echo once"]}),
    ("group", LosingGroup, {"cmds": ["sh", "-c", "echo $ITEM"], "items": ["a", "b", "c"]}),
    ("indexed", LosingIndexed, {"cmds": ["cat"], "items": ["x", "y"]}),
]


@pytest.mark.parametrize("lose", ["after", "before"])
@pytest.mark.parametrize(("kind", "cls", "params"), CASES, ids=[c[0] for c in CASES])
def test_retry_after_airflow_failure_keeps_succeeded_jobs(
    run_dag: Any, api_client: Any, namespace: str, kind: str, cls: Any, params: dict[str, Any], lose: str
) -> None:
    with new_dag(f"keep_{kind}_{lose}") as dag:
        op = cls(
            task_id="work",
            namespace=namespace,
            image="worker",
            retries=1,
            retry_delay=pendulum.duration(seconds=0),
            **params,
        )
        op.lose = lose
    result = run_dag(dag)["work"]
    assert result["state"] == "success" and result["try_number"] == 2, result
    assert _tries(api_client, namespace) == {"1"}, "the retry must keep the first try's Jobs"
    expected = 3 if kind == "group" else 1
    assert len(_uids(api_client, namespace)) == expected
    marks = {(j.metadata.annotations or {}).get(ANNOTATION_REPORTED) for j in jobs_in(api_client, namespace)}
    assert marks == {"try=2,max_tries=1"}, "the succeeding try marks what it reported"

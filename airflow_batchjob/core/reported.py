"""Which succeeded Jobs a new try of a task keeps, and which it runs again.

A new try of a task instance finds the Jobs its earlier tries created (deterministic names). A
failed Job is always run again. A succeeded one is ambiguous: the new try may be

- a retry after a failure that was not the Job's: the worker died, or Airflow failed the try
  after the Job succeeded (its defer race, a lost state report). The work is done: keep it.
- a retry after some items or indexes failed: keep the ones that succeeded.
- the user clearing a task that succeeded: run it again (that is what a clear means).

They are told apart by a mark the try that *succeeded* writes on each Job it reports, just before
it returns: the try number and ``max_tries`` of the task instance. Clearing a task sets a new
``max_tries`` (``try_number + retries``, always larger than the one before), so a mark with the
current ``max_tries`` means no clear happened since the task succeeded: Airflow itself failed that
try, and the new try keeps the Job. No mark means no try succeeded with it: keep it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_batchjob.core.naming import LABEL_PREFIX

ANNOTATION_REPORTED = f"{LABEL_PREFIX}/reported"


def reported_mark(try_number: int, max_tries: int) -> str:
    """The annotation value a succeeding try writes on the Jobs it reports."""
    return f"try={int(try_number)},max_tries={int(max_tries)}"


def parse_mark(value: str | None) -> tuple[int, int] | None:
    """``(try_number, max_tries)`` from a mark, or None if absent or not ours."""
    if not value:
        return None
    fields = dict(part.partition("=")[::2] for part in value.split(","))
    try:
        return int(fields["try"]), int(fields["max_tries"])
    except (KeyError, ValueError):
        return None


def job_mark(job: Mapping[str, Any]) -> tuple[int, int] | None:
    return parse_mark(((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REPORTED))


def keep_succeeded(job: Mapping[str, Any], max_tries: int) -> bool:
    """Whether a new try keeps this succeeded Job instead of running it again (see module docstring)."""
    mark = job_mark(job)
    return mark is None or mark[1] == int(max_tries)


def cleared_since_success(jobs: Sequence[Mapping[str, Any]], max_tries: int) -> bool:
    """Whether the task was cleared after a try succeeded with these Jobs (any of them marked so)."""
    return any((m := job_mark(j)) is not None and m[1] != int(max_tries) for j in jobs)

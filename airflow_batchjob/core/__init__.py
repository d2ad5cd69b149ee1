"""Pure core of airflow-batchjob: naming, Job building/validation and status interpretation.

No Airflow imports and no network I/O here, so everything is unit-testable and reusable from the
operator, the trigger and the in-Pod worker alike.
"""

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.naming import (
    LABEL_PREFIX,
    is_dns1123_label,
    job_name,
    sanitize_label_value,
    task_annotations,
    task_labels,
    task_selector,
)
from airflow_batchjob.core.outcome import (
    JobOutcome,
    JobState,
    format_indexes,
    outcome_from_job,
    parse_indexes,
)
from airflow_batchjob.core.spec import ContainerParams, JobOverrides, build_job, load_template, validate_job

__all__ = [
    "LABEL_PREFIX",
    "ContainerParams",
    "InvalidJobSpecError",
    "JobOutcome",
    "JobOverrides",
    "JobState",
    "build_job",
    "format_indexes",
    "is_dns1123_label",
    "job_name",
    "load_template",
    "outcome_from_job",
    "parse_indexes",
    "sanitize_label_value",
    "task_annotations",
    "task_labels",
    "task_selector",
    "validate_job",
]

"""Exceptions of the provider: typed, so ``ExceptionRetryPolicy`` rules can name them."""

from __future__ import annotations

from typing import Any

from airflow_batchjob._compat import AirflowException, AirflowFailException


class BatchJobError(AirflowException):
    """Base of the provider's runtime errors."""


class JobFailedError(BatchJobError):
    """The Job failed; ``outcome`` is the JSON-safe outcome dict. A retry runs the Job again."""

    def __init__(self, message: str, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class JobDeletedError(BatchJobError):
    """The Job was deleted (or replaced) while being waited on."""


class JobTimeoutError(BatchJobError):
    """The wait passed its deadline."""


class JobStuckError(BatchJobError):
    """A Pod could not be scheduled or start its containers within ``pending_timeout``."""


class InvalidJobTemplateError(AirflowFailException, ValueError):
    """Bad parameters or template: a retry cannot fix it, so the task fails without retrying."""


class JobFailedSensorError(JobFailedError, AirflowFailException):
    """Raised by sensors, so ``soft_fail`` behaves alike in poke and deferrable mode."""


class InvalidResultError(BatchJobError, AirflowFailException):
    """A Pod succeeded but left an unusable result (not JSON, or over the 4 KiB termination
    message): the program must change, so the task fails without retrying."""


class KubernetesCallError(BatchJobError):
    """An async Kubernetes API call of ``hooks/`` failed with an answer its caller acts on.

    ``status`` is the HTTP status (0 or None when no answer came), ``reason`` its phrase: triggers
    tell a log that is not there yet from one that is gone without importing the Kubernetes client.
    """

    def __init__(self, status: int | None, reason: str | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason

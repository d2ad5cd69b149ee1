"""The optional broker clients: a queue pattern without its extra fails at DAG parse, naming the extra.

``pip install airflow-batchjob`` runs plain Jobs, groups and Indexed Jobs; the queue patterns need
``airflow-batchjob[rabbitmq]`` (pika) or ``airflow-batchjob[redis]`` (redis-py), and the in-Pod
worker ``airflow-batchjob[worker]`` (both, without Airflow).
"""

from __future__ import annotations

import importlib

CLIENTS = {"rabbitmq": "pika", "redis": "redis"}


def missing_message(broker: str, extra: str | None = None) -> str:
    module = CLIENTS[broker]
    return (
        f"the {broker} queue pattern needs the {module!r} package, which is not installed: "
        f"pip install 'airflow-batchjob[{extra or broker}]'"
    )


def require(broker: str) -> None:
    """Raise Airflow's optional-feature error, naming the extra, unless the broker's client imports."""
    try:
        importlib.import_module(CLIENTS[broker])
    except ImportError as e:
        from airflow_batchjob._compat import AirflowOptionalProviderFeatureException

        raise AirflowOptionalProviderFeatureException(missing_message(broker)) from e

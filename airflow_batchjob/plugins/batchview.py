"""The provider's Airflow plugin: the Batch view's app, and on Airflow 3.1+ its task instance tab.

Registered in provider info (``plugins``), so installing the provider is enough. Every Airflow 3
mounts ``fastapi_apps`` in its api-server; ``external_views`` (a tab on the task instance page,
showing the same page in a frame) exist from Airflow 3.1, and 3.0 would refuse the key, so it is
declared there only. On 3.0 the view is reached through the "Batch view" extra link.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_batchjob.links import URL_PREFIX
from airflow_batchjob.plugins.app import create_app
from airflow_batchjob.plugins.records import AIRFLOW_3_1

PLUGIN_NAME = "batchjob"
TAB_ROUTE = "batch-view"


def _base_path() -> str:
    """The path part of ``[api] base_url`` (Airflow behind a path prefix), without its last slash."""
    import urllib.parse

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return (urllib.parse.urlsplit(base).path if "://" in base else base).rstrip("/")


def external_views() -> list[dict[str, Any]]:
    """The task instance tab (Airflow 3.1+ fills in the placeholders)."""
    return [
        {
            "name": "Batch view",
            "href": _base_path()
            + URL_PREFIX
            + "/dags/{DAG_ID}/runs/{RUN_ID}/tasks/{TASK_ID}?map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": TAB_ROUTE,
        }
    ]


class BatchViewPlugin(AirflowPlugin):
    """The Batch view of a task instance's Jobs, items and indexes."""

    name = PLUGIN_NAME
    fastapi_apps = [  # noqa: RUF012 (AirflowPlugin declares it so)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Batch view"}
    ]
    if AIRFLOW_3_1:
        external_views = external_views()

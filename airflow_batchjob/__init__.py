"""Apache Airflow provider for every Kubernetes batch-Job pattern."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's provider manager (entry point ``apache_airflow_provider``)."""
    from airflow_batchjob.config import provider_config
    from airflow_batchjob.core.brokerconn import RABBITMQ_FORM

    return {
        "package-name": "airflow-batchjob",
        "name": "Kubernetes Batch Jobs",
        "description": "Run every Kubernetes batch-Job pattern (template expansion, work queues, "
        "Indexed Jobs, plain Jobs) from Airflow, with watch-based deferrable waiting.",
        "versions": [__version__],
        # Airflow replaces this with the package's Documentation URL (pyproject.toml): the same.
        "documentation-url": "https://airflow-batchjob.readthedocs.io/",
        "integrations": [
            {
                "integration-name": "Kubernetes Batch Jobs",
                "external-doc-url": "https://kubernetes.io/docs/concepts/workloads/controllers/job/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Kubernetes Batch Jobs",
                "python-modules": [
                    "airflow_batchjob.operators.job",
                    "airflow_batchjob.operators.jobgroup",
                    "airflow_batchjob.operators.indexed",
                    "airflow_batchjob.operators.queue",
                    "airflow_batchjob.operators.lifecycle",
                    "airflow_batchjob.operators.kueue",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Kubernetes Batch Jobs",
                "python-modules": ["airflow_batchjob.sensors.job", "airflow_batchjob.sensors.jobgroup"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Kubernetes Batch Jobs",
                "python-modules": ["airflow_batchjob.triggers.job", "airflow_batchjob.triggers.jobgroup"],
            }
        ],
        "task-decorators": [
            {"name": "batch_map", "class-name": "airflow_batchjob.decorators.batch_map.batch_map_task"}
        ],
        "config": provider_config(),
        # The links to the Batch view. Its plugin is registered as an "airflow.plugins" entry point
        # (pyproject.toml), which Airflow always loads; listed here too, it would be loaded twice
        # under [core] lazy_discover_providers = False and reported as a duplicate.
        "extra-links": ["airflow_batchjob.links.BatchViewLink", "airflow_batchjob.links.JobLink"],
        "hooks": [
            {
                "integration-name": "Kubernetes Batch Jobs",
                "python-modules": [
                    "airflow_batchjob.hooks.batchjob",
                    "airflow_batchjob.hooks.watch",
                    "airflow_batchjob.hooks.rabbitmq",
                ],
            }
        ],
        # RabbitMQ has no Airflow provider; Redis connections are the Redis provider's type. Airflow
        # 3.3 reads the form from here, older ones from the hooks' get_ui_field_behaviour.
        "connection-types": [
            {
                "hook-class-name": f"airflow_batchjob.hooks.rabbitmq.{hook}",
                "hook-name": name,
                "connection-type": conn_type,
                "ui-field-behaviour": {
                    "hidden-fields": RABBITMQ_FORM["hidden_fields"],
                    "relabeling": RABBITMQ_FORM["relabeling"],
                    "placeholders": RABBITMQ_FORM["placeholders"],
                },
            }
            for hook, name, conn_type in (
                ("RabbitMQHook", "RabbitMQ (airflow-batchjob)", "amqp"),
                ("RabbitMQTLSHook", "RabbitMQ over TLS (airflow-batchjob)", "amqps"),
            )
        ],
    }

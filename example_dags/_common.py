"""Settings shared by the example DAGs (environment overridable, so they run on any cluster)."""

import os

import pendulum

NAMESPACE = os.environ.get("BATCHJOB_EXAMPLE_NAMESPACE", "default")
# The plain-program examples use a public image; the worker examples need an image with
# `pip install airflow-batchjob[worker]` (see docker/worker.Dockerfile).
IMAGE = os.environ.get("BATCHJOB_EXAMPLE_IMAGE", "busybox:1.36")
WORKER_IMAGE = os.environ.get("BATCHJOB_WORKER_IMAGE", "ghcr.io/airflow-batchjob/worker:0.1.0")
START = pendulum.datetime(2024, 1, 1, tz="UTC")
DEFAULT_ARGS = {"retries": 1, "retry_delay": pendulum.duration(seconds=10)}

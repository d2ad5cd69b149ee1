"""@task.batch_map over BENCH_BATCH_MAP_ITEMS words in one task (benchmarks/batch_map_scale.py).

One item (``item-<half>``) raises on its first attempt: ``backoff_limit_per_index=1`` retries that
index alone, in the same Job, and its Pod sees the failure count Kubernetes writes on it.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task
from bench_common import ENABLED, NAMESPACE, items
from kubernetes.client import models as k8s

N = int(os.environ.get("BENCH_BATCH_MAP_ITEMS", "1000"))
FLAKY = f"item-{N // 2:05d}"
# Kubernetes counts an index's failed Pods in this annotation of its next Pod (backoffLimitPerIndex).
INDEX_FAILURES = k8s.V1EnvVar(
    name="INDEX_FAILURES",
    value_from=k8s.V1EnvVarSource(
        field_ref=k8s.V1ObjectFieldSelector(
            field_path="metadata.annotations['batch.kubernetes.io/job-index-failure-count']"
        )
    ),
)

if ENABLED:
    with DAG(
        "bench_batch_map",
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        default_args={"retries": 0},
    ):

        @task.batch_map(
            namespace=NAMESPACE,
            image=os.environ.get("BENCH_BATCH_MAP_IMAGE", "worker"),
            parallelism=int(os.environ.get("BENCH_BATCH_MAP_PARALLELISM", "50")),
            backoff_limit_per_index=1,
            pod_runtime_info_envs=[INDEX_FAILURES],
        )
        def measure(word: str, flaky: str = "") -> dict[str, object]:
            import os

            failures = int(os.environ.get("INDEX_FAILURES") or 0)
            if word == flaky and failures == 0:
                raise RuntimeError(f"first attempt at {word}")
            return {"word": word, "length": len(word), "failures": failures}

        measure(items(N), flaky=FLAKY)

"""@task.batch_map: a Python function mapped over many items in one task, as one Indexed Job."""

from typing import Any

from _common import DEFAULT_ARGS, NAMESPACE, START, WORKER_IMAGE
from airflow.sdk import DAG, task

with DAG(
    "example_batch_map",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **@task.batch_map**: `score` is a Python function of one word. Called with the upstream list,
    it runs as one task and one Indexed Job: Pod i calls `score(words[i], weight=2)` with the
    image's `python3` (any image with Python 3.9 or newer; the worker image is one) and the task
    returns the results in the words' order. A retry runs only the failed words.
    """,
) as dag:

    @task
    def list_words() -> list[str]:
        return ["kubernetes", "airflow", "indexed", "job", "batch", "map"]

    @task.batch_map(namespace=NAMESPACE, image=WORKER_IMAGE, parallelism=3, backoff_limit_per_index=1)
    def score(word: str, weight: int = 1) -> dict[str, Any]:
        """Runs in a Pod per word: imports go inside, arguments and the result are JSON."""
        import hashlib

        print(f"scoring {word!r}")
        return {
            "word": word,
            "points": len(word) * weight,
            "digest": hashlib.sha256(word.encode()).hexdigest()[:12],
        }

    @task
    def report(scores: list[dict[str, Any]]) -> int:
        for s in scores:
            print(f"{s['word']:>12} {s['points']:3d} {s['digest']}")
        return sum(s["points"] for s in scores)

    report(score(list_words(), weight=2))

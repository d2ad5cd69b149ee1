"""``indexed``: the item of an Indexed Job's Pod is the file ``<items-dir>/$JOB_COMPLETION_INDEX``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from airflow_batchjob.worker.run import Stop, log, program_env, run_program, write_summary

EXIT_USAGE = 2


def item_path(items_dir: str, index: str | None) -> tuple[int, Path] | str:
    """The index and item file for ``JOB_COMPLETION_INDEX``, or why there is none."""
    if index is None or index == "":
        return "JOB_COMPLETION_INDEX is not set: the indexed mode runs in an Indexed Job's Pods"
    if not (index.isascii() and index.isdigit()):
        return f"JOB_COMPLETION_INDEX={index!r} is not a non-negative integer"
    i = int(index)
    path = Path(items_dir) / str(i)
    if not path.is_file():
        return f"no item file {path} for index {i} (is --items-dir the mounted items directory?)"
    return i, path


def run(items_dir: str, program: Sequence[str], stop: Stop, termination_log: str | None) -> int:
    """Run the program on this Pod's item: on stdin (the file itself), in ``ITEM``, ``ITEM_FILE``."""
    found = item_path(items_dir, os.environ.get("JOB_COMPLETION_INDEX"))
    if isinstance(found, str):
        log(found)
        return EXIT_USAGE
    index, path = found
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    env = program_env(text, {"ITEM_INDEX": str(index), "ITEM_FILE": str(path)})
    with path.open("rb") as stdin:
        code = run_program(program, stdin, env, stop)
    write_summary(termination_log, {"mode": "indexed", "index": index, "exit_code": code})
    return code

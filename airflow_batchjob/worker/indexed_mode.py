"""``indexed``: the item of an Indexed Job's Pod is the file ``<items-dir>/$JOB_COMPLETION_INDEX``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from airflow_batchjob.core.results import RESULT_ENV
from airflow_batchjob.worker.run import (
    EXIT_BAD_RESULT,
    Stop,
    log,
    new_result_file,
    program_env,
    run_program,
    take_result,
    write_summary,
)

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
    """Run the program on this Pod's item: on stdin (the file itself), in ``ITEM``, ``ITEM_FILE``.

    What the program writes to ``$BATCHJOB_RESULT_FILE`` goes into the summary's ``result``; an
    unusable result (not JSON, too big) fails the item with exit code 65.
    """
    found = item_path(items_dir, os.environ.get("JOB_COMPLETION_INDEX"))
    if isinstance(found, str):
        log(found)
        return EXIT_USAGE
    index, path = found
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    result_file = new_result_file()
    env = program_env(text, {"ITEM_INDEX": str(index), "ITEM_FILE": str(path), RESULT_ENV: result_file})
    with path.open("rb") as stdin:
        code = run_program(program, stdin, env, stop)
    summary: dict[str, object] = {"mode": "indexed", "index": index, "exit_code": code}
    error = take_result(result_file, summary, f"item {index}") if code == 0 else None
    if error is not None:
        log(error)
        code = summary["exit_code"] = EXIT_BAD_RESULT
        summary["error"] = error[:1000]
    with contextlib.suppress(OSError):
        os.unlink(result_file)
    write_summary(termination_log, summary)
    return code

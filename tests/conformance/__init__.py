"""One suite, every worker: ``python -m airflow_batchjob.worker`` and the injected Go binary
(``injector/``, built by ``scripts/build_injector.sh``) must behave the same (issue 31).

The ``worker`` fixture (conftest.py) runs each test once per implementation. Besides behaviour
tests (at-least-once, leases reclaimed after SIGKILL, results, SIGTERM, TLS, exit codes), several
tests run both workers on the same input and compare what the program received, the summary and
the worker's own messages byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.brokers import Worker, Workers, pod_environ


@dataclass(frozen=True)
class Impl:
    """A worker implementation: its name and the command that runs it."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def run(
        self,
        mode: str,
        options: Sequence[str],
        program: Sequence[str],
        env: Mapping[str, str],
        summary: Path,
        stdin: bytes = b"",
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run to the end; stdout and stderr captured."""
        cmd = [*self.command, mode, *options, "--termination-log", str(summary), "--", *program]
        return subprocess.run(
            cmd, env={**pod_environ(), **self.env, **env}, input=stdin, capture_output=True, timeout=timeout
        )


class ImplWorkers(Workers):
    """``tests.brokers.Workers`` for one implementation (the same process groups and clean-up)."""

    def __init__(self, impl: Impl, tmp: Path, mode: str, env: Mapping[str, str], secrets: Sequence[str] = ()):
        super().__init__(tmp, mode, {**impl.env, **env}, secrets)
        self.impl = impl

    def start(
        self, options: Sequence[str], program: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Worker:
        n = len(self.started)
        out, err, summary = (self.tmp / f"worker-{n}.{ext}" for ext in ("out", "err", "json"))
        cmd = [*self.impl.command, self.mode, *options, "--termination-log", str(summary), "--", *program]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                cmd,
                env={**pod_environ(), **self.env, **(env or {})},
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        w = Worker(proc, out, err, summary)
        self.started.append(w)
        return w


def summary_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}

"""The worker implementations under test: the Python worker and the Go binary (built once, cached)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from . import Impl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def go_binary() -> Path:
    """``scripts/build_injector.sh``'s binary (a warm cache returns at once)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "build_injector.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["python", "go"])
def worker(request: pytest.FixtureRequest) -> Impl:
    if request.param == "python":
        return Impl("python", (sys.executable, "-m", "airflow_batchjob.worker"))
    return Impl("go", (str(request.getfixturevalue("go_binary")),))


@pytest.fixture
def both(go_binary: Path) -> tuple[Impl, Impl]:
    """Both implementations, for tests that compare their output."""
    return Impl("python", (sys.executable, "-m", "airflow_batchjob.worker")), Impl("go", (str(go_binary),))

"""tests/watchdog.py on a real pytest run: a test that swallows pytest-timeout's failure (as an
asyncio loop does) ends the run once its timeout plus the grace have passed, and says where."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HUNG = """
import time
import pytest

@pytest.mark.timeout(1)
def test_swallows_its_timeout():
    print("before the hang")
    while True:
        try:
            time.sleep(0.05)
        except BaseException:  # what an event loop does with a callback's exception
            pass
"""

QUICK = """
import time
import pytest

@pytest.mark.timeout(1)
def test_ends_in_time():
    time.sleep(0.2)

def test_after_it():
    time.sleep(2)  # past the first test's timeout and grace: its timer must be cancelled
"""

CONFTEST = "from tests.watchdog import pytest_runtest_protocol  # noqa: F401\n"


def run(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_it.py").write_text(body)
    env = {**os.environ, "BATCHJOB_WATCHDOG_GRACE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    return done, time.monotonic() - t0


def test_a_test_that_swallows_its_timeout_ends_the_run(tmp_path: Path) -> None:
    done, took = run(tmp_path, HUNG)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_swallows_its_timeout still runs 1 s past its 1 s timeout" in done.stdout
    assert "before the hang" in done.stdout  # what it printed
    assert "in test_swallows_its_timeout" in done.stdout  # where it hung
    assert took < 60


def test_a_test_that_ends_in_time_is_left_alone(tmp_path: Path) -> None:
    done, _ = run(tmp_path, QUICK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout

"""A last resort past pytest-timeout: end the run when a test outlives its timeout by far.

pytest-timeout's signal method raises ``Failed`` in the main thread. Where that thread runs an
asyncio loop (``dag.test`` runs a deferred task's trigger inline), the loop logs the exception
and runs on, so a test waiting on a broken cluster waits until CI's own limit ends the whole run,
with nothing printed. Here a timer, armed for each test at its timeout plus ``GRACE_SECONDS``,
prints the test's name, what it printed so far and every thread's stack, then exits: the lane
fails within minutes and says where it hung.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Iterator

import pytest

GRACE_SECONDS = float(os.environ.get("BATCHJOB_WATCHDOG_GRACE", "120"))  # tests/unit/test_watchdog.py sets it


def _limit(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


def _give_up(item: pytest.Item, limit: float) -> None:
    out = err = ""
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:  # give the terminal back, keeping what the test printed
        out, err = capman.read_global_capture()
        capman.suspend_global_capture(in_=True)
    tw = item.config.get_terminal_writer()
    tw.line()
    tw.sep("!", f"{item.nodeid} still runs {GRACE_SECONDS:.0f} s past its {limit:.0f} s timeout", red=True)
    for name, text in (("stdout", out), ("stderr", err)):
        if text:
            tw.sep("-", f"captured {name}")
            tw.line(text[-20_000:])
    tw.sep("-", "stacks")
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        tw.line(f"thread {names.get(ident, ident)}:")
        tw.line("".join(traceback.format_stack(frame)))
    tw.flush()
    sys.stdout.flush()
    os._exit(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    limit = _limit(item)
    timer = threading.Timer(limit + GRACE_SECONDS, _give_up, args=(item, limit)) if limit > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()

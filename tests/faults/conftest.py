"""Fault tests report what they injected and what it cost (kills, items lost, duplicates) at the end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_LINES: list[str] = []


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    def add(line: str) -> None:
        _LINES.append(f"{request.node.name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fault injection figures")
        for line in _LINES:
            terminalreporter.write_line(line)

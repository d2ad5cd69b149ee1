"""A trigger's on_kill runs its clean-up to the end although Airflow cancels it again: the
triggerer re-sends its cancel at every sync until the trigger has finished (CI run ci12 lost a
user's delete that way, mid-way through reading the task's state)."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_batchjob.triggers.base import WaitTrigger


class Gated(WaitTrigger):
    """A trigger whose clean-up waits until the test lets it end."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.cleaned = False

    async def _wait(self) -> dict[str, Any]:
        return {"status": "met"}

    def _error_event(self, error: Exception) -> dict[str, Any]:
        return {"status": "error"}

    def _identity(self) -> dict[str, Any]:
        return {}

    async def _kill(self) -> None:
        await self.gate.wait()
        self.cleaned = True


def test_on_kill_finishes_its_clean_up_through_repeated_cancels() -> None:
    async def main() -> tuple[bool, bool]:
        trigger = Gated()
        kill = asyncio.ensure_future(trigger.on_kill())
        for _ in range(3):  # one cancel per sync of the triggerer with its supervisor
            await asyncio.sleep(0.01)
            kill.cancel()
        await asyncio.sleep(0.01)
        waiting = not kill.done() and not trigger.cleaned
        trigger.gate.set()
        await kill
        return waiting, trigger.cleaned

    waiting, cleaned = asyncio.run(main())
    assert waiting  # on_kill still waits for its clean-up after three cancels
    assert cleaned


def test_on_kill_without_a_clean_up_returns_at_once() -> None:
    class Plain(Gated):
        _kill = WaitTrigger._kill

    asyncio.run(asyncio.wait_for(Plain().on_kill(), 1))

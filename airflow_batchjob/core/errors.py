"""Exceptions raised by the pure core before anything touches a cluster."""

from __future__ import annotations

from collections.abc import Sequence


class InvalidJobSpecError(ValueError):
    """A Job (or its inputs) would be rejected by the apiserver, or cannot be built at all.

    Raised early, with a message saying what to change, so a DAG author sees the problem at
    parse/submit time rather than as an opaque 422 from the cluster. ``problems`` lists every
    issue found, so one run reports them all instead of one per attempt.
    """

    def __init__(self, message: str | Sequence[str]) -> None:
        self.problems: list[str] = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.problems))

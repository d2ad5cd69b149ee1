"""Index lists in Kubernetes' interval form ("0-3,7"), as Indexed Jobs write and take them.

The Job controller writes ``status.completedIndexes`` and ``status.failedIndexes`` in this form;
the apiserver takes ``successPolicy.rules[].succeededIndexes`` in it. One reader serves both: as
the status is read (:func:`parse_indexes`, lenient) and as the apiserver validates what a user
wrote (:func:`count_indexes`, its strict rules). :func:`format_indexes` writes the controller's form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_INTERVAL_RE = re.compile(r"(\d+)(?:-(\d+))?")


def _intervals(text: str, *, strip: bool) -> Iterator[tuple[str, int, int, bool]]:
    """Each comma-separated part as ``(part, low, high, written as a range)``; ValueError naming
    the first part that is neither an index nor ``low-high``. Bounds are not checked here."""
    for part in text.split(","):
        # fullmatch: "$" would let a trailing newline through, which the apiserver refuses.
        m = _INTERVAL_RE.fullmatch(part.strip() if strip else part)
        if m is None:
            raise ValueError(f"{part!r} is not an index or a 'low-high' range")
        lo = int(m.group(1))
        ranged = m.group(2) is not None
        yield part, lo, int(m.group(2)) if ranged else lo, ranged


def parse_indexes(s: str | None) -> list[int]:
    """Expand the controller's interval form ("1,3-5,7") into sorted unique indexes.

    Accepts both "1,2" and "1-2" for a pair (the controller writes the former), tolerates spaces.
    Raises ValueError on anything else, since a garbled index list means we misread the status.
    """
    if s is None or not s.strip():
        return []
    out: set[int] = set()
    try:
        for part, lo, hi, _ranged in _intervals(s, strip=True):
            if hi < lo:
                raise ValueError(f"range {part!r} goes backwards")
            out.update(range(lo, hi + 1))
    except ValueError as exc:
        raise ValueError(f"invalid index list {s!r}: {exc}") from None
    return sorted(out)


def count_indexes(text: str, completions: int) -> int:
    """Count the indexes in a user's interval list ("0,2-4"); ValueError if the apiserver would refuse it.

    Same rules as the apiserver: no spaces, ascending, non-overlapping, ranges written low-high with
    low < high, and every index below ``completions``.
    """
    if not text:
        return 0
    total, last = 0, -1
    for part, lo, hi, ranged in _intervals(text, strip=False):
        if ranged and lo >= hi:
            raise ValueError(f"range {part!r} must go from low to high")
        if hi >= completions:
            raise ValueError(f"index {hi} is not below completions ({completions})")
        if lo <= last:
            raise ValueError(f"{part!r} must come after {last} (ascending, no overlaps)")
        total += hi - lo + 1
        last = hi
    return total


def format_indexes(indexes: Iterable[int]) -> str:
    """Compress indexes exactly as the Job controller does (indexed_job_utils.go).

    Consecutive runs of three or more become "lo-hi"; a run of two is written "lo,hi".
    """
    ordered = sorted(set(indexes))
    if ordered and ordered[0] < 0:
        raise ValueError("indexes must be non-negative")
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        lo, hi = ordered[i], ordered[j]
        if hi == lo:
            parts.append(str(lo))
        elif hi == lo + 1:
            parts.append(f"{lo},{hi}")
        else:
            parts.append(f"{lo}-{hi}")
        i = j + 1
    return ",".join(parts)

"""Fail unless every direct dependency (and the named extras') is installed at its declared floor.

Run with the floor lane's interpreter: ``python scripts/check_floors.py pyproject.toml rabbitmq,redis``.
A floor is the ``>=`` bound of a requirement; one without a ``>=`` bound is reported, not checked.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import version

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version


def floors(pyproject: str, extras: list[str]) -> dict[str, Version]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += [r for r in project["optional-dependencies"][extra] if not r.startswith(project["name"])]
    out: dict[str, Version] = {}
    for text in reqs:
        req = Requirement(text)
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if not lows:
            print(f"check_floors: {text}: no >= bound, not checked")
            continue
        out[re.sub(r"[-_.]+", "-", req.name).lower()] = max(lows)
    return out


def main() -> int:
    pyproject, extras = sys.argv[1], [e for e in sys.argv[2].split(",") if e]
    wrong = []
    for name, floor in sorted(floors(pyproject, extras).items()):
        installed = Version(version(name))
        print(f"check_floors: {name} {installed} (floor {floor})")
        if installed != floor:
            wrong.append(f"{name} {installed} is not its floor {floor}")
    if wrong:
        print("check_floors: " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

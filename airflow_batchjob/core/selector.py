"""Kubernetes label selectors, parsed and matched locally.

The shared Job watch follows a whole namespace; each waiter keeps the Jobs its selector matches,
so selectors must be evaluated here exactly as the apiserver would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from airflow_batchjob.core.errors import InvalidJobSpecError

_TERM = re.compile(
    r"""^\s*(?:
        (?P<notexists>!\s*(?P<nk>[^\s=!,()]+))
      | (?P<key>[^\s=!,()]+)\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)
          | \s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
        )?
    )\s*(?:,|$)""",
    re.X,
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        return not has or value not in self.values  # "!=", "notin"


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse ``a=b,c!=d,e in (f,g),!h,i`` into requirements; raise with a fix-it message if malformed."""
    reqs: list[Requirement] = []
    rest = text.strip()
    while rest:
        m = _TERM.match(rest)
        if not m or m.end() == 0:
            raise InvalidJobSpecError(
                f"label selector {text!r} is malformed near {rest!r}: use k=v, k!=v, "
                "k in (a,b), k notin (a,b), k or !k, separated by commas"
            )
        if m.group("notexists"):
            reqs.append(Requirement(m.group("nk"), "!"))
        elif m.group("op"):
            op = "=" if m.group("op") in ("=", "==") else "!="
            reqs.append(Requirement(m.group("key"), op, (m.group("value"),)))
        elif m.group("setop"):
            values = tuple(v.strip() for v in m.group("values").split(",") if v.strip())
            reqs.append(Requirement(m.group("key"), m.group("setop"), values))
        else:
            reqs.append(Requirement(m.group("key"), "exists"))
        rest = rest[m.end() :].strip()
    return tuple(reqs)


def selector_matches(selector: tuple[Requirement, ...] | str, labels: Mapping[str, str] | None) -> bool:
    """True when every requirement holds for ``labels`` (an empty selector matches everything)."""
    reqs = parse_selector(selector) if isinstance(selector, str) else selector
    return all(r.matches(labels or {}) for r in reqs)

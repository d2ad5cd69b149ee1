"""Kubernetes label selectors, parsed and matched locally.

The shared Job watch follows a whole namespace; each waiter keeps the Jobs its selector matches,
so selectors must be parsed and evaluated here exactly as the apiserver does
(``k8s.io/apimachinery/pkg/labels``): what it rejects with HTTP 400 is rejected here too.

The syntax, requirements joined by commas (all must hold)::

    key                     the label exists, whatever its value
    !key                    the label does not exist
    key=value, key==value   the label exists with this value ("key=" means the empty value)
    key!=value              the label is absent, or has another value
    key in (v1,v2)          the label exists with one of these values
    key notin (v1,v2)       the label is absent, or has none of these values
    key>3, key<3            the label exists and, read as an integer, is greater / less

Whitespace (space, tab, CR, LF) between tokens is ignored. A key is a label name (at most 63
characters) with an optional DNS-subdomain prefix, ``example.com/name``; values must be valid
label values. An empty slot in a value set is the empty value: ``()`` is the set {""}, and
``(a,,b)`` and ``(a,)`` contain "" too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from airflow_batchjob.core.errors import InvalidJobSpecError

_WHITESPACE = " \t\r\n"
_SYMBOL_CHARS = "=!(),<>"
_TWO_CHAR_SYMBOLS = ("==", "!=")
_WORD = "word"  # kind of a key / value / keyword token; symbols are their own kind
_END = "end"

_NAME_MAX = 63
_PREFIX_MAX = 253
_VALUE_MAX = 63
_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_INT_RE = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt(s, 10, 64) reads
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Operator token -> Requirement.op
_OPERATORS = {"=": "=", "==": "=", "!=": "!=", ">": ">", "<": "<", "in": "in", "notin": "notin"}

_SYNTAX = (
    "write requirements such as k=v, k!=v, k in (a,b), k notin (a,b), k>1, k<1, k or !k, separated by commas"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
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
        if self.op in (">", "<"):
            actual = _int64(value) if value is not None else None
            bound = _int64(self.values[0]) if len(self.values) == 1 else None
            if actual is None or bound is None:
                return False  # absent, or not an integer: never matches, as in the apiserver
            return actual > bound if self.op == ">" else actual < bound
        return not has or value not in self.values  # "!=", "notin"


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse ``a=b,c!=d,e in (f,g),!h,i,j>3`` into requirements, in the order written.

    Raises ``InvalidJobSpecError`` (saying what to fix) for anything the apiserver would reject.
    Values of ``in`` / ``notin`` are sorted and deduplicated, as the apiserver keeps them.
    """
    if not isinstance(text, str):
        raise InvalidJobSpecError(f"label selector must be a string, not {type(text).__name__}")
    if "\0" in text:
        # The apiserver's byte lexer ends a token, or the whole selector, at a NUL, silently
        # dropping the rest; a NUL is never meant, so refuse it rather than guess.
        raise InvalidJobSpecError(f"label selector {text!r} is malformed: it contains a NUL character")
    return _Parser(text).selector()


def selector_matches(selector: tuple[Requirement, ...] | str, labels: Mapping[str, str] | None) -> bool:
    """True when every requirement holds for ``labels`` (an empty selector matches everything)."""
    reqs = parse_selector(selector) if isinstance(selector, str) else selector
    return all(r.matches(labels or {}) for r in reqs)


# ------------------------------------------------------------------------------------------------
# tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # _WORD, _END, or the symbol itself: "=", "==", "!=", "!", "(", ")", ",", ">", "<"
    text: str
    pos: int  # 0-based offset in the selector


def _tokens(text: str) -> Iterator[_Token]:
    """Split a selector into words (keys, values, ``in``, ``notin``) and symbols.

    A word is a run of anything but whitespace and symbol characters; it is validated later, as
    a key or a value, which is also where the apiserver rejects bad characters. Symbols are read
    longest first, so ``!=`` is one token and ``=!`` two.
    """
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i == len(text):
            yield _Token(_END, "", i)
            return
        if text[i] in _SYMBOL_CHARS:
            symbol = text[i : i + 2] if text[i : i + 2] in _TWO_CHAR_SYMBOLS else text[i]
            yield _Token(symbol, symbol, i)
            i += len(symbol)
            continue
        start = i
        while i < len(text) and text[i] not in _WHITESPACE and text[i] not in _SYMBOL_CHARS:
            i += 1
        yield _Token(_WORD, text[start:i], start)


# ------------------------------------------------------------------------------------------------
# parser


class _Parser:
    """Recursive descent over the tokens; every error names the selector, the spot and the fix."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(_tokens(text))
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != _END:
            self.i += 1
        return token

    def malformed(self, problem: str) -> InvalidJobSpecError:
        return InvalidJobSpecError(f"label selector {self.text!r} is malformed: {problem}")

    def unexpected(self, token: _Token, expected: str) -> InvalidJobSpecError:
        found = "the end of the selector" if token.kind == _END else repr(token.text)
        return self.malformed(f"found {found} at position {token.pos + 1}, expected {expected}; {_SYNTAX}")

    def selector(self) -> tuple[Requirement, ...]:
        if self.peek().kind == _END:
            return ()  # empty (or blank) selector: matches everything
        requirements = [self.requirement()]
        while True:
            token = self.take()
            if token.kind == _END:
                return tuple(requirements)
            if token.kind != ",":
                raise self.unexpected(token, "',' or the end of the selector")
            if self.peek().kind == _END:
                raise self.malformed("it ends with ','; remove the trailing comma")
            requirements.append(self.requirement())

    def requirement(self) -> Requirement:
        negated = self.peek().kind == "!"
        if negated:
            self.take()
        key_token = self.take()
        if key_token.kind != _WORD:
            raise self.unexpected(key_token, "a label key" if negated else "a label key or '!'")
        key = key_token.text
        self.check_key(key)
        if self.peek().kind in (",", _END):
            return Requirement(key, "!" if negated else "exists")
        if negated:
            raise self.unexpected(self.peek(), "',' or the end of the selector ('!key' takes no value)")

        op_token = self.take()
        # "in" and "notin" are operators only here; as a key or a value they are plain words.
        op = _OPERATORS.get(op_token.text)
        if op is None:
            raise self.unexpected(op_token, "an operator: =, ==, !=, in, notin, >, <")
        values = self.value_set() if op in ("in", "notin") else (self.exact_value(),)
        if op in (">", "<") and _int64(values[0]) is None:
            raise self.malformed(
                f"'{key}{op}' needs a whole number such as 3, not {values[0]!r}: '>' and '<' compare "
                "label values as integers"
            )
        for value in values:
            self.check_value(key, value)
        return Requirement(key, op, values)

    def exact_value(self) -> str:
        if self.peek().kind in (",", _END):
            return ""  # "key=" means the empty value
        token = self.take()
        if token.kind != _WORD:
            raise self.unexpected(token, "a value")
        return token.text

    def value_set(self) -> tuple[str, ...]:
        """``( slot , slot ... )`` where each slot is a value or nothing (the empty value)."""
        token = self.take()
        if token.kind != "(":
            raise self.unexpected(token, "'(' opening the set of values, as in 'key in (a,b)'")
        values: set[str] = set()
        while True:
            values.add(self.take().text if self.peek().kind == _WORD else "")
            token = self.take()
            if token.kind == ")":
                return tuple(sorted(values))
            if token.kind != ",":
                raise self.unexpected(token, "',' or ')' (separate values with commas)")

    def check_key(self, key: str) -> None:
        parts = key.split("/")
        if len(parts) > 2:
            raise self.malformed(
                f"label key {key!r} has more than one '/': a key is a name with an optional "
                "DNS-subdomain prefix, such as 'example.com/name'"
            )
        name = parts[-1]
        if len(parts) == 2:
            prefix = parts[0]
            if not prefix:
                raise self.malformed(f"label key {key!r} has an empty prefix before '/'")
            if len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
                raise self.malformed(
                    f"the prefix of label key {key!r} must be a DNS subdomain: at most {_PREFIX_MAX} "
                    "lower-case letters, digits, '-' and '.', starting and ending with a letter or "
                    "digit (such as 'example.com')"
                )
        if not name:
            raise self.malformed(f"label key {key!r} has an empty name")
        if len(name) > _NAME_MAX or not _NAME_RE.fullmatch(name):
            raise self.malformed(
                f"the name of label key {key!r} must be at most {_NAME_MAX} letters, digits, '-', "
                "'_' and '.', starting and ending with a letter or digit"
            )

    def check_value(self, key: str, value: str) -> None:
        if value and (len(value) > _VALUE_MAX or not _NAME_RE.fullmatch(value)):
            raise self.malformed(
                f"value {value!r} for key {key!r} is not a valid label value: it must be empty, or "
                f"at most {_VALUE_MAX} letters, digits, '-', '_' and '.', starting and ending with "
                "a letter or digit"
            )


def _int64(text: str) -> int | None:
    """``text`` as Go's ``strconv.ParseInt(text, 10, 64)`` reads it, or None where it fails."""
    if not _INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None

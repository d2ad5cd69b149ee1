"""Label selectors must be parsed and matched exactly as the apiserver does.

The shared watch follows a whole namespace and filters Jobs locally with these functions, so any
difference from the apiserver means a waiter sees a Job it should not (or misses its own).
Expected results below were checked against a real kube-apiserver 1.37 (``list ... labelSelector``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.selector import Requirement, parse_selector, selector_matches

NONE: dict[str, str] = {}
WEB = {"app": "web"}
DB = {"app": "db"}
EMPTY = {"app": ""}
OTHER = {"tier": "front"}

# ------------------------------------------------------------------------------------------------
# each operator


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        # equality: the key must be present with that value
        ("app=web", WEB, True),
        ("app=web", DB, False),
        ("app=web", NONE, False),
        ("app=web", OTHER, False),
        ("app==web", WEB, True),
        ("app==web", DB, False),
        ("app==web", NONE, False),
        # an empty value is a value: "app=" matches app="" only
        ("app=", EMPTY, True),
        ("app=", WEB, False),
        ("app=", NONE, False),
        # inequality: true when the key is absent
        ("app!=web", WEB, False),
        ("app!=web", DB, True),
        ("app!=web", NONE, True),
        ("app!=web", OTHER, True),
        ("app!=", EMPTY, False),
        ("app!=", WEB, True),
        # set membership
        ("app in (web,db)", WEB, True),
        ("app in (web,db)", DB, True),
        ("app in (web,db)", {"app": "cache"}, False),
        ("app in (web,db)", NONE, False),
        ("app in (web)", WEB, True),
        # set exclusion: true when the key is absent
        ("app notin (web,db)", WEB, False),
        ("app notin (web,db)", DB, False),
        ("app notin (web,db)", {"app": "cache"}, True),
        ("app notin (web,db)", NONE, True),
        ("app notin (web,db)", OTHER, True),
        # existence, whatever the value (even empty)
        ("app", WEB, True),
        ("app", EMPTY, True),
        ("app", NONE, False),
        ("app", OTHER, False),
        # non-existence
        ("!app", WEB, False),
        ("!app", EMPTY, False),
        ("!app", NONE, True),
        ("!app", OTHER, True),
    ],
)
def test_operator(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("selector", "requirement"),
    [
        ("a=b", Requirement("a", "=", ("b",))),
        ("a==b", Requirement("a", "=", ("b",))),
        ("a!=b", Requirement("a", "!=", ("b",))),
        ("a=", Requirement("a", "=", ("",))),
        ("a in (x,y)", Requirement("a", "in", ("x", "y"))),
        ("a notin (x,y)", Requirement("a", "notin", ("x", "y"))),
        ("a", Requirement("a", "exists")),
        ("!a", Requirement("a", "!")),
        ("app.kubernetes.io/name=web", Requirement("app.kubernetes.io/name", "=", ("web",))),
        ("batch.kubernetes.io/job-name", Requirement("batch.kubernetes.io/job-name", "exists")),
        ("v=1.2.3_rc-1", Requirement("v", "=", ("1.2.3_rc-1",))),
    ],
)
def test_parse_single(selector: str, requirement: Requirement) -> None:
    assert parse_selector(selector) == (requirement,)


def test_value_is_case_sensitive() -> None:
    assert not selector_matches("app=Web", WEB)
    assert selector_matches("app!=Web", WEB)


def test_prefixed_keys() -> None:
    labels = {"app.kubernetes.io/name": "web", "batch.kubernetes.io/job-name": "etl-1"}
    assert selector_matches("app.kubernetes.io/name=web,batch.kubernetes.io/job-name in (etl-1)", labels)
    assert not selector_matches("app.kubernetes.io/name=web,!batch.kubernetes.io/job-name", labels)
    assert not selector_matches("name=web", labels)  # the prefix is part of the key


# ------------------------------------------------------------------------------------------------
# empty selectors, parsed selectors, missing labels


@pytest.mark.parametrize("selector", ["", "   ", "\t"])
def test_empty_selector_matches_everything(selector: str) -> None:
    assert parse_selector(selector) == ()
    assert selector_matches(selector, WEB)
    assert selector_matches(selector, NONE)
    assert selector_matches(selector, None)


def test_labels_none_is_no_labels() -> None:
    assert selector_matches("!app", None)
    assert selector_matches("app!=web", None)
    assert selector_matches("app notin (web)", None)
    assert not selector_matches("app", None)
    assert not selector_matches("app=web", None)
    assert not selector_matches("app in (web)", None)


def test_parsed_selector_is_accepted() -> None:
    reqs = parse_selector("app=web,!legacy")
    assert selector_matches(reqs, WEB)
    assert not selector_matches(reqs, {**WEB, "legacy": "1"})
    assert selector_matches((), NONE)


# ------------------------------------------------------------------------------------------------
# combinations: every requirement must hold (AND)

COMBO = "app=web,tier!=db,env in (prod,staging),!legacy,team,zone notin (z9)"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web", "env": "prod", "team": "a"}, True),
        ({"app": "web", "env": "staging", "team": "", "tier": "front", "zone": "z1"}, True),
        ({"app": "web", "env": "prod"}, False),  # team missing
        ({"app": "db", "env": "prod", "team": "a"}, False),
        ({"app": "web", "env": "dev", "team": "a"}, False),
        ({"app": "web", "env": "prod", "team": "a", "tier": "db"}, False),
        ({"app": "web", "env": "prod", "team": "a", "legacy": "true"}, False),
        ({"app": "web", "env": "prod", "team": "a", "zone": "z9"}, False),
        ({}, False),
    ],
)
def test_combination(labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(COMBO, labels) is expected


def test_combination_parses_in_order() -> None:
    assert parse_selector(COMBO) == (
        Requirement("app", "=", ("web",)),
        Requirement("tier", "!=", ("db",)),
        Requirement("env", "in", ("prod", "staging")),
        Requirement("legacy", "!"),
        Requirement("team", "exists"),
        Requirement("zone", "notin", ("z9",)),
    )


def test_contradictory_requirements_match_nothing() -> None:
    assert not selector_matches("app=web,app=db", WEB)
    assert not selector_matches("app,!app", WEB)
    assert not selector_matches("app,!app", NONE)
    assert selector_matches("app=web,app in (web,db),app!=db", WEB)


# ------------------------------------------------------------------------------------------------
# whitespace


@pytest.mark.parametrize(
    "selector",
    [
        "app = web , env in ( prod , staging ) , ! legacy , team",
        "  app=web,env in (prod,staging),!legacy,team  ",
        "app=web ,env in(prod,staging), !legacy ,team",
        "app\t=\tweb,\tenv  in  (prod,  staging),!  legacy,team",
        "app == web,env in (prod,staging),!legacy,team",
    ],
)
def test_whitespace_is_insignificant(selector: str) -> None:
    assert parse_selector(selector) == (
        Requirement("app", "=", ("web",)),
        Requirement("env", "in", ("prod", "staging")),
        Requirement("legacy", "!"),
        Requirement("team", "exists"),
    )


def test_whitespace_around_inequality() -> None:
    assert parse_selector("app != web") == (Requirement("app", "!=", ("web",)),)
    assert parse_selector("app notin ( web )") == (Requirement("app", "notin", ("web",)),)


# ------------------------------------------------------------------------------------------------
# malformed selectors (all rejected by the apiserver too)


@pytest.mark.parametrize(
    "selector",
    [
        "a b",
        "=b",
        "==b",
        "!=b",
        "a in x",
        "a in (x",
        "a notin",
        "a in",
        "a=(b)",
        "!a=b",
        "!a in (x)",
        "!",
        ",a",
        "a,,b",
        ",",
        "a in (x) b",
        "a=b c=d",
        "(a)",
        "a=b)",
        "a!b",
    ],
)
def test_malformed_selector_raises(selector: str) -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        parse_selector(selector)
    assert repr(selector) in str(err.value)
    assert "malformed" in str(err.value)
    with pytest.raises(InvalidJobSpecError):
        selector_matches(selector, WEB)


# ------------------------------------------------------------------------------------------------
# Known divergences from the apiserver: these fail until the parser is fixed.
# Each case was run against kube-apiserver 1.37 (list configmaps with labelSelector=...).


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("a=b,", id="trailing-comma"),  # apiserver: found '', expected: identifier after ','
        pytest.param("a,", id="trailing-comma-after-exists"),
        pytest.param("a=b=c", id="double-equals"),  # apiserver: found '=', expected: ',' or 'end of string'
        pytest.param("a in (x y)", id="space-separated-set"),  # apiserver: found 'y', expected: ',' or ')'
        pytest.param("a=-b", id="invalid-label-value"),  # apiserver: Invalid value: "-b"
        pytest.param("a/b/c=d", id="invalid-label-key"),  # apiserver: Invalid value: "a/b/c"
    ],
)
def test_bug_malformed_selector_accepted(selector: str) -> None:
    """The apiserver rejects these (HTTP 400); parse_selector accepts them and returns requirements."""
    with pytest.raises(InvalidJobSpecError):
        parse_selector(selector)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a>3", {"a": "5"}, True),
        ("a>3", {"a": "2"}, False),
        ("a<3", {"a": "2"}, True),
        ("a<3", {"a": "5"}, False),
    ],
)
def test_bug_gt_lt_selectors_silently_misparsed(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    """The apiserver supports ``a>3`` / ``a<3`` (integer comparison): ``a>3`` returns the object with
    a=5. parse_selector reads ``a>3`` as "label key 'a>3' exists", which matches nothing, with no
    error. Either implement Gt/Lt or reject them; never misread them."""
    try:
        got = selector_matches(selector, labels)
    except InvalidJobSpecError:
        return  # rejecting an unsupported operator is acceptable
    assert got is expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a in ()", {"a": ""}, True),  # apiserver: "()" is the set {""}
        ("a notin ()", {"a": ""}, False),
        ("a in (x,,y)", {"a": ""}, True),  # apiserver: ",," contributes ""
        ("a in (x,)", {"a": ""}, True),
    ],
)
def test_bug_empty_value_in_set(selector: str, labels: dict[str, str], expected: bool) -> None:
    """The apiserver's parser reads an empty slot in a value set as the empty value (labels may be
    ""); parse_selector drops empty slots, so ``a in ()`` matches nothing and ``a notin ()``
    matches a=""."""
    assert selector_matches(selector, labels) is expected


# ------------------------------------------------------------------------------------------------
# property: equality-based selectors agree with a reference evaluator

KEYS = ["a", "b", "app", "example.com/tier", "k-8_s.x"]
VALUES = ["", "x", "y", "v1.2", "A-b_c"]
WS = st.sampled_from(["", " ", "  ", "\t"])


def reference(terms: list[tuple[str, str, str]], labels: dict[str, str]) -> bool:
    """Equality-based requirements, straight from the Kubernetes label-selector documentation."""
    for key, op, value in terms:
        if op in ("=", "==") and not (key in labels and labels[key] == value):
            return False
        if op == "!=" and key in labels and labels[key] == value:
            return False
    return True


@st.composite
def equality_selectors(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, str]]]:
    terms = draw(
        st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(["=", "==", "!="]), st.sampled_from(VALUES)),
            max_size=5,
        )
    )
    parts = [f"{draw(WS)}{k}{draw(WS)}{op}{draw(WS)}{v}{draw(WS)}" for k, op, v in terms]
    return ",".join(parts), terms


label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=len(KEYS))


@given(equality_selectors(), label_sets)
def test_equality_selectors_match_reference(
    selector: tuple[str, list[tuple[str, str, str]]], labels: dict[str, str]
) -> None:
    text, terms = selector
    assert selector_matches(text, labels) is reference(terms, labels)


@given(equality_selectors())
def test_equality_selectors_parse_one_requirement_per_term(
    selector: tuple[str, list[tuple[str, str, str]]],
) -> None:
    text, terms = selector
    reqs = parse_selector(text)
    assert [(r.key, r.op, r.values) for r in reqs] == [
        (k, "!=" if op == "!=" else "=", (v,)) for k, op, v in terms
    ]


def set_reference(terms: list[tuple[str, str, tuple[str, ...]]], labels: dict[str, str]) -> bool:
    for key, op, values in terms:
        ok = {
            "in": key in labels and labels[key] in values,
            "notin": key not in labels or labels[key] not in values,
            "exists": key in labels,
            "!": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@st.composite
def set_selectors(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
    nonempty = [v for v in VALUES if v]
    terms = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KEYS),
                st.sampled_from(["in", "notin", "exists", "!"]),
                st.lists(st.sampled_from(nonempty), min_size=1, max_size=3).map(tuple),
            ),
            max_size=4,
        )
    )
    parts = []
    for key, op, values in terms:
        if op == "exists":
            parts.append(f"{draw(WS)}{key}{draw(WS)}")
        elif op == "!":
            parts.append(f"{draw(WS)}!{draw(WS)}{key}{draw(WS)}")
        else:
            inner = ",".join(f"{draw(WS)}{v}{draw(WS)}" for v in values)
            parts.append(f"{draw(WS)}{key} {draw(WS)}{op}{draw(WS)}({inner}){draw(WS)}")
    return ",".join(parts), terms


@given(set_selectors(), label_sets)
def test_set_based_selectors_match_reference(
    selector: tuple[str, list[tuple[str, str, tuple[str, ...]]]], labels: dict[str, str]
) -> None:
    text, terms = selector
    assert selector_matches(text, labels) is set_reference(terms, labels)

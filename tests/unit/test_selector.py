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
# Formerly divergences from the apiserver (accepted or misread here).
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
def test_selector_the_apiserver_rejects_is_rejected(selector: str) -> None:
    """The apiserver rejects these (HTTP 400); so must parse_selector."""
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
def test_gt_lt_compare_integers(selector: str, labels: dict[str, str], expected: bool) -> None:
    """The apiserver supports ``a>3`` / ``a<3`` (integer comparison): ``a>3`` returns the object with
    a=5. (parse_selector used to read ``a>3`` as "label key 'a>3' exists", matching nothing.)"""
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a in ()", {"a": ""}, True),  # apiserver: "()" is the set {""}
        ("a notin ()", {"a": ""}, False),
        ("a in (x,,y)", {"a": ""}, True),  # apiserver: ",," contributes ""
        ("a in (x,)", {"a": ""}, True),
    ],
)
def test_empty_slot_in_a_value_set_is_the_empty_value(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    """The apiserver's parser reads an empty slot in a value set as the empty value (labels may be
    ""); parse_selector used to drop empty slots, so ``a in ()`` matched nothing."""
    assert selector_matches(selector, labels) is expected


# ------------------------------------------------------------------------------------------------
# Further cases, with the apiserver's answers taken from k8s.io/apimachinery v0.37.2
# pkg/labels (labels.Parse, then Selector.Matches), the code the apiserver runs.


@pytest.mark.parametrize(
    ("selector", "requirement"),
    [
        ("a>3", Requirement("a", ">", ("3",))),
        ("a < 03", Requirement("a", "<", ("03",))),
        ("a in ()", Requirement("a", "in", ("",))),
        ("a in (x,,y)", Requirement("a", "in", ("", "x", "y"))),
        ("a in (x,,)", Requirement("a", "in", ("", "x"))),
        ("a notin (,)", Requirement("a", "notin", ("",))),
        ("a in (y,x,y)", Requirement("a", "in", ("x", "y"))),  # a set: sorted, no duplicates
        ("in", Requirement("in", "exists")),  # "in" / "notin" are keys or values outside operators
        ("in in (in)", Requirement("in", "in", ("in",))),
        ("notin=notin", Requirement("notin", "=", ("notin",))),
        ("a==", Requirement("a", "=", ("",))),
        ("a=b\n", Requirement("a", "=", ("b",))),  # CR and LF are whitespace too
        ("a.example.com/B_c-d", Requirement("a.example.com/B_c-d", "exists")),
        ("k=" + "v" * 63, Requirement("k", "=", ("v" * 63,))),
        ("k" * 63, Requirement("k" * 63, "exists")),
    ],
)
def test_parse_more(selector: str, requirement: Requirement) -> None:
    assert parse_selector(selector) == (requirement,)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a>3", {}, False),  # the key must exist
        ("a<3", {}, False),
        ("a>3", {"a": "abc"}, False),  # and its value be an integer
        ("a<3", {"a": ""}, False),
        ("a>3", {"a": "3"}, False),  # strictly greater
        ("a>3", {"a": "007"}, True),  # compared as integers, not as text
        ("a<10", {"a": "9"}, True),
        ("a>03", {"a": "4"}, True),
        ("a<3", {"a": "-5"}, True),
        ("a<9223372036854775807", {"a": "99999999999999999999"}, False),  # beyond int64: not a number
        ("a>9223372036854775806", {"a": "9223372036854775807"}, True),
        ("a in (x,,)", {"a": ""}, True),
        ("a in (x,,)", {"a": "x"}, True),
        ("a notin (x,)", {"a": ""}, False),
        ("a notin (x,)", {"a": "y"}, True),
    ],
)
def test_match_more(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


@pytest.mark.parametrize(
    ("selector", "fix"),
    [
        ("a=b,", "it ends with ','; remove the trailing comma"),
        ("a>x", "'a>' needs a whole number such as 3, not 'x'"),
        ("a>", "'a>' needs a whole number such as 3, not ''"),
        ("a>9223372036854775808", "needs a whole number"),  # does not fit in an int64
        ("a>-3", "value '-3' for key 'a' is not a valid label value"),
        ("a>=3", "found '=' at position 3, expected a value"),
        ("a=" + "v" * 64, "is not a valid label value: it must be empty, or at most 63"),
        ("a in (x y)", "found 'y' at position 9, expected ',' or ')'"),
        ("a in x", "expected '(' opening the set of values"),
        ("a/b/c=d", "label key 'a/b/c' has more than one '/'"),
        ("/b", "label key '/b' has an empty prefix before '/'"),
        ("a/", "label key 'a/' has an empty name"),
        ("Example.com/b", "the prefix of label key 'Example.com/b' must be a DNS subdomain"),
        ("k" * 64, "must be at most 63 letters, digits"),
        ("-a", "the name of label key '-a' must be"),
        ("a\u00a0=b", r"the name of label key 'a\xa0'"),  # only space, tab, CR, LF are whitespace
        ("!a=b", "('!key' takes no value)"),
        ("a!b", "expected an operator: =, ==, !=, in, notin, >, <"),
        ("a=b\0,c", "contains a NUL character"),
    ],
)
def test_malformed_selector_says_what_to_fix(selector: str, fix: str) -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        parse_selector(selector)
    message = str(err.value)
    assert message.startswith(f"label selector {selector!r} is malformed: ")
    assert fix in message


def test_syntax_errors_show_the_syntax() -> None:
    with pytest.raises(InvalidJobSpecError, match=r"write requirements such as k=v, k!=v, k in \(a,b\)"):
        parse_selector("a b")


@pytest.mark.parametrize("selector", [None, 3, b"a=b", ["a=b"]])
def test_selector_must_be_text(selector: object) -> None:
    with pytest.raises(InvalidJobSpecError, match="label selector must be a string"):
        parse_selector(selector)  # type: ignore[arg-type]


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

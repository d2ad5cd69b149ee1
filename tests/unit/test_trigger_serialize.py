"""JobTrigger.serialize must round-trip through the triggerer's database row.

The triggerer rebuilds the trigger as ``import(classpath)(**kwargs)``: kwargs must be plain JSON
types, default-valued ones omitted, and the rebuilt trigger must serialise identically.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import pytest

from airflow_batchjob.core.wait import WaitFor
from airflow_batchjob.triggers.job import JobTrigger
from airflow_batchjob.triggers.jobgroup import JobGroupTrigger

PARAMETER_SETS: dict[str, dict[str, Any]] = {
    "name-only": {"namespace": "data", "job_name": "etl-1"},
    "selector": {"namespace": "data", "label_selector": "app=etl,run in (r1,r2),!legacy"},
    "name-and-uid": {
        "namespace": "data",
        "job_name": "etl-1",
        "job_uid": "6f1c0a52-2b59-4d3c-9d2e-0c9b1f6a7e11",
    },
    "wait-for-condition": {
        "namespace": "data",
        "job_name": "etl-1",
        "wait_for": WaitFor(condition="Complete", fail_on=("FailureTarget", "Failed")).to_dict(),
    },
    "wait-for-counts-and-indexes": {
        "namespace": "data",
        "label_selector": "app=etl",
        "wait_for": WaitFor(succeeded_at_least=3, indexes=(0, 2, 4)).to_dict(),
    },
    "wait-for-default-goal": {"namespace": "data", "job_name": "etl-1", "wait_for": WaitFor().to_dict()},
    "deadline": {"namespace": "data", "job_name": "etl-1", "deadline": 1_717_171_717.25},
    "delete-on-kill": {
        "namespace": "data",
        "job_name": "etl-1",
        "job_uid": "u-1",
        "delete_on_kill": True,
        "propagation_policy": "Foreground",
    },
    "orphan": {"namespace": "data", "job_name": "etl-1", "propagation_policy": "Orphan"},
    "progress-interval": {"namespace": "data", "job_name": "etl-1", "progress_interval": 2.5},
    "progress-interval-int": {"namespace": "data", "job_name": "etl-1", "progress_interval": 30},
    "other-connection": {"namespace": "data", "job_name": "etl-1", "kubernetes_conn_id": "k8s_prod"},
    "diagnostics": {
        "namespace": "data",
        "job_name": "etl-1",
        "diagnostics": True,
        "diagnose_interval": 5.0,
        "pending_timeout": 300.0,
    },
    "everything": {
        "namespace": "batch-prod",
        "job_name": "etl-2024-05-01",
        "job_uid": "u-2",
        "wait_for": WaitFor(
            condition="SuccessCriteriaMet", succeeded_at_least=2, indexes=(1,), fail_on=("Suspended",)
        ).to_dict(),
        "kubernetes_conn_id": "k8s_prod",
        "deadline": 1_800_000_000.0,
        "delete_on_kill": True,
        "propagation_policy": "Foreground",
        "progress_interval": 60.0,
    },
}

DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(JobTrigger.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def import_classpath(classpath: str) -> type:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def is_plain_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(is_plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_json(v) for k, v in value.items())
    return False


@pytest.fixture(params=list(PARAMETER_SETS), ids=list(PARAMETER_SETS))
def params(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(PARAMETER_SETS[request.param])


def test_classpath_imports_back_to_the_class(params: dict[str, Any]) -> None:
    classpath, _ = JobTrigger(**params).serialize()
    assert classpath == "airflow_batchjob.triggers.job.JobTrigger"
    assert import_classpath(classpath) is JobTrigger


def test_round_trip(params: dict[str, Any]) -> None:
    classpath, kwargs = JobTrigger(**params).serialize()
    stored = json.loads(json.dumps(kwargs))  # what the triggerer reads back
    rebuilt = import_classpath(classpath)(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)
    for key, value in params.items():
        assert getattr(rebuilt, key) == value


def test_kwargs_are_plain_json(params: dict[str, Any]) -> None:
    _, kwargs = JobTrigger(**params).serialize()
    assert is_plain_json(kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_given_non_default_kwargs_are_kept(params: dict[str, Any]) -> None:
    _, kwargs = JobTrigger(**params).serialize()
    for key, value in params.items():
        if key not in DEFAULTS or value != DEFAULTS[key]:
            assert kwargs[key] == value, key


def test_default_valued_kwargs_are_omitted(params: dict[str, Any]) -> None:
    _, kwargs = JobTrigger(**params).serialize()
    for key, default in DEFAULTS.items():
        assert key not in kwargs or kwargs[key] != default, key


def test_explicit_defaults_serialise_like_omitted_ones() -> None:
    explicit = JobTrigger(
        namespace="data",
        job_name="etl-1",
        label_selector=None,
        job_uid=None,
        wait_for=None,
        kubernetes_conn_id="kubernetes_default",
        deadline=None,
        delete_on_kill=False,
        propagation_policy="Background",
        progress_interval=10.0,
    )
    assert explicit.serialize() == JobTrigger(namespace="data", job_name="etl-1").serialize()


def test_minimal_kwargs() -> None:
    _, kwargs = JobTrigger(namespace="data", job_name="etl-1").serialize()
    assert kwargs == {"namespace": "data", "job_name": "etl-1"}


def test_wait_for_survives_as_the_same_goal() -> None:
    goal = WaitFor(condition="Complete", indexes=(3, 1), fail_on=("Failed",))
    _, kwargs = JobTrigger(namespace="data", job_name="etl-1", wait_for=goal.to_dict()).serialize()
    assert WaitFor.from_dict(json.loads(json.dumps(kwargs))["wait_for"]) == goal


def test_serialize_is_stable() -> None:
    trigger = JobTrigger(**PARAMETER_SETS["everything"])
    assert trigger.serialize() == trigger.serialize()
    assert json.dumps(trigger.serialize()[1], sort_keys=True) == json.dumps(
        JobTrigger(**PARAMETER_SETS["everything"]).serialize()[1], sort_keys=True
    )


def test_default_conn_id_is_omitted() -> None:
    """Like every other default-valued kwarg (it used to be written always)."""
    _, kwargs = JobTrigger(namespace="data", job_name="etl-1").serialize()
    assert "kubernetes_conn_id" not in kwargs
    _, kwargs = JobTrigger(namespace="data", job_name="etl-1", kubernetes_conn_id="k8s_prod").serialize()
    assert kwargs["kubernetes_conn_id"] == "k8s_prod"


@pytest.mark.parametrize("wait_for", [None, {}])
def test_empty_wait_for_is_omitted(wait_for: dict[str, Any] | None) -> None:
    _, kwargs = JobTrigger(namespace="data", job_name="etl-1", wait_for=wait_for).serialize()
    assert kwargs == {"namespace": "data", "job_name": "etl-1"}


def test_serialize_returns_a_copy() -> None:
    """Changing the returned kwargs (as the triggerer or a test may) leaves the trigger alone."""
    goal = WaitFor(condition="Complete", indexes=(1,), fail_on=("Failed",)).to_dict()
    trigger = JobTrigger(namespace="data", job_name="etl-1", wait_for=goal)
    before = trigger.serialize()
    _, kwargs = trigger.serialize()
    kwargs["namespace"] = "other"
    kwargs["wait_for"]["condition"] = "Failed"
    kwargs["wait_for"]["indexes"].append(7)
    assert trigger.wait_for == WaitFor(condition="Complete", indexes=(1,), fail_on=("Failed",)).to_dict()
    assert trigger.wait_for is goal
    assert trigger.serialize() == before


@pytest.mark.parametrize(
    "params",
    [
        {"namespace": "data", "label_selector": "jobgroup=g"},
        {
            "namespace": "data",
            "label_selector": "jobgroup=g,batchjob.airflow.io/dag-id=d",
            "goal": {"expected": 3, "fail_fast": True, "succeeded_at_least": None},
            "max_active": 2,
            "kubernetes_conn_id": "k8s_prod",
            "deadline": 1_800_000_000.0,
            "delete_on_kill": True,
            "progress_interval": 5.0,
            "diagnostics": True,
            "pending_timeout": 120.0,
        },
    ],
    ids=["minimal", "everything"],
)
def test_group_trigger_round_trip(params: dict[str, Any]) -> None:
    classpath, kwargs = JobGroupTrigger(**params).serialize()
    assert kwargs == params  # nothing default-valued here, so everything given is kept
    rebuilt = import_classpath(classpath)(**json.loads(json.dumps(kwargs)))
    assert isinstance(rebuilt, JobGroupTrigger) and rebuilt.serialize() == (classpath, kwargs)


def test_group_trigger_omits_defaults() -> None:
    _, kwargs = JobGroupTrigger(
        namespace="data", label_selector="a=b", goal={}, kubernetes_conn_id="kubernetes_default"
    ).serialize()
    assert kwargs == {"namespace": "data", "label_selector": "a=b"}

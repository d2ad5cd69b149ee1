"""What the shared watch lists and keeps: scopes (matched like the apiserver selects), slimmed
objects (what the waits read, nothing more), and the ordering of a list against watch events."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.outcome import outcome_from_job
from airflow_batchjob.core.watchscope import Scope, parse_fields, slim, version
from airflow_batchjob.hooks.subscription import Subscription


def job(name: str, rv: int, labels: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": str(rv),
                     "labels": labels or {}},
        "spec": {"parallelism": 1, "completions": 1},
        "status": status,
    }  # fmt: skip


def test_scope_by_name_and_its_list_parameters() -> None:
    s = Scope(name="a")
    assert s.matches(job("a", 1)) and not s.matches(job("b", 1))
    assert s.list_params() == {"field_selector": "metadata.name=a"}
    assert s.list_params(label_selector="batch.kubernetes.io/controller-uid") == {
        "label_selector": "batch.kubernetes.io/controller-uid",
        "field_selector": "metadata.name=a",
    }


def test_scope_by_selector_and_fields() -> None:
    s = Scope(selector="app=web,tier in (a,b)")
    assert s.matches(job("x", 1, {"app": "web", "tier": "a"}))
    assert not s.matches(job("x", 1, {"app": "web"}))
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Job", "uid": "u1"}, "reason": "FailedCreate"}
    assert Scope(fields="involvedObject.kind=Job,involvedObject.uid=u1").matches(ev)
    assert not Scope(fields="involvedObject.uid=u2").matches(ev)
    assert Scope(fields="involvedObject.uid!=u2").matches(ev)
    assert Scope(fields="involvedObject.fieldPath=").matches(ev)  # a missing field reads as ""
    assert Scope(fields="involvedObject.uid=u1").list_params(field_selector="reason=FailedCreate") == {
        "field_selector": "reason=FailedCreate,involvedObject.uid=u1"
    }
    assert Scope().matches(ev) and Scope().list_params() == {}


def test_bad_selectors_are_refused() -> None:
    with pytest.raises(InvalidJobSpecError):
        Scope(selector="app in web")
    with pytest.raises(InvalidJobSpecError):
        parse_fields("involvedObject.uid")
    assert parse_fields("a.b==c, d!=e") == ((("a", "b"), True, "c"), (("d",), False, "e"))


def test_slim_job_keeps_what_the_waits_read() -> None:
    full = job("a", 7, {"app": "web"}, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    full["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "fieldsV1": {"f:x": {}}}]
    full["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 5000 + "}",
        "batchjob.airflow.io/item-index": "3",
    }
    full["spec"]["template"] = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    full["spec"]["suspend"] = False
    small = slim("jobs", full)
    assert "managedFields" not in small["metadata"] and "template" not in small["spec"]
    assert small["metadata"]["annotations"] == {"batchjob.airflow.io/item-index": "3"}
    assert small["spec"] == {"parallelism": 1, "completions": 1, "suspend": False}
    assert outcome_from_job(small) == outcome_from_job(full)
    assert "last-applied" in str(full)  # the original is not changed


def test_slim_pod_and_event() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "labels": {"batch.kubernetes.io/controller-uid": "u"},
            "managedFields": [1],
        },
        "spec": {"containers": [{"name": "main", "image": "i", "env": [{"name": "X"}]}], "nodeName": "n"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
    }
    assert slim("pods", pod) == {
        "metadata": {"name": "p", "labels": {"batch.kubernetes.io/controller-uid": "u"}},
        "spec": {"containers": [{"name": "main"}]},
        "status": pod["status"],
    }
    ev = {
        "metadata": {"name": "e", "resourceVersion": "5"},
        "involvedObject": {"uid": "u"},
        "reason": "FailedCreate",
        "message": "quota",
        "source": {"component": "job-controller"},
    }
    assert slim("events", ev) == {k: v for k, v in ev.items() if k != "source"}
    assert version(ev) == 5 and version({"metadata": {"resourceVersion": "x"}}) is None


def test_a_list_merges_with_what_the_watch_delivered_meanwhile() -> None:
    async def main() -> None:
        sub = Subscription(Scope(), keep_deleted=True)
        sub._offer("ADDED", job("new", 120))  # delivered after the list's version
        sub._offer("ADDED", job("gone", 90))  # created, then deleted before the list
        sub._offer("ADDED", job("old", 95))
        sub._sync([job("old", 99), job("kept", 50)], 100)
        assert (
            sorted(sub.jobs) == ["kept", "new", "old"]
            and sub.jobs["old"]["metadata"]["resourceVersion"] == "99"
        )
        assert sorted(sub.deleted) == ["gone"] and sub.synced
        # Events the list already reflected (up to 100), or older than what is held, are dropped.
        before = copy.deepcopy(sub.jobs)
        sub._offer("MODIFIED", job("kept", 100))
        sub._offer("MODIFIED", job("new", 110))
        sub._offer("DELETED", job("old", 97))
        assert sub.jobs == before
        sub._offer("MODIFIED", job("old", 130, succeeded=1))
        assert sub.jobs["old"]["status"] == {"succeeded": 1}
        sub._offer("DELETED", job("old", 131))
        assert "old" not in sub.jobs and "old" in sub.deleted
        sub._offer("ADDED", job("old", 140))  # one of the same name again
        assert "old" in sub.jobs and "old" not in sub.deleted
        events = []
        while not sub.queue.empty():
            events.append(sub.queue.get_nowait()[0])
        assert events == ["ADDED", "ADDED", "ADDED", "SYNC", "MODIFIED", "DELETED", "ADDED"]

    asyncio.run(main())

"""core/inject.py: when the worker is injected and what the injection adds to the Pod (pure)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_batchjob.core import inject
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.podsecurity import apply_pod_security, profile_problems
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.queue import QueueJobOperator

PY = list(inject.PYTHON_WORKER)
TI: Any = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("me/app:1", "docker.io/me/app:1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/x/y@sha256:ab", "ghcr.io/x/y@sha256:ab"),
    ],
)
def test_image_names_in_one_spelling(ref: str, name: str) -> None:
    assert inject.image_name(ref) == name


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox:1.36", True),
        ("registry.example.com/team/etl:3", True),
        ("gcr.io/distroless/static", True),
        (inject.WORKER_IMAGE, False),
        ("worker", False),  # the local cluster's alias
        ("ghcr.io/airflow-batchjob/worker:0.2.0", False),  # another tag
        ("registry.example.com/mirror/worker:0.1.0", False),  # a mirror
        ("registry.example.com/batch/airflow-batchjob-worker:0.1.0", False),  # as the Dockerfile says
    ],
)
def test_default_injects_unless_the_image_is_the_worker_image(image: str, expected: bool) -> None:
    for mode in ("redis", "indexed"):
        assert inject.should_inject(None, mode, image, inject.WORKER_IMAGE, PY) is expected


def test_explicit_choice_wins_and_other_cases_stay_off() -> None:
    assert inject.should_inject(True, "redis", inject.WORKER_IMAGE, inject.WORKER_IMAGE, PY)
    assert not inject.should_inject(False, "indexed", "busybox", inject.WORKER_IMAGE, PY)
    assert inject.should_inject(None, "rabbitmq", "busybox", inject.WORKER_IMAGE, PY)
    assert not inject.should_inject(
        None, "redis", "busybox", inject.WORKER_IMAGE, ["/venv/bin/python", "-m", "x"]
    )
    assert not inject.should_inject(None, "redis", None, inject.WORKER_IMAGE, PY)
    assert not inject.should_inject(None, "sqs", "busybox", inject.WORKER_IMAGE, PY)  # a mode Go lacks


def template(**main: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "main", "image": "busybox", **main}], "restartPolicy": "Never"}}


def test_injection_adds_volume_init_container_mount_and_tmpdir() -> None:
    t = template(resources={"limits": {"cpu": "1"}})
    command = inject.inject_worker(t, "reg/worker:1")
    assert command == ["/batchjob/worker/batchjob-worker"]
    spec = t["spec"]
    assert spec["volumes"] == [{"name": "batchjob-worker", "emptyDir": {"sizeLimit": "64Mi"}}]
    (init,) = spec["initContainers"]
    assert init["image"] == "reg/worker:1"
    assert init["command"] == ["/opt/batchjob/bin/batchjob-worker", "install", "/batchjob/worker"]
    assert init["volumeMounts"] == [{"name": "batchjob-worker", "mountPath": "/batchjob/worker"}]
    assert init["resources"] == {"limits": {"cpu": "1"}}  # the Pod's effective request does not grow
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    main = spec["containers"][0]
    assert main["volumeMounts"] == [{"name": "batchjob-worker", "mountPath": "/batchjob/worker"}]
    assert {"name": "BATCHJOB_TMPDIR", "value": "/batchjob/worker/tmp"} in main["env"]


def test_injected_init_container_goes_first_and_passes_restricted() -> None:
    t = template()
    t["spec"]["initContainers"] = [{"name": "mine", "image": "busybox", "command": ["true"]}]
    inject.inject_worker(t, inject.WORKER_IMAGE)
    assert [c["name"] for c in t["spec"]["initContainers"]] == ["batchjob-worker-install", "mine"]
    restricted = copy.deepcopy(t)
    apply_pod_security(restricted, "restricted")
    assert profile_problems(restricted) == []
    init = restricted["spec"]["initContainers"][0]["securityContext"]
    assert init["capabilities"]["drop"] == ["ALL"] and init["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    "clash",
    [
        {"volumes": [{"name": "batchjob-worker", "emptyDir": {}}]},
        {"initContainers": [{"name": "batchjob-worker-install", "image": "x"}]},
    ],
)
def test_a_pod_that_already_uses_the_names_is_refused(clash: dict[str, Any]) -> None:
    t = template()
    t["spec"].update(clash)
    with pytest.raises(InvalidJobSpecError, match="inject_worker=False"):
        inject.inject_worker(t, inject.WORKER_IMAGE)
    t = template(volumeMounts=[{"name": "x", "mountPath": "/batchjob/worker/"}])
    with pytest.raises(InvalidJobSpecError, match="mount '/batchjob/worker/'"):
        inject.inject_worker(t, inject.WORKER_IMAGE)


@pytest.mark.parametrize(("mode", "extra"), [("variable", {}), ("pod_per_item", {"count": 2})])
def test_queue_operator_injects_for_both_brokers(mode: Any, extra: dict[str, Any]) -> None:
    op = QueueJobOperator(task_id="t", mode=mode, queue_name="q", image="busybox", cmds=["rev"], **extra)
    body = op.build({"ti": TI}, "ns")
    pod = body["spec"]["template"]["spec"]
    broker = "redis" if mode == "variable" else "rabbitmq"
    assert pod["containers"][0]["command"][:2] == ["/batchjob/worker/batchjob-worker", broker]
    assert pod["containers"][0]["command"][-2:] == ["--", "rev"]
    assert pod["initContainers"][0]["image"] == inject.WORKER_IMAGE
    off = QueueJobOperator(
        task_id="t", mode=mode, queue_name="q", image="busybox", cmds=["rev"], inject_worker=False, **extra
    )
    body = off.build({"ti": TI}, "ns")
    assert body["spec"]["template"]["spec"]["containers"][0]["command"][:3] == PY
    assert "initContainers" not in body["spec"]["template"]["spec"]


def test_indexed_operator_injects_into_a_plain_image() -> None:
    op = IndexedJobOperator(
        task_id="t", items=["a"], image="busybox", cmds=["rev"], pod_security="restricted"
    )
    body = op.build({"ti": TI}, "ns")
    op._mount_items(body, ["cm"])
    pod = body["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == [
        "/batchjob/worker/batchjob-worker",
        "indexed",
        "--items-dir",
        "/batchjob/items",
        "--",
        "rev",
    ]
    assert [c["name"] for c in pod["initContainers"]] == ["batchjob-worker-install"]
    assert profile_problems(body["spec"]["template"]) == []
    worker = IndexedJobOperator(task_id="t", items=["a"], image="worker", cmds=["rev"])
    body = worker.build({"ti": TI}, "ns")
    worker._mount_items(body, ["cm"])
    assert body["spec"]["template"]["spec"]["containers"][0]["command"][:3] == PY

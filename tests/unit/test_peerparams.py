"""Every KubernetesJobOperator parameter has an answer here (core/peerparams.py).

The peer is the installed cncf.kubernetes provider, read with inspect.signature over its MRO.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.sdk import BaseOperator
from packaging.version import Version

from airflow_batchjob.core.peerparams import (
    PEER_ONLY,
    PEER_PARAMS,
    PeerParamError,
    exit_codes,
    one_of,
    translate,
    with_init_logs,
)
from airflow_batchjob.core.podlog import containers_to_follow
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator


def constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    """``cls``'s constructor parameters through its MRO, BaseOperator's aside."""
    base = set(inspect.signature(BaseOperator.__init__).parameters)
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__ or klass is BaseOperator or not issubclass(klass, BaseOperator):
            continue
        for name, p in inspect.signature(klass.__dict__["__init__"]).parameters.items():
            if name not in base and name not in ("self", "args", "kwargs"):
                out.setdefault(name, p)
    return out


PEER = constructor_params(KubernetesJobOperator)


# The table was written against this release's 87 parameters; older releases have a subset
# (cncf.kubernetes 10.0.0, the floor, has 72), newer ones may add parameters it must answer.
TABLE_RELEASE = (10, 25, 0)
INSTALLED = Version(version("apache-airflow-providers-cncf-kubernetes")).release


def test_the_table_answers_exactly_the_peers_parameters() -> None:
    assert set(PEER) - set(PEER_PARAMS) == set(), "peer parameters with no answer"
    if INSTALLED >= TABLE_RELEASE:
        assert len(PEER) >= 87
        assert set(PEER_PARAMS) - set(PEER) == set(), "answers for parameters the peer does not have"
    else:  # the floor: every parameter it has is answered, and it has fewer
        assert len(PEER) < 87


def test_same_means_ours_has_it_and_peer_only_means_ours_does_not() -> None:
    ours = constructor_params(BatchJobOperator)
    for name, entry in PEER_PARAMS.items():
        if entry.answer == "same":
            assert name in ours, name
        else:
            assert name not in ours, name
            assert name in PEER_ONLY


# A value for each peer parameter a ported DAG might pass, where its default says nothing.
SAMPLE: dict[str, Any] = {
    "name": "nightly",
    "env_vars": {"A": "1"},
    "on_finish_action": "delete_succeeded_pod",
    "is_delete_operator_pod": True,
    "startup_timeout_seconds": 300,
    "schedule_timeout_seconds": 60,
    "skip_on_exit_code": [99],
    "reattach_on_restart": False,
    "durable": False,
    "init_container_logs": True,
    "on_kill_action": "keep_pod",
    "poll_interval": 5,
    "logging_interval": 30,
    "job_poll_interval": 3,
}


@pytest.mark.parametrize("name", sorted(PEER))
def test_each_peer_parameter_is_accepted_or_refused_naming_it(name: str) -> None:
    p = PEER[name]
    if name in SAMPLE:
        value = SAMPLE[name]
    elif p.default is not inspect.Parameter.empty and p.default is not None:
        value = p.default
    else:
        value = None
    if name in (
        "image",
        "job_template_file",
        "full_job_spec",
        "pod_template_file",
        "pod_template_dict",
        "full_pod_spec",
    ):
        pytest.skip("what the Job is built from: tested in test_spec/test_podsettings")
    try:
        op = BatchJobOperator(task_id="t", image="busybox", **{name: value})
    except InvalidJobTemplateError as e:
        assert name in str(e)
        return
    assert op is not None


@pytest.mark.parametrize(
    ("name", "value", "counterpart"),
    [
        ("manual_selector", True, "spec.manualSelector"),
        ("selector", {"matchLabels": {"a": "b"}}, "job_template"),
        ("unwrap_single", False, "results"),
        ("container_name_log_prefix_enabled", False, "prefixed"),
        ("log_formatter", lambda c, m: m, "formatter"),
        ("xcom_sidecar_container_security_context", {"runAsUser": 0}, "BATCHJOB_RESULT_FILE"),
        ("callbacks", object(), "on_failure_callback"),
        ("progress_callback", print, "progress_interval"),
        ("trigger_kwargs", {"poll_interval": 1}, "own parameters"),
        ("on_finish_action", "delete_everything", "delete_on_finish"),
        ("on_kill_action", "maybe", "delete_on_kill"),
        ("startup_timeout_seconds", -1, "pending_timeout"),
        ("skip_on_exit_code", "99", "exit code"),
        ("skip_on_exit_code", [0], "0 is success"),
    ],
)
def test_refusals_name_the_parameter_and_what_to_use(name: str, value: Any, counterpart: str) -> None:
    with pytest.raises(InvalidJobTemplateError) as e:
        BatchJobOperator(task_id="t", image="busybox", **{name: value})
    assert name in str(e.value) and counterpart in str(e.value)


@pytest.mark.parametrize("name", sorted(PEER))
def test_the_peers_defaults_are_all_accepted(name: str) -> None:
    """A DAG that spells out the peer's defaults ports unchanged."""
    p = PEER[name]
    if name == "image" or p.default is inspect.Parameter.empty:
        return
    BatchJobOperator(task_id="t", image="busybox", **{name: p.default})


def test_values_map_onto_ours() -> None:
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        name="nightly",
        env_vars={"A": "1"},
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=120,
        schedule_timeout_seconds=30,
        on_kill_action="keep_pod",
        on_kill_propagation_policy="Foreground",
        log_events_on_startup=False,
        log_events_on_failure=False,
        init_container_logs=True,
        durable=False,
    )
    assert op.job_name == "nightly"
    assert op.env == {"A": "1"}
    assert op.delete_on_finish == "on_success"
    assert op.pending_timeout == 150
    assert op.delete_on_kill is False
    assert op.propagation_policy == "Foreground"
    assert op.diagnostics is False
    assert op.container_logs == ["@main", "@init"]
    assert op.reattach_on_restart is False
    assert op.trigger_options(None)["delete_on_kill"] is False


def test_is_delete_operator_pod_maps_both_ways() -> None:
    assert BatchJobOperator(task_id="t", image="b", is_delete_operator_pod=True).delete_on_finish == "always"
    assert BatchJobOperator(task_id="t", image="b", is_delete_operator_pod=False).delete_on_finish == "never"


def test_a_peer_name_and_ours_together_are_refused() -> None:
    with pytest.raises(InvalidJobTemplateError, match="on_finish_action and delete_on_finish"):
        BatchJobOperator(task_id="t", image="b", on_finish_action="keep_pod", delete_on_finish="always")
    with pytest.raises(InvalidJobTemplateError, match="name and job_name"):
        BatchJobOperator(task_id="t", image="b", name="a", job_name="b")
    with pytest.raises(InvalidJobTemplateError, match="durable and reattach_on_restart"):
        BatchJobOperator(task_id="t", image="b", durable=False, reattach_on_restart=True)
    assert BatchJobOperator(
        task_id="t", image="b", durable=True, reattach_on_restart=True
    ).reattach_on_restart
    with pytest.raises(InvalidJobTemplateError, match="different delete_on_finish"):
        BatchJobOperator(task_id="t", image="b", on_finish_action="keep_pod", is_delete_operator_pod=True)


def test_polling_knobs_are_noted_once_not_dropped() -> None:
    op = BatchJobOperator(task_id="t", image="b", poll_interval=2, job_poll_interval=10, logging_interval=5)
    assert len(op.peer_notes) == 3
    assert all("has no effect" in n for n in op.peer_notes)
    assert BatchJobOperator(task_id="t", image="b").peer_notes == ()


def test_translate_is_pure() -> None:
    t = translate({"startup_timeout_seconds": 10, "poll_interval": 1}, {})
    assert t.values == {"pending_timeout": 10}
    assert t.notes and "poll_interval=1" in t.notes[0]
    with pytest.raises(PeerParamError, match="internal"):
        translate({"image": "x"}, {})


def test_exit_codes_and_aliases() -> None:
    assert exit_codes(99) == (99,)
    assert exit_codes([3, 1, 3]) == (1, 3)
    assert exit_codes(None) is None
    with pytest.raises(PeerParamError):
        exit_codes(True)
    assert one_of("a", None, "b", 2) == 2
    with pytest.raises(PeerParamError, match="same parameter"):
        one_of("a", 1, "b", 2)


def test_init_container_logs_widen_container_logs() -> None:
    assert with_init_logs(None, True) == ["@main", "@init"]
    assert with_init_logs(True, True) is True
    assert with_init_logs("main", ["setup"]) == ["main", "setup"]
    assert with_init_logs(["main"], None) == ["main"]
    with pytest.raises(PeerParamError):
        with_init_logs(None, 5)
    pod = {
        "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "main"}, {"name": "side"}]}
    }
    assert containers_to_follow(pod, ["@main", "@init"]) == ["setup", "main"]
    assert containers_to_follow(pod, ["side", "@init"]) == ["setup", "side"]

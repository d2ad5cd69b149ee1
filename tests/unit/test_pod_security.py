"""``pod_security="restricted"`` and ``ignore_disruptions``: what they set, what they refuse, and
that every operator (and ``@task.batch_map``) inherits them; the worker as a non-root user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_batchjob.core.build import ContainerParams, build_job
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.podsecurity import NON_ROOT_ID, apply_pod_security, profile_problems
from airflow_batchjob.core.podsettings import PodSettings
from airflow_batchjob.core.skipcodes import DISRUPTION_RULE, add_disruption_rule
from airflow_batchjob.core.validation import validate_job
from airflow_batchjob.decorators.batch_map import batch_map_task
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.compat import warning_text
from airflow_batchjob.operators.indexed import IndexedJobOperator
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.operators.podlayers import apply_pod_layers
from airflow_batchjob.operators.queue import QueueJobOperator

ROOT = Path(__file__).resolve().parents[2]
TI = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
PROBE = {"httpGet": {"host": "10.0.0.1", "port": 80}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def double(n: int) -> int:
    return 2 * n


def built(**pod: Any) -> dict[str, Any]:
    """The Pod template of a Job built with these Pod settings and ``pod_security='restricted'``."""
    body = build_job(
        name="j",
        namespace="ns",
        container=ContainerParams(image="busybox", cmds=["true"]),
        pod=PodSettings(pod_security="restricted", **pod),
        lay_pod=apply_pod_layers,
    )
    return dict(body["spec"]["template"])


def test_every_container_gets_what_the_profile_needs() -> None:
    template = built(init_containers=[{"name": "init", "image": "busybox"}])
    spec = template["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "fsGroup": NON_ROOT_ID,
        "fsGroupChangePolicy": "OnRootMismatch",
    }
    for c in spec["containers"] + spec["initContainers"]:
        assert c["securityContext"] == RESTRICTED_CONTAINER, c["name"]
    assert profile_problems(template) == []


def test_values_that_agree_with_the_profile_are_kept() -> None:
    spec = built(
        security_context={
            "runAsUser": 1000,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p"},
        },
        container_security_context={
            "runAsUser": 2000,
            "capabilities": {"drop": ["NET_RAW"], "add": ["NET_BIND_SERVICE"]},
            "readOnlyRootFilesystem": True,
        },
    )["spec"]
    sc = spec["securityContext"]
    assert sc["runAsUser"] == 1000 and sc["seccompProfile"]["type"] == "Localhost"
    assert "runAsGroup" not in sc and "fsGroup" not in sc  # the user chose the uid: no group of ours
    (main,) = spec["containers"]
    assert main["securityContext"] == {
        "runAsUser": 2000,
        "capabilities": {"drop": ["NET_RAW", "ALL"], "add": ["NET_BIND_SERVICE"]},
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }


def test_a_null_is_unset() -> None:
    template = {"spec": {"securityContext": {"runAsNonRoot": None}, "containers": [{"name": "m"}]}}
    apply_pod_security(template, "restricted")
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_without_pod_security_nothing_is_set() -> None:
    body = build_job(name="j", namespace="ns", container=ContainerParams(image="b"), pod=PodSettings())
    assert "securityContext" not in body["spec"]["template"]["spec"]
    assert "securityContext" not in body["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"container_security_context": {"privileged": True}},
            r"containers\['main'\].securityContext.privileged",
        ),
        ({"container_security_context": {"runAsUser": 0}}, "securityContext.runAsUser is 0"),
        ({"security_context": {"runAsUser": 0}}, "spec.securityContext.runAsUser is 0"),
        ({"security_context": {"runAsNonRoot": False}}, "spec.securityContext.runAsNonRoot is false"),
        (
            {"container_security_context": {"allowPrivilegeEscalation": True}},
            "allowPrivilegeEscalation is true",
        ),
        (
            {"container_security_context": {"capabilities": {"add": ["SYS_ADMIN"]}}},
            r"add has \['SYS_ADMIN'\]",
        ),
        ({"container_security_context": {"seccompProfile": {"type": "Unconfined"}}}, "'Unconfined'"),
        ({"container_security_context": {"procMount": "Unmasked"}}, "procMount"),
        ({"hostnetwork": True}, "spec.hostNetwork is true.*drop hostnetwork"),
        (
            {"volumes": [{"name": "h", "hostPath": {"path": "/var"}}]},
            r"spec.volumes\['h'\] is a hostPath volume",
        ),
        ({"ports": [{"containerPort": 80, "hostPort": 80}]}, "hostPort is set"),
        ({"security_context": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}, "kernel.msgmax"),
        ({"security_context": {"seLinuxOptions": {"user": "root"}}}, "seLinuxOptions"),
        (
            {"pod_template_dict": {"spec": {"containers": [{"name": "main", "livenessProbe": PROBE}]}}},
            r"spec.containers\['main'\].livenessProbe.httpGet.host is set",
        ),
        (
            {"init_containers": [{"name": "setup", "image": "b", "securityContext": {"privileged": True}}]},
            r"spec.initContainers\['setup'\].securityContext.privileged",
        ),
    ],
)
def test_what_contradicts_the_profile_is_refused_naming_the_field(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidJobSpecError, match=f"pod_security='restricted'.*{named}.*drop pod_security"):
        built(**settings)


def test_a_template_is_checked_as_a_whole() -> None:
    template = {
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
        "spec": {"hostPID": True, "os": {"name": "windows"}, "containers": [{"name": "main"}]},
    }
    problems = profile_problems(template)
    assert len(problems) == 3, problems
    with pytest.raises(InvalidJobSpecError, match="hostPID"):
        apply_pod_security(template, "restricted")
    apply_pod_security(template, None)  # no profile: nothing checked, nothing set
    with pytest.raises(InvalidJobSpecError, match="use 'restricted', or None"):
        apply_pod_security({"spec": {}}, "baseline")  # type: ignore[arg-type]


def test_operators_refuse_at_parse_time_and_inherit_the_parameter() -> None:
    bad = {"pod_security": "restricted", "container_security_context": {"privileged": True}}
    common = {"image": "busybox", "cmds": ["true"]}
    with pytest.raises(InvalidJobTemplateError, match=r"task t: pod_security='restricted'.*privileged"):
        BatchJobOperator(task_id="t", **common, **bad)
    with pytest.raises(InvalidJobTemplateError, match="privileged"):
        JobGroupOperator(task_id="t", items=["a"], **common, **bad)
    with pytest.raises(InvalidJobTemplateError, match="privileged"):
        IndexedJobOperator(task_id="t", items=["a"], **common, **bad)
    with pytest.raises(InvalidJobTemplateError, match="privileged"):
        QueueJobOperator(task_id="t", mode="variable", queue_name="q", **common, **bad)
    with pytest.raises(InvalidJobTemplateError, match="privileged"):
        batch_map_task(image="python:3.12", **bad)(double)([1])
    with pytest.raises(InvalidJobTemplateError, match="use 'restricted', or None"):
        BatchJobOperator(task_id="t", pod_security="baseline", **common)  # type: ignore[arg-type]


def test_a_templated_contradiction_is_refused_when_built() -> None:
    op = BatchJobOperator(
        task_id="t",
        image="busybox",
        pod_security="restricted",
        container_security_context={"runAsUser": "{{ params.uid }}"},
    )  # Jinja: checked once rendered
    op.container_security_context = {"runAsUser": 0}  # as rendered
    with pytest.raises(InvalidJobTemplateError, match="runAsUser is 0"):
        op.build({"ti": TI}, "ns")  # type: ignore[arg-type]


def test_the_worker_wrapped_and_the_queue_containers_are_hardened() -> None:
    indexed = IndexedJobOperator(
        task_id="t", image="worker", cmds=["rev"], items=["a"], pod_security="restricted"
    )
    body = indexed.build({"ti": TI}, "ns")  # type: ignore[arg-type]
    indexed._mount_items(body, ["cm-0"])  # the worker wraps the same container; items are projected
    spec = body["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    assert main["command"][:3] == ["python", "-m", "airflow_batchjob.worker"]
    assert main["securityContext"] == RESTRICTED_CONTAINER
    assert profile_problems(body["spec"]["template"]) == []
    queue = QueueJobOperator(
        task_id="t", mode="variable", queue_name="q", image="w", cmds=["rev"], pod_security="restricted"
    )
    qspec = queue.build({"ti": TI}, "ns")["spec"]["template"]["spec"]  # type: ignore[arg-type]
    assert qspec["containers"][0]["securityContext"] == RESTRICTED_CONTAINER
    assert qspec["securityContext"]["fsGroup"] == NON_ROOT_ID  # the 0440 TLS files stay readable


# -- ignore_disruptions -------------------------------------------------------------------------
def test_the_disruption_rule_comes_first_over_the_users_and_the_skip_rule() -> None:
    user = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    op = BatchJobOperator(
        task_id="t", image="b", ignore_disruptions=True, skip_on_exit_code=3, pod_failure_policy=user
    )
    body = op.build({"ti": TI}, "ns")  # type: ignore[arg-type]
    rules = body["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == DISRUPTION_RULE
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [3]
    assert rules[2]["onExitCodes"]["values"] == [42]
    validate_job(body)
    plain = BatchJobOperator(task_id="t", image="b").build({"ti": TI}, "ns")  # type: ignore[arg-type]
    assert "podFailurePolicy" not in plain["spec"]


def test_the_disruption_rule_alone_and_its_refusals() -> None:
    body = build_job(name="j", namespace="ns", container=ContainerParams(image="b"))
    body["spec"]["podReplacementPolicy"] = "TerminatingOrFailed"  # as read back from a live Job
    add_disruption_rule(body)
    assert body["spec"]["podFailurePolicy"] == {"rules": [DISRUPTION_RULE]}
    assert "podReplacementPolicy" not in body["spec"]
    validate_job(body)
    onfailure = {
        "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "m"}]}}}
    }
    with pytest.raises(InvalidJobTemplateError, match="ignore_disruptions needs restartPolicy Never"):
        BatchJobOperator(task_id="t", image="b", job_template=onfailure, ignore_disruptions=True)
    counted = {
        "rules": [{"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    }
    with pytest.raises(InvalidJobTemplateError, match=r"rule 0 .*'Count'.*drop ignore_disruptions"):
        BatchJobOperator(task_id="t", image="b", pod_failure_policy=counted, ignore_disruptions=True)
    indexed = IndexedJobOperator(task_id="t", image="b", cmds=["x"], items=["a"], ignore_disruptions=True)
    ibody = indexed.build({"ti": TI}, "ns")  # type: ignore[arg-type]
    assert ibody["spec"]["podFailurePolicy"]["rules"] == [DISRUPTION_RULE]


def test_warning_headers_are_read_as_the_apiserver_wrote_them() -> None:
    header = r'299 - "would violate PodSecurity \"restricted:latest\": runAsNonRoot != true"'
    assert warning_text(header) == 'would violate PodSecurity "restricted:latest": runAsNonRoot != true'
    assert warning_text("no code here") == "no code here"


# -- the worker as the non-root user ------------------------------------------------------------
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("python3"),
    reason="needs root and setpriv to switch to the non-root uid",
)
def test_the_worker_runs_as_the_non_root_user() -> None:
    """As in a restricted Pod: uid/gid 65532, the items read-only (a ConfigMap volume), the
    termination log 0666 (the kubelet's), the result file in the image's /tmp. The image's
    Python runs the worker (it imports no Airflow), here the system's: the test's virtualenv
    under /root is out of the uid's reach, as is pytest's tmp_path."""
    tmp_path = Path(tempfile.mkdtemp(prefix="batchjob-psa-"))
    try:
        _run_worker_as_non_root(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _run_worker_as_non_root(tmp_path: Path) -> None:
    items = tmp_path / "items"
    items.mkdir()
    (items / "0").write_text('"hello"')
    for p in (tmp_path, items, items / "0"):
        p.chmod(0o755 if p.is_dir() else 0o444)
    log = tmp_path / "termination-log"
    log.touch(mode=0o666)
    log.chmod(0o666)
    program = 'cat >/dev/null; echo "{\\"uid\\": $(id -u)}" > "$BATCHJOB_RESULT_FILE"'
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "PYTHONPATH": str(ROOT), "JOB_COMPLETION_INDEX": "0"}
    ids = [f"--reuid={NON_ROOT_ID}", f"--regid={NON_ROOT_ID}", "--clear-groups"]
    worker = ["python3", "-m", "airflow_batchjob.worker", "indexed", "--items-dir", str(items)]
    done = subprocess.run(
        ["setpriv", *ids, *worker, "--termination-log", str(log), "--", "sh", "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text() == f'{{"mode":"indexed","index":0,"exit_code":0,"result":{{"uid":{NON_ROOT_ID}}}}}'

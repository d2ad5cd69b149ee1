"""skip_on_exit_code: the FailJob rule put first, and the exit code that skips the task."""

from __future__ import annotations

import pytest

from airflow_batchjob.core.build import build_job
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.skipcodes import add_skip_rule, skip_exit_code
from airflow_batchjob.core.validation import validate_job
from airflow_batchjob.exceptions import InvalidJobTemplateError
from airflow_batchjob.operators.job import BatchJobOperator


def job(**spec: object) -> dict:
    return build_job(
        name="j",
        namespace="default",
        template={
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "side", "image": "s"}, {"name": "main", "image": "m"}]}
                },
                **spec,
            }
        },
    )


def test_the_rule_comes_first_for_the_main_container() -> None:
    body = job(
        podFailurePolicy={
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
            ]
        }
    )
    body["spec"]["podReplacementPolicy"] = "TerminatingOrFailed"  # as read back from a live Job
    add_skip_rule(body, [42, 3], "main")
    rules = body["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "main", "operator": "In", "values": [3, 42]},
    }
    assert rules[1]["action"] == "Ignore"
    assert "podReplacementPolicy" not in body["spec"]
    validate_job(body)


def test_onfailure_restarts_are_refused() -> None:
    body = job()
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(InvalidJobSpecError, match="skip_on_exit_code needs restartPolicy Never"):
        add_skip_rule(body, [1], "main")


def pod(created: str, phase: str, code: int | None, name: str = "main") -> dict:
    status = {
        "phase": phase,
        "containerStatuses": [{"name": name, "state": {"terminated": {"exitCode": code}}}],
    }
    return {
        "metadata": {"creationTimestamp": created},
        "spec": {"containers": [{"name": name}]},
        "status": status,
    }


def test_the_latest_failed_pods_exit_code_decides() -> None:
    assert skip_exit_code([pod("1", "Failed", 1), pod("2", "Failed", 99)], (99,), "main") == 99
    assert skip_exit_code([pod("2", "Failed", 1), pod("1", "Failed", 99)], (99,), "main") is None
    assert skip_exit_code([pod("1", "Succeeded", 0)], (99,), "main") is None
    assert skip_exit_code([pod("1", "Failed", 99, name="other")], (99,), "main") == 99  # the first one


def test_the_operator_adds_the_rule_and_checks_it_at_parse_time() -> None:
    op = BatchJobOperator(task_id="t", image="busybox", skip_on_exit_code=99)
    assert op.skip_on_exit_code == (99,)
    with pytest.raises(InvalidJobTemplateError, match="restartPolicy Never"):
        BatchJobOperator(
            task_id="t",
            skip_on_exit_code=[3],
            job_template={
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "b"}]}
                    }
                }
            },
        )

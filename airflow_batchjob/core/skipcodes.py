"""The rules the operators put in a Job's ``podFailurePolicy`` beside the user's own.

``skip_on_exit_code``: a Pod exit code that means "skip the task", not "fail it".
cncf.kubernetes' operators skip the task when the Pod's base container exits with one of the
codes. A Job would retry such a Pod ``backoffLimit`` times first, so the codes also become a
``FailJob`` rule at the head of the Job's ``podFailurePolicy``: the first Pod that exits with one
ends the Job at once, and the operator then reads that Pod's exit code to skip the task.

``ignore_disruptions``: a Pod stopped by a disruption (a drained or lost node, preemption, an
eviction) carries the condition ``DisruptionTarget``; an ``Ignore`` rule on it makes the Job
replace the Pod without counting it against ``backoffLimit`` (or ``backoffLimitPerIndex``).
Kubernetes applies the first rule that matches, so it goes first: a Pod killed by a drain exits
with the signal's code (137, 143), which says nothing about the program.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_batchjob.core.errors import InvalidJobSpecError

JsonDict = dict[str, Any]


def main_container(pod_spec: Mapping[str, Any], name: str) -> str | None:
    """The main container's name: the one named ``name``, else the first."""
    names = [c.get("name") for c in pod_spec.get("containers") or [] if isinstance(c, Mapping)]
    if name in names:
        return name
    return names[0] if names else None


DISRUPTION_RULE: JsonDict = {
    "action": "Ignore",
    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
}


def add_skip_rule(job: JsonDict, codes: Sequence[int], container: str) -> None:
    """Put a ``FailJob`` rule for ``codes`` (the main container) first in the Job's
    ``podFailurePolicy``, in place. A Pod failure policy needs ``restartPolicy: Never`` and
    ``podReplacementPolicy: Failed``; a Job restarting its Pods in place (``OnFailure``) is
    refused with what to change."""
    name = main_container(job["spec"]["template"]["spec"], container)
    rule = {
        "action": "FailJob",
        "onExitCodes": {"containerName": name, "operator": "In", "values": sorted(set(codes))},
    }
    _put_first(job, rule, "skip_on_exit_code", "a Pod restarted in place never reports its exit code")


def add_disruption_rule(job: JsonDict) -> None:
    """``ignore_disruptions``: put ``DISRUPTION_RULE`` first in the Job's ``podFailurePolicy``, in
    place. A rule of the user's on ``DisruptionTarget`` is refused: it would contradict this one."""
    policy = job["spec"].get("podFailurePolicy")
    rules = policy.get("rules") or [] if isinstance(policy, dict) else []
    for i, rule in enumerate(rules):
        conditions = (rule.get("onPodConditions") if isinstance(rule, dict) else None) or []
        if any(isinstance(c, dict) and c.get("type") == "DisruptionTarget" for c in conditions):
            raise InvalidJobSpecError(
                f"ignore_disruptions=True and pod_failure_policy rule {i} (action "
                f"{rule.get('action')!r}) both decide Pods with the DisruptionTarget condition: "
                "drop ignore_disruptions or that rule"
            )
    _put_first(job, DISRUPTION_RULE, "ignore_disruptions", "a Pod restarted in place is never replaced")


def _put_first(job: JsonDict, rule: JsonDict, param: str, why: str) -> None:
    spec = job["spec"]
    restart = spec["template"]["spec"].get("restartPolicy")
    if restart != "Never":
        raise InvalidJobSpecError(
            f"{param} needs restartPolicy Never (the template says {restart!r}): {why}; "
            "a podFailurePolicy applies only to Pods that are not restarted in place"
        )
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, dict):
        policy = {}
    spec["podFailurePolicy"] = {**policy, "rules": [copy.deepcopy(rule), *(policy.get("rules") or [])]}
    if spec.get("podReplacementPolicy") == "TerminatingOrFailed":
        # the apiserver's default read back from a live Job; with a Pod failure policy only
        # Failed is allowed (and is then the default)
        del spec["podReplacementPolicy"]


def skip_exit_code(pods: Sequence[Mapping[str, Any]], codes: Sequence[int], container: str) -> int | None:
    """The exit code that skips the task: the latest failed Pod's main container exited with
    one of ``codes``. None when it did not (the task fails as usual)."""
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    if not failed:
        return None
    latest = max(failed, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    name = main_container(latest.get("spec") or {}, container)
    for status in (latest.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != name:
            continue
        code = ((status.get("state") or {}).get("terminated") or {}).get("exitCode")
        return code if code in codes else None
    return None

"""``skip_on_exit_code``: a Pod exit code that means "skip the task", not "fail it".

cncf.kubernetes' operators skip the task when the Pod's base container exits with one of the
codes. A Job would retry such a Pod ``backoffLimit`` times first, so the codes also become a
``FailJob`` rule at the head of the Job's ``podFailurePolicy``: the first Pod that exits with one
ends the Job at once, and the operator then reads that Pod's exit code to skip the task.
"""

from __future__ import annotations

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


def add_skip_rule(job: JsonDict, codes: Sequence[int], container: str) -> None:
    """Put a ``FailJob`` rule for ``codes`` (the main container) first in the Job's
    ``podFailurePolicy``, in place. A Pod failure policy needs ``restartPolicy: Never`` and
    ``podReplacementPolicy: Failed``; a Job restarting its Pods in place (``OnFailure``) is
    refused with what to change."""
    spec = job["spec"]
    pod_spec = spec["template"]["spec"]
    if pod_spec.get("restartPolicy") != "Never":
        raise InvalidJobSpecError(
            f"skip_on_exit_code needs restartPolicy Never (the template says "
            f"{pod_spec.get('restartPolicy')!r}): a Pod restarted in place never reports its exit code"
        )
    name = main_container(pod_spec, container)
    rule = {
        "action": "FailJob",
        "onExitCodes": {"containerName": name, "operator": "In", "values": sorted(set(codes))},
    }
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, dict):
        policy = {}
    spec["podFailurePolicy"] = {**policy, "rules": [rule, *(policy.get("rules") or [])]}
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

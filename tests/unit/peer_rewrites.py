"""The intended differences between cncf.kubernetes' Job and ours, each rewritten away, and the
field-by-field comparison of what remains (tests/unit/test_peer_differential.py).

``REWRITES`` has one function per entry of ``core/peertable.py``'s ``JOB_DIFFERENCES`` (the
documented list, with the reasons); each takes the peer's Job, ours (API-form dicts, changed in
place) and the case's parameters, and rewrites only that difference, only where the case asks
for it, so anything else stays for ``differences`` to report.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from airflow_batchjob import config
from airflow_batchjob.core.manifest import to_api
from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL, LABEL_PREFIX
from airflow_batchjob.core.results import RESULT_ENV

Job = dict[str, Any]
Params = Mapping[str, Any]


def meta(job: Job, pod: bool = False) -> dict[str, Any]:
    where = job.setdefault("spec", {}).setdefault("template", {}) if pod else job
    return where.setdefault("metadata", {}) or {}


def pod_spec(job: Job) -> dict[str, Any]:
    return job.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})


def main_container(job: Job) -> dict[str, Any]:
    return (pod_spec(job).get("containers") or [{}])[0]


def _template_pod_specs(params: Params) -> Iterator[dict[str, Any]]:
    """The Pod specs of the case's templates, as given (API form)."""
    for key in ("job_template_file", "full_job_spec"):
        if params.get(key) is not None:
            job = params[key]
            job = yaml.safe_load(Path(job).read_text()) if isinstance(job, str) else to_api(job)
            yield ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for key in ("pod_template_file", "pod_template_dict", "full_pod_spec"):
        if params.get(key) is not None:
            pod = params[key]
            pod = yaml.safe_load(Path(pod).read_text()) if isinstance(pod, str) else to_api(pod)
            yield pod.get("spec") or {}


def _job_name(peer: Job, ours: Job, params: Params) -> None:
    p, o = peer["metadata"].get("name"), ours["metadata"].get("name")
    if params.get("random_name_suffix") is False and p != f"job-{o}":
        return  # an exact name must be the same but for the peer's prefix: left for the diff
    del peer["metadata"]["name"], ours["metadata"]["name"]


def _pod_template_name(peer: Job, ours: Job, params: Params) -> None:
    for key in ("name", "namespace"):
        meta(peer, pod=True).pop(key, None)


_PEER_TI_LABELS = (
    "dag_id",
    "task_id",
    "run_id",
    "try_number",
    "map_index",
    "parent_dag_id",
    "kubernetes_pod_operator",
    "airflow_version",
    "airflow_kpo_in_cluster",
)


def _ours_only(mapping: dict[str, Any] | None, given: Mapping[str, Any] | None) -> None:
    for key in [k for k in mapping or {} if k.startswith(f"{LABEL_PREFIX}/") and k not in (given or {})]:
        del mapping[key]  # type: ignore[union-attr]


def _identity_labels(peer: Job, ours: Job, params: Params) -> None:
    labels = meta(peer, pod=True).get("labels") or {}
    for key in _PEER_TI_LABELS:
        if key not in (params.get("labels") or {}):
            labels.pop(key, None)
    for pod in (False, True):
        _ours_only(meta(ours, pod).get("labels"), params.get("labels"))


def _identity_annotations(peer: Job, ours: Job, params: Params) -> None:
    for pod in (False, True):
        _ours_only(meta(ours, pod).get("annotations"), params.get("annotations"))


def _ttl_hold(peer: Job, ours: Job, params: Params) -> None:
    held = (meta(ours).get("annotations") or {}).pop(ANNOTATION_HELD_TTL, None)
    if held is not None and "ttlSecondsAfterFinished" not in ours["spec"]:
        ours["spec"]["ttlSecondsAfterFinished"] = int(held)


def _default_ttl(peer: Job, ours: Job, params: Params) -> None:
    default = config.get("default_ttl_seconds_after_finished")
    if (
        "ttlSecondsAfterFinished" not in peer["spec"]
        and ours["spec"].get("ttlSecondsAfterFinished") == default
    ):
        del ours["spec"]["ttlSecondsAfterFinished"]


def _result_file(peer: Job, ours: Job, params: Params) -> None:
    main = main_container(ours)
    main["env"] = [e for e in main.get("env") or [] if e.get("name") != RESULT_ENV]


def _xcom_sidecar(peer: Job, ours: Job, params: Params) -> None:
    if not params.get("do_xcom_push"):
        return
    spec = pod_spec(peer)
    spec["containers"] = [c for c in spec.get("containers") or [] if c.get("name") != "airflow-xcom-sidecar"]
    spec["volumes"] = [v for v in spec.get("volumes") or [] if v != {"name": "xcom", "emptyDir": {}}]
    main = main_container(peer)
    xcom = {"name": "xcom", "mountPath": "/airflow/xcom"}
    main["volumeMounts"] = [m for m in main.get("volumeMounts") or [] if m != xcom]


def _main_container_name(peer: Job, ours: Job, params: Params) -> None:
    p, o = main_container(peer), main_container(ours)
    forced = params.get("base_container_name") or "base"
    ours_may = {params.get("base_container_name") or "main"}
    ours_may |= {c.get("name") for s in _template_pod_specs(params) for c in (s.get("containers") or [])[:1]}
    if p.get("name") == forced and o.get("name") in ours_may:
        p["name"] = o["name"]


# Not given, the peer sends these (its constructor's defaults): built with None instead.
PEER_DEFAULTS = ("parallelism", "termination_message_policy", "hostnetwork")


def _peer_defaults(peer: Job, ours: Job, params: Params) -> None:
    pass  # applied to the peer's parameters in build_peer


def _restart_policy(peer: Job, ours: Job, params: Params) -> None:
    given = {s.get("restartPolicy") for s in _template_pod_specs(params)}
    if pod_spec(peer).get("restartPolicy") == "Never" and pod_spec(ours).get("restartPolicy") in given:
        pod_spec(peer)["restartPolicy"] = pod_spec(ours)["restartPolicy"]


def _env_by_name(peer: Job, ours: Job, params: Params) -> None:
    main = main_container(peer)
    # A name twice: one entry where it came first, with the last value (a dict keeps both so).
    main["env"] = list({e.get("name"): e for e in main.get("env") or []}.values())


def _resources_merge(peer: Job, ours: Job, params: Params) -> None:
    if params.get("container_resources") is None:
        return
    merged: dict[str, Any] = {}
    for spec in _template_pod_specs(params):  # the last layer with resources, as the peer merges them
        merged = (spec.get("containers") or [{}])[0].get("resources") or merged
    merged = copy.deepcopy(merged)
    for kind, quantities in (main_container(peer).get("resources") or {}).items():
        if isinstance(quantities, dict) and isinstance(merged.get(kind), dict):
            merged[kind].update(quantities)
        else:
            merged[kind] = quantities
    main_container(peer)["resources"] = merged


# Parameters the peer's merge drops when they are 0 or False and a template has the field.
_FALSY = {
    "backoff_limit": (False, "backoffLimit"),
    "completions": (False, "completions"),
    "suspend": (False, "suspend"),
    "active_deadline_seconds": (False, "activeDeadlineSeconds"),
    "ttl_seconds_after_finished": (False, "ttlSecondsAfterFinished"),
    "automount_service_account_token": (True, "automountServiceAccountToken"),
    "hostnetwork": (True, "hostNetwork"),
    "termination_grace_period": (True, "terminationGracePeriodSeconds"),
}


def _falsy_over_template(peer: Job, ours: Job, params: Params) -> None:
    for name, (in_pod, key) in _FALSY.items():
        value = params.get(name)
        target = pod_spec(peer) if in_pod else peer["spec"]
        if value is not None and not value and target.get(key) not in (None, value):
            target[key] = value


def _pod_deadline(peer: Job, ours: Job, params: Params) -> None:
    spec = pod_spec(peer)
    deadline = params.get("active_deadline_seconds")
    if deadline is not None and spec.get("activeDeadlineSeconds") == deadline:
        spec.pop("activeDeadlineSeconds")
        if "activeDeadlineSeconds" in pod_spec(ours):
            spec["activeDeadlineSeconds"] = pod_spec(ours)["activeDeadlineSeconds"]


def _skip_rule(peer: Job, ours: Job, params: Params) -> None:
    codes = params.get("skip_on_exit_code")
    policy = ours["spec"].get("podFailurePolicy")
    if not codes or not policy:
        return
    codes = sorted({codes} if isinstance(codes, int) else set(codes))
    first = policy["rules"][0]
    if first.get("action") == "FailJob" and (first.get("onExitCodes") or {}).get("values") == codes:
        policy["rules"] = policy["rules"][1:]
        if not policy["rules"]:
            del ours["spec"]["podFailurePolicy"]


# The objects the peer sends empty; an empty one elsewhere means something (``emptyDir: {}``).
_EMPTY_MEANS_UNSET = ("affinity", "securityContext", "nodeSelector", "labels", "annotations", "metadata")


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {
            k: v
            for k, v in out.items()
            if not (v is None or v == [] or (v == {} and k in _EMPTY_MEANS_UNSET))
        }
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _empty_values(peer: Job, ours: Job, params: Params) -> None:
    for job in (peer, ours):
        pruned = _pruned(job)
        job.clear()
        job.update(pruned)


# Applied in this order (the TTL hold before the annotations go, the pruning last).
REWRITES: dict[str, Callable[[Job, Job, Params], None]] = {
    "job-name": _job_name,
    "pod-template-name": _pod_template_name,
    "ttl-hold": _ttl_hold,
    "default-ttl": _default_ttl,
    "identity-labels": _identity_labels,
    "identity-annotations": _identity_annotations,
    "result-file": _result_file,
    "xcom-sidecar": _xcom_sidecar,
    "main-container-name": _main_container_name,
    "peer-defaults": _peer_defaults,
    "env-by-name": _env_by_name,
    "resources-merge": _resources_merge,
    "falsy-over-template": _falsy_over_template,
    "restart-policy": _restart_policy,
    "pod-deadline": _pod_deadline,
    "skip-rule": _skip_rule,
    "empty-values": _empty_values,
}


# -- comparing ----------------------------------------------------------------------------------


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """``{path: leaf}``; list items are named by position and, if they have one, name."""
    if isinstance(value, dict) and value:
        return {
            k: v for key, item in value.items() for k, v in flatten(item, f"{path}.{key}".lstrip(".")).items()
        }
    if isinstance(value, list) and value:
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            out |= flatten(item, f"{path}[{i}{f':{name}' if isinstance(name, str) else ''}]")
        return out
    return {path: value}


def differences(peer: Job, ours: Job) -> list[str]:
    """One line per field that differs, by path."""
    p, o = flatten(peer), flatten(ours)
    lines = []
    for path in sorted(set(p) | set(o)):
        if path not in o:
            lines.append(f"  {path}: peer {p[path]!r}, ours has none")
        elif path not in p:
            lines.append(f"  {path}: ours {o[path]!r}, the peer has none")
        elif p[path] != o[path]:
            lines.append(f"  {path}: peer {p[path]!r}, ours {o[path]!r}")
    return lines


def compare(peer: Job, ours: Job, params: Params) -> tuple[list[str], set[str]]:
    """The unintended differences, and the intended ones that changed something."""
    peer, ours = copy.deepcopy(peer), copy.deepcopy(ours)
    seen = set()
    for key, rewrite in REWRITES.items():
        before = copy.deepcopy((peer, ours))
        rewrite(peer, ours, params)
        if (peer, ours) != before:
            seen.add(key)
    return differences(peer, ours), seen

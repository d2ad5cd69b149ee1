"""Validate a Job the way the apiserver would on create, with a message saying how to fix it.

The rules mirror kubernetes ``pkg/apis/batch/validation`` (names, labels, counts, Indexed Jobs,
``podFailurePolicy``, ``successPolicy``, containers), so mistakes surface when the DAG runs the
operator rather than as a 422 from the cluster; ``core/schema.py`` adds the check of every field
against the installed client's models (so a field newer than the client needs a newer client).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.indexes import count_indexes
from airflow_batchjob.core.manifest import JsonDict
from airflow_batchjob.core.naming import is_dns1123_label, is_label_value

# Limits from kubernetes pkg/apis/batch/validation.
_MAX_PARALLELISM_INDEXED = 100_000
_MAX_FAILED_INDEXES = 100_000
_COMPLETIONS_SOFT_LIMIT = 100_000
_PARALLELISM_LIMIT_HIGH_COMPLETIONS = 10_000
_MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
_MAX_POD_FAILURE_POLICY_RULES = 20
_MAX_ON_EXIT_CODES_VALUES = 255
_MAX_ON_POD_CONDITIONS = 20
_MAX_SUCCESS_POLICY_RULES = 20
_MAX_SUCCEEDED_INDEXES_LEN = 64 * 1024

_POD_FAILURE_ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _is_int(value: Any) -> TypeGuard[int]:
    """An integer as the API means it: YAML's ``true`` is a bool, which Python counts as an int."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_labels(where: str, labels: Any, problems: list[str]) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        problems.append(f"{where} must be a mapping of strings")
        return
    for key, value in labels.items():
        prefix, _, label_name = str(key).rpartition("/")
        if (
            not label_name
            or len(label_name) > 63
            or not _QUALIFIED_NAME_RE.match(label_name)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)))
        ):
            problems.append(f"{where} key {key!r} is not a valid label key ([prefix/]name, name <= 63 chars)")
        if not isinstance(value, str) or not is_label_value(value):
            problems.append(
                f"{where}[{key!r}] = {value!r} is not a valid label value (<= 63 chars of A-Z a-z 0-9 - _ ., "
                "alphanumeric at both ends): shorten it or replace the other characters"
            )


def _check_nonnegative(spec: JsonDict, key: str, problems: list[str]) -> None:
    value = spec.get(key)
    if value is not None and (not _is_int(value) or value < 0):
        problems.append(f"spec.{key} must be a non-negative integer, got {value!r}")


def _check_pod_failure_policy(spec: JsonDict, pod_spec: JsonDict, problems: list[str]) -> None:
    policy = spec["podFailurePolicy"]
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list):
        problems.append("spec.podFailurePolicy.rules must be a list of rules")
        return
    if len(rules) > _MAX_POD_FAILURE_POLICY_RULES:
        problems.append(
            f"spec.podFailurePolicy has {len(rules)} rules; at most {_MAX_POD_FAILURE_POLICY_RULES}"
        )
    names = {c.get("name") for key in ("containers", "initContainers") for c in pod_spec.get(key) or []}
    for i, rule in enumerate(rules):
        where = f"spec.podFailurePolicy.rules[{i}]"
        if not isinstance(rule, dict):
            problems.append(f"{where} must be a mapping")
            continue
        action = rule.get("action")
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            problems.append(
                f"{where}.action FailIndex requires backoffLimitPerIndex: set backoff_limit_per_index "
                "(Indexed Job) or use FailJob"
            )
        elif action not in _POD_FAILURE_ACTIONS:
            problems.append(
                f"{where}.action must be one of {', '.join(_POD_FAILURE_ACTIONS)}, got {action!r}"
            )
        on_exit, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (on_exit is None) == (not on_conditions):
            problems.append(f"{where} needs exactly one of onExitCodes or onPodConditions")
        if isinstance(on_exit, dict):
            _check_on_exit_codes(f"{where}.onExitCodes", on_exit, names, problems)
        if on_conditions:
            if len(on_conditions) > _MAX_ON_POD_CONDITIONS:
                problems.append(f"{where}.onPodConditions has more than {_MAX_ON_POD_CONDITIONS} patterns")
            for j, pattern in enumerate(on_conditions):
                if not isinstance(pattern, dict) or not pattern.get("type"):
                    problems.append(
                        f"{where}.onPodConditions[{j}] needs a condition type, e.g. DisruptionTarget"
                    )
                elif pattern.get("status") not in ("True", "False", "Unknown"):
                    problems.append(
                        f"{where}.onPodConditions[{j}].status must be 'True', 'False' or 'Unknown' "
                        f"(quote it in YAML), got {pattern.get('status')!r}"
                    )


def _check_on_exit_codes(where: str, req: JsonDict, container_names: set[Any], problems: list[str]) -> None:
    operator = req.get("operator")
    if operator not in ("In", "NotIn"):
        problems.append(f"{where}.operator must be In or NotIn, got {operator!r}")
    container = req.get("containerName")
    if container is not None and container not in container_names:
        problems.append(f"{where}.containerName {container!r} is not a container or initContainer of the Pod")
    values = req.get("values")
    if not isinstance(values, list) or not values or not all(_is_int(v) for v in values):
        problems.append(f"{where}.values must be a non-empty list of exit codes")
        return
    if len(values) > _MAX_ON_EXIT_CODES_VALUES:
        problems.append(f"{where}.values has more than {_MAX_ON_EXIT_CODES_VALUES} entries")
    if operator == "In" and 0 in values:
        problems.append(f"{where}.values must not contain 0 with operator In (0 means success); remove it")
    if len(set(values)) != len(values):
        problems.append(f"{where}.values has duplicates; list each exit code once")
    if values != sorted(values):
        problems.append(f"{where}.values must be in ascending order, e.g. {sorted(set(values))}")


def _check_success_policy(spec: JsonDict, completions: Any, problems: list[str]) -> None:
    policy = spec["successPolicy"]
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not rules or not isinstance(rules, list):
        problems.append(
            "spec.successPolicy.rules must list at least one rule (succeededIndexes and/or succeededCount)"
        )
        return
    if len(rules) > _MAX_SUCCESS_POLICY_RULES:
        problems.append(f"spec.successPolicy has {len(rules)} rules; at most {_MAX_SUCCESS_POLICY_RULES}")
    if not _is_int(completions):
        return  # already reported: Indexed needs completions
    for i, rule in enumerate(rules):
        where = f"spec.successPolicy.rules[{i}]"
        if not isinstance(rule, dict):
            problems.append(f"{where} must be a mapping")
            continue
        indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if indexes is None and count is None:
            problems.append(f"{where} needs succeededIndexes (e.g. '0-2,5') or succeededCount, or both")
        total = None
        if indexes is not None:
            try:
                if not isinstance(indexes, str) or len(indexes) > _MAX_SUCCEEDED_INDEXES_LEN:
                    raise ValueError("must be a string like '0,2-4' of at most 64KiB")
                total = count_indexes(indexes, completions)
            except ValueError as exc:
                problems.append(f"{where}.succeededIndexes {indexes!r} is malformed: {exc}")
        if count is not None:
            if not _is_int(count) or count < 0:
                problems.append(f"{where}.succeededCount must be a non-negative integer, got {count!r}")
            elif count > completions:
                problems.append(f"{where}.succeededCount {count} exceeds completions ({completions})")
            elif total is not None and count > total:
                problems.append(
                    f"{where}.succeededCount {count} exceeds the {total} indexes in succeededIndexes"
                )


def _check_indexed(spec: JsonDict, name: Any, problems: list[str]) -> None:
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    max_failed, per_index = spec.get("maxFailedIndexes"), spec.get("backoffLimitPerIndex")
    if completions is None:
        problems.append("an Indexed Job needs completions: set completions (the number of indexes)")
        return
    if not _is_int(completions):
        return
    if _is_int(parallelism) and parallelism > _MAX_PARALLELISM_INDEXED:
        problems.append(f"spec.parallelism must be <= {_MAX_PARALLELISM_INDEXED} for an Indexed Job")
    if _is_int(max_failed):
        if max_failed > completions:
            problems.append(f"spec.maxFailedIndexes ({max_failed}) must be <= completions ({completions})")
        if max_failed > _MAX_FAILED_INDEXES:
            problems.append(f"spec.maxFailedIndexes must be <= {_MAX_FAILED_INDEXES}")
    if completions > _COMPLETIONS_SOFT_LIMIT and per_index is not None:
        if max_failed is None:
            problems.append(
                f"with backoffLimitPerIndex and completions above {_COMPLETIONS_SOFT_LIMIT}, "
                "maxFailedIndexes must be set"
            )
        if _is_int(parallelism) and parallelism > _PARALLELISM_LIMIT_HIGH_COMPLETIONS:
            problems.append(
                f"spec.parallelism must be <= {_PARALLELISM_LIMIT_HIGH_COMPLETIONS} with "
                f"backoffLimitPerIndex and completions above {_COMPLETIONS_SOFT_LIMIT}"
            )
        if _is_int(max_failed) and max_failed > _MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
            problems.append(
                f"spec.maxFailedIndexes must be <= {_MAX_FAILED_INDEXES_HIGH_COMPLETIONS} with completions "
                f"above {_COMPLETIONS_SOFT_LIMIT}"
            )
    if completions > 0 and isinstance(name, str) and not is_dns1123_label(f"{name}-{completions - 1}"):
        problems.append(
            f"Pods of Indexed Job {name!r} get hostname '{name}-{completions - 1}', which is not a valid DNS "
            "label: shorten the name (<= 52 chars without dots is always safe)"
        )


def _check_containers(pod_spec: JsonDict, problems: list[str]) -> None:
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append("spec.template.spec.containers must have at least one container")
        return
    seen: set[str] = set()
    for i, c in enumerate([*containers, *(pod_spec.get("initContainers") or [])]):
        kind = "containers" if i < len(containers) else "initContainers"
        idx = i if i < len(containers) else i - len(containers)
        where = f"spec.template.spec.{kind}[{idx}]"
        if not isinstance(c, dict):
            problems.append(f"{where} must be a mapping")
            continue
        cname = c.get("name")
        if not isinstance(cname, str) or not is_dns1123_label(cname):
            problems.append(f"{where}.name {cname!r} must be a DNS-1123 label (lowercase a-z, 0-9, '-')")
        elif cname in seen:
            problems.append(f"{where}.name {cname!r} is used by two containers; names must be unique")
        else:
            seen.add(cname)
        if not c.get("image"):
            problems.append(f"{where} ({cname}) needs an image")


def validate_job(job: Mapping[str, Any]) -> None:
    """Raise InvalidJobSpecError listing every way the apiserver would reject this Job on create."""
    problems: list[str] = []
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    pod_template = spec.get("template") or {}
    pod_spec = pod_template.get("spec") or {}
    name, namespace = meta.get("name"), meta.get("namespace")

    # Job names are DNS subdomains, but the controller copies the name into the job-name label.
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_SUBDOMAIN_RE.match(name):
        problems.append(
            f"metadata.name {name!r} must be <= 63 lowercase letters, digits, '-' or '.', starting and "
            "ending alphanumeric: change job_name (or leave random_name_suffix on, which derives a "
            "valid name)"
        )
    if namespace is not None and (not isinstance(namespace, str) or not is_dns1123_label(namespace)):
        problems.append(f"metadata.namespace {namespace!r} is not a valid namespace name (DNS-1123 label)")
    _check_labels("metadata.labels", meta.get("labels"), problems)
    _check_labels(
        "spec.template.metadata.labels", (pod_template.get("metadata") or {}).get("labels"), problems
    )

    for key in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        _check_nonnegative(spec, key, problems)

    mode = spec.get("completionMode")
    indexed = mode == "Indexed"
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        problems.append(f"spec.completionMode must be NonIndexed or Indexed, got {mode!r}")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        problems.append(
            "max_failed_indexes requires backoff_limit_per_index: set backoff_limit_per_index or drop "
            "max_failed_indexes"
        )
    if indexed:
        _check_indexed(spec, name, problems)
    elif mode in (None, "NonIndexed"):
        for key, snake in (
            ("backoffLimitPerIndex", "backoff_limit_per_index"),
            ("maxFailedIndexes", "max_failed_indexes"),
        ):
            if spec.get(key) is not None:
                problems.append(
                    f"{snake} requires completion_mode='Indexed' (and completions); set it or drop {snake}"
                )

    if spec.get("successPolicy") is not None:
        if indexed:
            _check_success_policy(spec, spec.get("completions"), problems)
        else:
            problems.append(
                "success_policy requires completion_mode='Indexed': set it or drop success_policy"
            )

    has_pfp = spec.get("podFailurePolicy") is not None
    if has_pfp:
        _check_pod_failure_policy(spec, pod_spec, problems)
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if has_pfp and replacement != "Failed":
            problems.append(
                f"pod_replacement_policy must be 'Failed' when a pod_failure_policy is set, "
                f"got {replacement!r}"
            )
        elif replacement not in ("Failed", "TerminatingOrFailed"):
            problems.append(
                f"pod_replacement_policy must be Failed or TerminatingOrFailed, got {replacement!r}"
            )

    restart = pod_spec.get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        problems.append(
            f"spec.template.spec.restartPolicy must be Never or OnFailure for a Job, got {restart!r}"
        )
    elif has_pfp and restart != "Never":
        problems.append("a pod_failure_policy requires restartPolicy Never; set restartPolicy: Never")

    _check_containers(pod_spec, problems)
    from airflow_batchjob.core.schema import schema_problems

    problems += schema_problems(dict(job))
    if problems:
        raise InvalidJobSpecError(problems)

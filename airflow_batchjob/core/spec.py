"""Build and validate a batch/v1 Job as a plain API-form (camelCase) dict.

Working on the dict rather than ``V1Job`` keeps every field a user put in a template and makes
the result directly serialisable; ``core/schema.py`` checks those fields against the installed
client's models (so a field newer than the client needs a newer client). Validation
mirrors the apiserver's rules (kubernetes ``pkg/apis/batch/validation``) so mistakes surface when
the DAG runs the operator, with a message saying how to fix them, not as a 422 from the cluster.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeGuard

import yaml

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL, is_dns1123_label, is_label_value

if TYPE_CHECKING:
    from kubernetes.client import V1EnvVar, V1ResourceRequirements

    from airflow_batchjob.core.podsettings import PodSettings

JsonDict = dict[str, Any]

_TEMPLATE_FILE_SUFFIXES = (".yaml", ".yml", ".json")
# Set by the apiserver/controller on a live Job; a template copied from `kubectl get job -o yaml`
# carries them and would be rejected (or adopt the wrong Pods) if sent back.
_SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generateName",
    "generation",
    "selfLink",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_CONTROLLER_LABELS = (
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
)

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


@dataclass(frozen=True, kw_only=True)
class JobOverrides:
    """Job spec fields to force over the template; ``None`` means "keep the template's value"."""

    completions: int | None = None
    parallelism: int | None = None
    completion_mode: Literal["NonIndexed", "Indexed"] | None = None
    backoff_limit: int | None = None
    backoff_limit_per_index: int | None = None
    max_failed_indexes: int | None = None
    pod_failure_policy: Mapping[str, Any] | None = None
    success_policy: Mapping[str, Any] | None = None
    pod_replacement_policy: Literal["TerminatingOrFailed", "Failed"] | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    suspend: bool | None = None

    def to_spec_fields(self) -> JsonDict:
        """The set fields as API (camelCase) JobSpec keys."""
        out: JsonDict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[_camel(f.name)] = to_api(value)
        return out


EnvInput = Mapping[str, str] | Sequence[Mapping[str, Any] | Any]
# What users pass (the operators' hints): env as a dict, or a list of API-form dicts / V1EnvVar;
# resources as a V1ResourceRequirements or its API-form dict.
EnvParam: TypeAlias = "Mapping[str, str] | Sequence[Mapping[str, Any] | V1EnvVar]"
ResourcesParam: TypeAlias = "Mapping[str, Any] | V1ResourceRequirements"


@dataclass(frozen=True, kw_only=True)
class ContainerParams:
    """What the operator says about the main container; ``None`` fields keep the template's value.

    ``env`` is a name→value mapping or a list of EnvVar dicts (API form) / ``V1EnvVar`` objects, the
    latter for ``valueFrom``. It is merged over the template's env by name.
    """

    image: str | None = None
    cmds: Sequence[str] | None = None
    arguments: Sequence[str] | None = None
    env: EnvInput | None = None
    resources: Mapping[str, Any] | Any | None = None
    name: str = "main"

    def is_empty(self) -> bool:
        return all(v is None for v in (self.image, self.cmds, self.arguments, self.env, self.resources))


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


@functools.cache
def _api_client() -> Any:
    """One client, used only for its pure model→dict conversion (it opens no connection)."""
    from kubernetes.client import ApiClient

    return ApiClient()


def to_api(value: Any) -> Any:
    """A fresh copy of ``value`` in API form: client models (even nested in dicts/lists) become
    camelCase dicts, datetimes ISO strings; plain data is copied."""
    return _api_client().sanitize_for_serialization(value)


def load_template(template: Mapping[str, Any] | str | Any | None) -> JsonDict:
    """Normalise a Job template given as a dict, YAML/JSON text, a file path or a ``V1Job``.

    Only full Job manifests are accepted (``apiVersion``/``kind`` may be omitted); the result is a
    private deep copy, so callers may mutate it freely.
    """
    if template is None:
        return {}
    if isinstance(template, str):
        data = parse_manifest_text(template)
    elif isinstance(template, Mapping):
        data = copy.deepcopy(dict(template))
    elif hasattr(template, "openapi_types"):
        data = to_api(template)
    else:
        raise InvalidJobSpecError(
            f"job template must be a dict, YAML/JSON text, a .yaml/.yml/.json path or a V1Job, "
            f"not {type(template).__name__}"
        )
    if not isinstance(data, dict):
        raise InvalidJobSpecError(
            f"job template must be a mapping (a Job manifest), got {type(data).__name__}"
        )
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version is not None and api_version != "batch/v1":
        raise InvalidJobSpecError(f"job template has apiVersion {api_version!r}; use 'batch/v1' or omit it")
    if kind is not None and kind != "Job":
        hint = " (use its spec.jobTemplate as the template)" if kind == "CronJob" else ""
        raise InvalidJobSpecError(f"job template has kind {kind!r}; it must be a 'Job' manifest{hint}")
    return data


def is_template_file(template: Any) -> bool:
    """Whether a template string names a file (one line ending .yaml/.yml/.json) or holds Jinja:
    both are read or rendered at run time. Other strings are YAML text, parsed at once."""
    if not isinstance(template, str):
        return False
    stripped = template.strip()
    one_file = "\n" not in stripped and stripped.lower().endswith(_TEMPLATE_FILE_SUFFIXES)
    return one_file or "{{" in template or "{%" in template


def parse_manifest_text(text: str, source: str = "job template") -> Any:
    """Read a manifest file or parse inline YAML (JSON is YAML too)."""
    stripped = text.strip()
    if "\n" not in stripped and stripped.lower().endswith(_TEMPLATE_FILE_SUFFIXES):
        if not os.path.isfile(stripped):
            raise InvalidJobSpecError(f"{source} file {stripped!r} does not exist")
        source = stripped
        with open(stripped, encoding="utf-8") as fh:
            text = fh.read()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidJobSpecError(f"{source} is not valid YAML: {exc}") from exc
    if len(docs) != 1:
        raise InvalidJobSpecError(f"{source} must contain exactly one YAML document, found {len(docs)}")
    return docs[0]


def _sub(d: JsonDict, key: str) -> JsonDict:
    """``d[key]`` as a dict, created if missing or null (YAML ``labels:`` with nothing under it)."""
    value = d.get(key)
    if not isinstance(value, dict):
        value = {}
        d[key] = value
    return value


def _strip_server_fields(job: JsonDict) -> None:
    job.pop("status", None)
    meta = _sub(job, "metadata")
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    spec = _sub(job, "spec")
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
    pod_meta = _sub(_sub(spec, "template"), "metadata")
    pod_meta.pop("creationTimestamp", None)
    for labels in (meta.get("labels"), pod_meta.get("labels")):
        if isinstance(labels, dict):
            for key in _CONTROLLER_LABELS:
                labels.pop(key, None)


def _env_list(env: EnvInput) -> list[JsonDict]:
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    return [to_api(e) for e in env]


def env_list(env: EnvInput | None) -> list[JsonDict]:
    """Env given as a mapping or a list of V1EnvVar-like entries, as API-form entries."""
    return _env_list(env) if env else []


def _merge_env(existing: list[JsonDict], extra: list[JsonDict]) -> list[JsonDict]:
    """Override by name, keeping the template's order so ``$(VAR)`` references still resolve."""
    merged = {e.get("name"): e for e in existing}
    for e in extra:
        merged[e.get("name")] = e
    return list(merged.values())


def _apply_container(pod_spec: JsonDict, params: ContainerParams) -> None:
    containers = pod_spec.get("containers")
    if containers is not None and not isinstance(containers, list):
        raise InvalidJobSpecError(
            f"spec.template.spec.containers must be a list of containers, not {type(containers).__name__}"
        )
    if containers is None:
        containers = []
        pod_spec["containers"] = containers
    # Prefer the container named like ours; otherwise the first one, keeping its name so that
    # podFailurePolicy containerName references in the template keep working.
    target = next((c for c in containers if c.get("name") == params.name), None)
    if target is None and containers:
        target = containers[0]
    if target is None:
        target = {"name": params.name}
        containers.append(target)
    target.setdefault("name", params.name)
    if params.image is not None:
        target["image"] = params.image
    if params.cmds is not None:
        target["command"] = list(params.cmds)
    if params.arguments is not None:
        target["args"] = list(params.arguments)
    if params.env is not None:
        target["env"] = _merge_env(list(target.get("env") or []), _env_list(params.env))
    if params.resources is not None:
        given = to_api(params.resources)
        if not isinstance(given, dict):
            raise InvalidJobSpecError(
                f"container_resources={params.resources!r}: give a V1ResourceRequirements or a dict "
                "such as {'requests': {'cpu': '500m', 'memory': '256Mi'}, 'limits': {'memory': '1Gi'}}"
            )
        resources = _sub(target, "resources")
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(resources.get(key), dict):
                resources[key].update(value)
            else:
                resources[key] = value


def build_job(
    *,
    name: str,
    namespace: str,
    template: Mapping[str, Any] | str | Any | None = None,
    container: ContainerParams | None = None,
    overrides: JobOverrides | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod: PodSettings | None = None,
    on_override: Callable[[str], None] | None = None,
) -> JsonDict:
    """The Job to create: template < Pod settings < container params, then the spec overrides and
    our identity; validated.

    Our labels go on the Pod template too, so Pods are findable by task instance without knowing
    the Job's uid. ``backoffLimit`` is left to the apiserver's default when nobody sets it. Each
    value a Pod layer replaces goes to ``on_override`` (``core/podsettings.py``).
    """
    loaded = load_template(template)
    job: JsonDict = {"apiVersion": "batch/v1", "kind": "Job"}
    job.update((k, v) for k, v in loaded.items() if k not in job)
    _strip_server_fields(job)
    meta = _sub(job, "metadata")
    meta["name"], meta["namespace"] = name, namespace
    spec = _sub(job, "spec")
    pod_template = _sub(spec, "template")
    pod_meta = _sub(pod_template, "metadata")
    pod_spec = _sub(pod_template, "spec")
    if pod is not None and not pod.is_empty():
        from airflow_batchjob.core.podsettings import apply_pod_layers

        main = container.name if container is not None else ContainerParams.name
        for line in apply_pod_layers(job, pod, main, container.env if container is not None else None):
            if on_override is not None:
                on_override(line)
        pod_template = spec["template"]
        pod_meta = _sub(pod_template, "metadata")
        pod_spec = _sub(pod_template, "spec")
    for target in (meta, pod_meta):
        if labels:
            _sub(target, "labels").update(labels)
        if annotations:
            _sub(target, "annotations").update(annotations)
    if container is not None and not (container.is_empty() and not pod_spec.get("containers")):
        _apply_container(pod_spec, container)
    if not pod_spec.get("containers"):
        raise InvalidJobSpecError(
            "the Job has no container: give an image (container parameters) or a template with "
            "spec.template.spec.containers"
        )
    if not pod_spec.get("restartPolicy"):
        pod_spec["restartPolicy"] = "Never"
    if overrides is not None:
        # A template from `kubectl get` carries the apiserver's default TerminatingOrFailed, which is
        # invalid next to a podFailurePolicy; drop it so the apiserver defaults to Failed instead.
        if (
            overrides.pod_failure_policy is not None
            and overrides.pod_replacement_policy is None
            and spec.get("podReplacementPolicy") == "TerminatingOrFailed"
        ):
            del spec["podReplacementPolicy"]
        spec.update(overrides.to_spec_fields())
    validate_job(job)
    return job


# --------------------------------------------------------------------------------------------------
# Validation


def hold_ttl(body: JsonDict, default: int | None = None) -> None:
    """Move ``ttlSecondsAfterFinished`` into an annotation until the task has read the outcome.

    The TTL controller deletes a finished Job (and its Pods) that long after it finished: with a
    short TTL, the failed Pods' logs, an Indexed Job's per-index results or a group's rows would
    be gone before the task reads them. The operator sets the field once it has (``held_ttl``).
    ``default`` (``[batchjob] default_ttl_seconds_after_finished``) is the TTL of a body that
    has none; negative means none.
    """
    ttl = (body.get("spec") or {}).pop("ttlSecondsAfterFinished", None)
    if ttl is None and default is not None and default >= 0:
        ttl = default
    if ttl is not None:
        body.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION_HELD_TTL] = str(ttl)


def held_ttl(job: Mapping[str, Any]) -> int | None:
    """The TTL ``hold_ttl`` kept back for this Job, if it is still to be set."""
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HELD_TTL)
    if value is None or (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
        return None
    return int(value) if str(value).isdigit() else None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_index_intervals(text: str, completions: int) -> int:
    """Count the indexes in an apiserver-style interval list ("0,2-4"); ValueError if malformed.

    Same rules as the apiserver: ascending, non-overlapping, ranges written low-high with low < high,
    and every index below ``completions``.
    """
    if not text:
        return 0
    total, last = 0, -1
    for part in text.split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError(f"{part!r} is not an index or a 'low-high' range")
        lo, hi = int(bounds[0]), int(bounds[-1])
        if len(bounds) == 2 and lo >= hi:
            raise ValueError(f"range {part!r} must go from low to high")
        if hi >= completions:
            raise ValueError(f"index {hi} is not below completions ({completions})")
        if lo <= last:
            raise ValueError(f"{part!r} must come after {last} (ascending, no overlaps)")
        total += hi - lo + 1
        last = hi
    return total


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
                total = _parse_index_intervals(indexes, completions)
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

"""Build the Job to create: a template, Pod settings, container parameters and spec overrides, merged.

The result is an API-form (camelCase) dict (``core/manifest.py``), validated before it is returned
(``core/validation.py``), so a mistake surfaces when the operator runs, not as a 422 from the
cluster. Also the held TTL: ``ttlSecondsAfterFinished`` kept back until the task read the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.manifest import JsonDict, load_template, to_api
from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL
from airflow_batchjob.core.podsecurity import apply_pod_security
from airflow_batchjob.core.validation import validate_job

if TYPE_CHECKING:
    from kubernetes.client import V1EnvVar, V1ResourceRequirements

    from airflow_batchjob.core.podsettings import PodSettings

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
# Lays a PodSettings' layers over a Job's Pod template, in place; returns what they replaced.
PodLayers: TypeAlias = Callable[[JsonDict, "PodSettings", str, EnvInput | None], list[str]]
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
    lay_pod: PodLayers | None = None,
    on_override: Callable[[str], None] | None = None,
) -> JsonDict:
    """The Job to create: template < Pod settings < container params, then ``pod.pod_security``,
    the spec overrides and our identity; validated.

    Our labels go on the Pod template too, so Pods are findable by task instance without knowing
    the Job's uid. ``backoffLimit`` is left to the apiserver's default when nobody sets it. Each
    value a Pod layer replaces goes to ``on_override`` (``core/podsettings.py``). ``lay_pod`` lays
    ``pod``'s layers (``operators/podlayers.apply_pod_layers``: cncf.kubernetes' merge, which
    imports Airflow, so core receives it instead of importing it).
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
        if lay_pod is None:
            raise TypeError("build_job: Pod settings given without lay_pod to lay them")
        main = container.name if container is not None else ContainerParams.name
        for line in lay_pod(job, pod, main, container.env if container is not None else None):
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
    if pod is not None:  # over every container the template and the parameters gave
        apply_pod_security(pod_template, pod.pod_security)
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

"""The Pod parameters a ``KubernetesPodOperator``/``KubernetesJobOperator`` user already writes.

``PodSettings`` holds them with the cncf.kubernetes names and types (``V1...`` objects or API-form
dicts). They are laid over a Job's Pod template by ``operators/podlayers.py``, with the
cncf.kubernetes provider's own merge (so a Pod merges here as under ``KubernetesPodOperator``);
this module stays free of Airflow and says, for the task log, which values a layer replaces
(:func:`overrides`). One order, documented in docs/guides/parameters.md: the Job template's Pod <
a Pod template (``pod_template_file`` / ``pod_template_dict`` < ``full_pod_spec``) < these
parameters < the container parameters (image, cmds, env, resources, applied by ``core/build.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from airflow_batchjob.core.manifest import JsonDict
from airflow_batchjob.core.podsecurity import PodSecurity

# cncf.kubernetes lays these lists end to end (extend_object_field) rather than replacing them.
_EXTENDED_POD_LISTS = ("volumes", "initContainers")
_EXTENDED_CONTAINER_LISTS = ("env", "envFrom", "volumeMounts", "ports", "volumeDevices")


@dataclass(frozen=True, kw_only=True)
class PodSettings:
    """Pod and main-container settings, named and typed as in cncf.kubernetes' operators.

    Every field is optional; ``None`` keeps what the templates say. Objects may be given as
    ``kubernetes.client`` models or as API-form (camelCase) dicts, as in a manifest.
    """

    volumes: Sequence[Any] | None = None
    volume_mounts: Sequence[Any] | None = None
    env_from: Sequence[Any] | None = None
    configmaps: Sequence[str] | None = None
    secrets: Sequence[Any] | None = None
    ports: Sequence[Any] | None = None
    pod_runtime_info_envs: Sequence[Any] | None = None
    image_pull_policy: str | None = None
    container_security_context: Any = None
    termination_message_policy: str | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: Sequence[Any] | None = None
    affinity: Any = None
    service_account_name: str | None = None
    automount_service_account_token: bool | None = None
    image_pull_secrets: str | Sequence[Any] | None = None
    security_context: Any = None
    init_containers: Sequence[Any] | None = None
    priority_class_name: str | None = None
    termination_grace_period: int | None = None
    runtime_class_name: str | None = None
    host_aliases: Sequence[Any] | None = None
    hostnetwork: bool | None = None
    dnspolicy: str | None = None
    dns_config: Any = None
    hostname: str | None = None
    subdomain: str | None = None
    schedulername: str | None = None
    pod_template_file: str | None = None
    pod_template_dict: Mapping[str, Any] | None = None
    full_pod_spec: Any = None
    # Not a layer: laid over the merged Pod by core/build.py, last (core/podsecurity.py).
    pod_security: PodSecurity | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def is_empty(self) -> bool:
        """No Pod layer to lay (``pod_security`` is not one)."""
        given = (getattr(self, f.name) for f in fields(self) if f.name != "pod_security")
        return all(value in (None, [], (), {}, "") for value in given)


def _set(value: Any) -> bool:
    return value not in (None, "", [], {})


def _named(items: Any) -> dict[str, Any]:
    return {str(i["name"]): i for i in items or [] if isinstance(i, dict) and i.get("name")}


def overrides(base: JsonDict, layer: JsonDict) -> list[str]:
    """What laying ``layer`` over ``base`` (API-form Pods) replaces, as reconcile_pods merges:
    labels and annotations key by key, lists of volumes/env/mounts end to end (the same name
    twice is reported), containers one by one, any other field as a whole."""
    out: list[str] = []
    for part in ("labels", "annotations"):
        was, now = (base.get("metadata") or {}).get(part) or {}, (layer.get("metadata") or {}).get(part) or {}
        out += [
            f"metadata.{part}[{k!r}]: {was[k]!r} -> {now[k]!r}" for k in now if k in was and was[k] != now[k]
        ]
    bspec, lspec = base.get("spec") or {}, layer.get("spec") or {}
    for key, value in lspec.items():
        old: Any = bspec.get(key)
        if not _set(value) or not _set(old):
            continue
        if key == "containers":
            for b, c in zip(old, value, strict=False):  # by position, as reconcile_containers
                out += _container_overrides(f"spec.containers[{c.get('name')!r}]", b, c)
        elif key in _EXTENDED_POD_LISTS:
            twice = sorted(set(_named(old)) & set(_named(value)))
            if key == "initContainers":
                for name in twice:
                    out += _container_overrides(
                        f"spec.initContainers[{name!r}]", _named(old)[name], _named(value)[name]
                    )
            else:
                out += [f"spec.{key}[{n!r}] given twice" for n in twice]
        elif old != value:
            out.append(f"spec.{key}: {old!r} -> {value!r}")
    return out


def _container_overrides(where: str, old: JsonDict, new: JsonDict) -> list[str]:
    out: list[str] = []
    for key, value in new.items():
        prev: Any = old.get(key)
        if key == "name" or not _set(value) or not _set(prev):
            continue
        if key in _EXTENDED_CONTAINER_LISTS:
            by = "mountPath" if key == "volumeMounts" else "name"
            seen = {i.get(by) for i in prev if isinstance(i, dict)}
            out += [
                f"{where}.{key}[{i.get(by)!r}] given twice"
                for i in value
                if isinstance(i, dict) and i.get(by) in seen and i.get(by)
            ]
        elif prev != value:
            out.append(f"{where}.{key}: {prev!r} -> {value!r}")
    return out

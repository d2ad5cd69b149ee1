"""Pod settings laid over a Job's Pod template with cncf.kubernetes' own merge.

``PodGenerator.reconcile_pods`` (and ``KubernetesJobOperator.reconcile_jobs`` for the Job
templates) merge here exactly as under the peer's operators; every value a later layer replaces is
returned as a line for the task log (``core/podsettings.overrides``). Kept out of ``core/``: these
import Airflow. ``core/build.build_job`` receives :func:`apply_pod_layers` from the operator.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_batchjob.core.build import EnvInput, env_list
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.manifest import JsonDict, load_template, parse_manifest_text, to_api
from airflow_batchjob.core.podsecurity import check_profile
from airflow_batchjob.core.podsettings import PodSettings, overrides


def _model(value: Any, cls: type, where: str) -> Any:
    """``value`` as a ``cls`` model: models pass, legacy cncf objects convert, API dicts are read
    with their unknown keys refused (the client would drop them without a word)."""
    convert = getattr(value, "to_k8s_client_obj", None)
    if callable(convert):
        value = convert()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise InvalidJobSpecError(
            f"{where} must be a {cls.__name__} or an API-form dict, not {type(value).__name__}"
        )
    from kubernetes.client import ApiClient, Configuration

    try:
        model = ApiClient(configuration=Configuration())._ApiClient__deserialize_model(dict(value), cls)
    except (ValueError, TypeError) as e:
        raise InvalidJobSpecError(f"{where} is not a valid {cls.__name__}: {e}") from e
    unknown = _dropped_keys(dict(value), to_api(model), where)
    if unknown:
        raise InvalidJobSpecError(
            f"{', '.join(unknown)}: not a field of {cls.__name__} (write fields as in a manifest, "
            "camelCase: e.g. persistentVolumeClaim, claimName, mountPath)"
        )
    return model


def _dropped_keys(given: Any, kept: Any, where: str) -> list[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        out: list[str] = []
        for key, value in given.items():
            if key not in kept:
                if value is not None:
                    out.append(f"{where}.{key}")
            else:
                out += _dropped_keys(value, kept[key], f"{where}.{key}")
        return out
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            k
            for i, (g, c) in enumerate(zip(given, kept, strict=True))
            for k in _dropped_keys(g, c, f"{where}[{i}]")
        ]
    return []


def _models(values: Sequence[Any] | None, cls: type, where: str) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise InvalidJobSpecError(f"{where} must be a list, not {type(values).__name__}")
    return [_model(v, cls, f"{where}[{i}]") for i, v in enumerate(values)]


def check_settings(settings: PodSettings) -> None:
    """Convert every value once, so a wrong type or field fails when the DAG is parsed."""
    params_pod(settings, "main")
    check_profile(settings.pod_security)
    if settings.secrets:
        _secrets(settings.secrets)


def _secrets(secrets: Sequence[Any]) -> list[Any]:
    from airflow.providers.cncf.kubernetes.secret import Secret

    for i, secret in enumerate(secrets):
        if not isinstance(secret, Secret):
            raise InvalidJobSpecError(
                f"secrets[{i}] must be an airflow.providers.cncf.kubernetes.secret.Secret, "
                f"not {type(secret).__name__}"
            )
    return list(secrets)


def params_pod(settings: PodSettings, container: str) -> Any:
    """The parameters as a ``V1Pod`` layer whose one container is named ``container``."""
    from kubernetes.client import models as k8s

    s = settings
    env = _models(s.pod_runtime_info_envs, k8s.V1EnvVar, "pod_runtime_info_envs")
    env_from = _models(s.env_from, k8s.V1EnvFromSource, "env_from") or []
    for i, name in enumerate(s.configmaps or ()):
        if not isinstance(name, str):
            raise InvalidJobSpecError(f"configmaps[{i}] must be a ConfigMap name, not {type(name).__name__}")
        env_from.append(k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=name)))
    pull_secrets = s.image_pull_secrets
    if isinstance(pull_secrets, str):  # cncf.kubernetes' "a,b" form
        pull_secrets = [{"name": n.strip()} for n in pull_secrets.split(",") if n.strip()]
    if s.node_selector is not None and not isinstance(s.node_selector, Mapping):
        raise InvalidJobSpecError(f"node_selector must be a mapping, not {type(s.node_selector).__name__}")
    main = k8s.V1Container(
        name=container,
        volume_mounts=_models(s.volume_mounts, k8s.V1VolumeMount, "volume_mounts"),
        env=env,
        env_from=env_from or None,
        ports=_models(s.ports, k8s.V1ContainerPort, "ports"),
        image_pull_policy=s.image_pull_policy,
        security_context=(
            None
            if s.container_security_context is None
            else _model(s.container_security_context, k8s.V1SecurityContext, "container_security_context")
        ),
        termination_message_policy=s.termination_message_policy,
    )
    spec = k8s.V1PodSpec(
        containers=[main],
        volumes=_models(s.volumes, k8s.V1Volume, "volumes"),
        init_containers=_models(s.init_containers, k8s.V1Container, "init_containers"),
        node_selector=dict(s.node_selector) if s.node_selector else None,
        tolerations=_models(s.tolerations, k8s.V1Toleration, "tolerations"),
        affinity=None if s.affinity is None else _model(s.affinity, k8s.V1Affinity, "affinity"),
        service_account_name=s.service_account_name,
        automount_service_account_token=s.automount_service_account_token,
        image_pull_secrets=_models(pull_secrets, k8s.V1LocalObjectReference, "image_pull_secrets"),
        security_context=(
            None
            if s.security_context is None
            else _model(s.security_context, k8s.V1PodSecurityContext, "security_context")
        ),
        priority_class_name=s.priority_class_name,
        termination_grace_period_seconds=s.termination_grace_period,
        runtime_class_name=s.runtime_class_name,
        host_aliases=_models(s.host_aliases, k8s.V1HostAlias, "host_aliases"),
        host_network=s.hostnetwork,
        dns_policy=s.dnspolicy,
        dns_config=None if s.dns_config is None else _model(s.dns_config, k8s.V1PodDNSConfig, "dns_config"),
        hostname=s.hostname,
        subdomain=s.subdomain,
        scheduler_name=s.schedulername,
    )
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(), spec=spec)


def template_pod(settings: PodSettings) -> Any:
    """The Pod template layer (``pod_template_file``/``pod_template_dict``, then ``full_pod_spec``
    over it, as cncf.kubernetes merges them), or None."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import models as k8s

    base = None
    if settings.pod_template_file and settings.pod_template_dict:
        raise InvalidJobSpecError("pod_template_file and pod_template_dict: pass one of them")
    source = settings.pod_template_file or settings.pod_template_dict
    if source is not None:
        where = "pod_template_file" if settings.pod_template_file else "pod_template_dict"
        data = parse_manifest_text(source, where) if isinstance(source, str) else copy.deepcopy(dict(source))
        if not isinstance(data, dict):
            raise InvalidJobSpecError(f"{where} must be a Pod manifest (a mapping)")
        if data.get("kind") not in (None, "Pod"):
            raise InvalidJobSpecError(f"{where} has kind {data.get('kind')!r}; it must be a Pod manifest")
        data.setdefault("spec", {}).setdefault("containers", [])
        base = _model(data, k8s.V1Pod, where)
    full = (
        None if settings.full_pod_spec is None else _model(settings.full_pod_spec, k8s.V1Pod, "full_pod_spec")
    )
    if base is not None and full is not None:
        return PodGenerator.reconcile_pods(base, full)
    return full if full is not None else base


def job_layers(job_template: Any, full_job_spec: Any) -> JsonDict:
    """The Job template: ``job_template`` (or ``job_template_file``), then ``full_job_spec`` over it
    as cncf.kubernetes' ``KubernetesJobOperator.reconcile_jobs`` merges them."""
    base = load_template(job_template)
    if full_job_spec is None:
        return base
    full = load_template(full_job_spec)
    if not base:
        return full
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
    from kubernetes.client import models as k8s

    models = []
    for where, job in (("job_template", base), ("full_job_spec", full)):
        job.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {}).setdefault(
            "containers", []
        )
        models.append(_model(job, k8s.V1Job, where))
    return dict(to_api(KubernetesJobOperator.reconcile_jobs(models[0], models[1])))


def apply_pod_layers(
    job: JsonDict, settings: PodSettings, container: str, env: EnvInput | None = None
) -> list[str]:
    """Lay the Pod template, the parameters and the secrets over ``job``'s Pod template, in place.

    ``container`` is the main container's name (the operator's); the parameters go to the
    template's container of that name, else to its first. A Pod template's main container (the
    one of that name, else its first) merges into it whatever its name, as cncf.kubernetes
    merges them. ``env`` (the container's, applied later by ``core/build.py``) takes its place
    before ``pod_runtime_info_envs`` and the secrets' variables, cncf.kubernetes' order, so a
    ``$(VAR)`` reference resolves as it does there. Returns what a later layer replaced, one line
    each, for the task log.
    """
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import models as k8s

    template = job.setdefault("spec", {}).setdefault("template", {}) or {}
    spec = dict(template.get("spec") or {})
    spec.setdefault("containers", [])  # the client's model refuses a PodSpec without the list
    base = _model({"metadata": template.get("metadata") or {}, "spec": spec}, k8s.V1Pod, "spec.template")
    replaced: list[str] = []

    def lay(layer: Any, name: str, under: str) -> Any:
        # reconcile_containers pairs containers by position: line the layer's up by name first
        # (name-only placeholders change nothing), so "main" never merges into a sidecar; the
        # layer's main container takes the name of ours (a Pod template's "base" goes into a
        # Job template's first container, not beside it).
        names = [c.name for c in base.spec.containers or []]
        theirs = [c.name for c in layer.spec.containers or []]
        main = container if container in names else (names[0] if names else None)
        their_main = container if container in theirs else (theirs[0] if theirs else None)
        if main is not None and their_main is not None and main not in theirs:
            layer.spec.containers[theirs.index(their_main)].name = main
        given = {c.name: c for c in layer.spec.containers or []}
        aligned = [given.pop(n, None) or k8s.V1Container(name=n) for n in names]
        layer.spec.containers = [*aligned, *given.values()]
        replaced.extend(f"{line} ({name} over {under})" for line in overrides(to_api(base), to_api(layer)))
        return PodGenerator.reconcile_pods(base, layer)

    pod_template = template_pod(settings)
    if pod_template is not None:
        base = lay(copy.deepcopy(pod_template), "the Pod template", "the Job template")
    names = [c.name for c in base.spec.containers or []]
    target = container if container in names else (names[0] if names else container)
    params = params_pod(settings, target)
    if env:
        have = {e.name for c in base.spec.containers or [] if c.name == target for e in c.env or []}
        first = [e for e in _models(env_list(env), k8s.V1EnvVar, "env") or [] if e.name not in have]
        params.spec.containers[0].env = [*first, *(params.spec.containers[0].env or [])] or None
    for secret in _secrets(settings.secrets or ()):  # attach_to_pod uses the first container: ours
        params = secret.attach_to_pod(params)
    base = lay(params, "the parameters", "the templates")
    # reconcile_pods keeps the lower layer's value where the upper one is False or 0: a parameter
    # given so (automount_service_account_token=False, termination_grace_period=0) must still win.
    for attr in params.spec.attribute_map:
        value = getattr(params.spec, attr)
        if isinstance(value, int) and not value:
            setattr(base.spec, attr, value)
    merged = to_api(base)
    meta = merged.get("metadata") or {}
    for key in ("name", "namespace", "generateName"):
        meta.pop(key, None)
    job["spec"]["template"] = {"metadata": meta, "spec": merged.get("spec") or {}}
    return replaced

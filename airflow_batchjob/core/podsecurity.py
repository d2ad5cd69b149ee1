"""``pod_security="restricted"``: make the Job's Pods pass Pod Security Admission's restricted profile.

A namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` refuses every Pod that
does not run as non-root with the runtime's seccomp profile, no privilege escalation and every
capability dropped. The Job itself is admitted (enforcement applies to Pods only), so without
these settings its controller fails to create a single Pod and the Job never starts.

``apply_pod_security`` first refuses what the user set explicitly against the profile (privileged,
root, host namespaces, host paths, added capabilities, ...; each named with its field and the
fix), then fills in what the profile requires where nothing is set, on every container and init
container of the Pod template (the user's, the template's, the worker's wrapper: it runs in the
main container). Values the user set that agree with the profile are kept.

``runAsUser`` 65532 (the distroless images' ``nonroot`` user) is set when the Pod gives none:
the kubelet enforces ``runAsNonRoot`` by the image's user, and refuses to start an image whose
default user is root (busybox, python, debian) or a name it cannot check ("container has
runAsNonRoot and image will run as root"). A container's own ``runAsUser`` still wins. With it,
``runAsGroup`` and ``fsGroup`` 65532 (``fsGroupChangePolicy: OnRootMismatch``) where unset, so
Secret files with a group mode (the queue's broker TLS files, 0440) stay readable.

The profile as Kubernetes defines it (Pod Security Standards, ``restricted``, latest):
https://kubernetes.io/docs/concepts/security/pod-security-standards/
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from airflow_batchjob.core.errors import InvalidJobSpecError

PodSecurity: TypeAlias = Literal["restricted"]
PROFILES = ("restricted",)
NON_ROOT_ID = 65532
# The volume types the restricted profile allows.
ALLOWED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    | {"projected", "secret"}
)
ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"

JsonDict = dict[str, Any]


def check_profile(value: Any) -> PodSecurity | None:
    """``pod_security`` as given: None or one of ``PROFILES``, else refused naming the choices."""
    if value is None or value in PROFILES:
        return value
    raise InvalidJobSpecError(f"pod_security={value!r}: use 'restricted', or None (the default: nothing set)")


def _dict(parent: JsonDict, key: str) -> JsonDict:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, JsonDict]]:
    """``(field path, container)`` for every container and init container."""
    out = []
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            if isinstance(c, dict):
                out.append((f"spec.{kind}[{c.get('name') or i!r}]", c))
    return out


def _common(where: str, sc: Mapping[str, Any]) -> list[str]:
    """Refusals that hold for a Pod's and a container's securityContext alike."""
    out = []
    if sc.get("runAsNonRoot") is False:
        out.append(f"{where}.runAsNonRoot is false: drop it (the profile needs true)")
    if sc.get("runAsUser") == 0:
        out.append(f"{where}.runAsUser is 0 (root): give a non-zero uid, or drop it ({NON_ROOT_ID} is used)")
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"{where}.seccompProfile.type is {seccomp!r}: use RuntimeDefault or Localhost, or drop it")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        out.append(f"{where}.seLinuxOptions {selinux!r}: only a container_* type is allowed; drop it")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"{where}.appArmorProfile.type is {apparmor!r}: use RuntimeDefault, or drop it")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append(f"{where}.windowsOptions.hostProcess is true: drop it")
    return out


def _container_problems(where: str, c: Mapping[str, Any]) -> list[str]:
    sc = c.get("securityContext") or {}
    at = f"{where}.securityContext"
    out = _common(at, sc)
    if sc.get("privileged"):
        out.append(f"{at}.privileged is true: drop it (container_security_context or the template)")
    if sc.get("allowPrivilegeEscalation"):
        out.append(f"{at}.allowPrivilegeEscalation is true: drop it (false is set)")
    if sc.get("procMount") not in (None, "Default"):
        out.append(f"{at}.procMount is {sc['procMount']!r}: drop it")
    added = sorted(set((sc.get("capabilities") or {}).get("add") or []) - ALLOWED_CAPABILITIES)
    if added:
        out.append(f"{at}.capabilities.add has {added}: only NET_BIND_SERVICE may be added; drop the others")
    handlers = [(p, c.get(p)) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    handlers += [(f"lifecycle.{p}", (c.get("lifecycle") or {}).get(p)) for p in ("postStart", "preStop")]
    for name, handler in handlers:
        for kind in ("httpGet", "tcpSocket"):
            if isinstance(handler, Mapping) and ((handler.get(kind) or {}).get("host")):
                out.append(f"{where}.{name}.{kind}.host is set: the profile forbids it; drop it")
    for port in c.get("ports") or []:
        if isinstance(port, Mapping) and port.get("hostPort"):
            which = port.get("name") or port.get("containerPort")
            out.append(f"{where}.ports[{which!r}].hostPort is set: the profile forbids host ports; drop it")
    return out


def profile_problems(template: Mapping[str, Any]) -> list[str]:
    """What a Pod template (``metadata`` and ``spec``) sets against the restricted profile."""
    spec = template.get("spec") or {}
    out = []
    if (spec.get("os") or {}).get("name") == "windows":
        out.append("spec.os.name is windows: pod_security sets Linux settings (seccomp, capabilities)")
    for key, param in (("hostNetwork", "hostnetwork and "), ("hostPID", ""), ("hostIPC", "")):
        if spec.get(key):
            fix = f"drop {param}the template's {key}"
            out.append(f"spec.{key} is true: the profile forbids the node's namespaces; {fix}")
    sc = spec.get("securityContext") or {}
    out += _common("spec.securityContext", sc)
    unsafe = [s.get("name") for s in sc.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if unsafe:
        out.append(f"spec.securityContext.sysctls has {unsafe}: only the safe sysctls are allowed; drop them")
    for v in spec.get("volumes") or []:
        kind = next((k for k in v if k != "name"), None) if isinstance(v, Mapping) else None
        if kind is not None and kind not in ALLOWED_VOLUMES:
            out.append(
                f"spec.volumes[{v.get('name')!r}] is a {kind} volume: the profile allows only "
                f"{', '.join(sorted(ALLOWED_VOLUMES))}; use one of them (e.g. a persistentVolumeClaim)"
            )
    for key, value in ((template.get("metadata") or {}).get("annotations") or {}).items():
        allowed = value == "runtime/default" or str(value).startswith("localhost/")
        if key.startswith(APPARMOR_ANNOTATION) and not allowed:
            out.append(f"metadata.annotations[{key!r}] is {value!r}: use runtime/default, or drop it")
    for where, c in _containers(spec):
        out += _container_problems(where, c)
    return out


def apply_pod_security(template: JsonDict, profile: PodSecurity | None) -> None:
    """Lay ``profile`` over a Job's Pod template (API form), in place; refuse what contradicts it.

    Pod: ``runAsNonRoot`` true, ``seccompProfile`` RuntimeDefault, ``runAsUser`` (with
    ``runAsGroup``, ``fsGroup``) 65532 where unset. Every container and init container:
    ``allowPrivilegeEscalation`` false where unset, ``ALL`` added to ``capabilities.drop``.
    """
    if check_profile(profile) is None:
        return
    problems = profile_problems(template)
    if problems:
        raise InvalidJobSpecError(
            f"pod_security={profile!r} (Pod Security Standards) refuses what the Pod sets: "
            + "; ".join(problems)
            + ". Change those fields, or drop pod_security if the namespace does not enforce the profile"
        )
    spec = _dict(template, "spec")
    sc = _dict(spec, "securityContext")
    _default(sc, "runAsNonRoot", True)
    _default(sc, "seccompProfile", {"type": "RuntimeDefault"})
    if sc.get("runAsUser") is None:
        sc["runAsUser"] = NON_ROOT_ID
        _default(sc, "runAsGroup", NON_ROOT_ID)
        if sc.get("fsGroup") is None:
            sc["fsGroup"] = NON_ROOT_ID
            _default(sc, "fsGroupChangePolicy", "OnRootMismatch")
    for _, c in _containers(spec):
        csc = _dict(c, "securityContext")
        _default(csc, "allowPrivilegeEscalation", False)
        caps = _dict(csc, "capabilities")
        drop = list(caps.get("drop") or [])
        if "ALL" not in drop:
            caps["drop"] = [*drop, "ALL"]


def _default(d: JsonDict, key: str, value: Any) -> None:
    """``d[key] = value`` where it is unset or null (``runAsNonRoot:`` with nothing after it)."""
    if d.get(key) is None:
        d[key] = value

"""The corpus of tests/unit/test_peer_differential.py: cncf.kubernetes ``KubernetesJobOperator``
parameter sets, each given unchanged to the peer and to ``BatchJobOperator``.

Every parameter group the peer has is covered (``GROUPS``); values use the peer's own types
(``V1...`` objects, or API-form dicts where the peer takes them). A ``File`` is written to a
temporary file and replaced by its path when the case runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

GROUPS = (
    "volumes and mounts",
    "env and secrets",
    "scheduling",
    "identity",
    "security",
    "resources",
    "templates and full specs",
    "job spec fields",
)


@dataclass(frozen=True)
class File:
    """A template file's text; the case gets the path of a file holding it."""

    text: str


@dataclass(frozen=True)
class Case:
    """One parameter set. ``since``: the first peer release that builds it as we do (older ones
    had a bug there, ``why`` says which); the test skips it on older peers."""

    id: str
    group: str
    kwargs: dict[str, Any]
    since: tuple[int, int, int] | None = None
    why: str = ""
    base: dict[str, Any] = field(default_factory=lambda: {"image": "busybox:1.36", "cmds": ["true"]})


def _case(id: str, group: str, since: tuple[int, int, int] | None = None, why: str = "", **kw: Any) -> Case:
    return Case(id, group, kw, since, why)


def _bare(id: str, group: str, **kw: Any) -> Case:
    """A case whose image and command come from its templates."""
    return Case(id, group, kw, base={})


_FIELD = k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="spec.nodeName"))
_NODE_AFFINITY = k8s.V1Affinity(
    node_affinity=k8s.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
            node_selector_terms=[
                k8s.V1NodeSelectorTerm(
                    match_expressions=[
                        k8s.V1NodeSelectorRequirement(key="disk", operator="In", values=["ssd", "nvme"])
                    ]
                )
            ]
        )
    )
)
_ANTI_AFFINITY = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app": "etl"}},
                },
            }
        ]
    }
}

# Template files as a DAG would give them (``File`` keeps the text, so a case may vary it).
_FIXTURES = Path(__file__).parent / "fixtures" / "peer"
JOB_TEMPLATE = (_FIXTURES / "job-template.yaml").read_text(encoding="utf-8")
POD_TEMPLATE = (_FIXTURES / "pod-template.yaml").read_text(encoding="utf-8")


_POD_DICT = {
    "metadata": {"annotations": {"from": "pod-dict"}},
    "spec": {
        "priorityClassName": "low",
        "containers": [{"name": "base", "image": "alpine:3.20", "workingDir": "/work"}],
    },
}
_FULL_POD = k8s.V1Pod(
    metadata=k8s.V1ObjectMeta(labels={"from": "full-pod"}),
    spec=k8s.V1PodSpec(
        tolerations=[k8s.V1Toleration(key="spot", operator="Exists", effect="NoSchedule")],
        containers=[k8s.V1Container(name="base", image="alpine:3.21", args=["--full"])],
    ),
)
_FULL_JOB = k8s.V1Job(
    metadata=k8s.V1ObjectMeta(labels={"from": "full-job"}),
    spec=k8s.V1JobSpec(
        backoff_limit=4,
        active_deadline_seconds=600,
        template=k8s.V1PodTemplateSpec(
            metadata=k8s.V1ObjectMeta(annotations={"from": "full-job"}),
            spec=k8s.V1PodSpec(
                containers=[k8s.V1Container(name="job", image="alpine:3.21", command=["sleep", "1"])]
            ),
        ),
    ),
)

CASES: list[Case] = [
    # -- volumes and mounts ------------------------------------------------------------------------
    _case(
        "configmap-volume",
        "volumes and mounts",
        volumes=[k8s.V1Volume(name="cfg", config_map=k8s.V1ConfigMapVolumeSource(name="app-config"))],
        volume_mounts=[k8s.V1VolumeMount(name="cfg", mount_path="/etc/app", read_only=True)],
    ),
    _case(
        "pvc-subpath",
        "volumes and mounts",
        volumes=[
            k8s.V1Volume(
                name="data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="data-pvc"),
            )
        ],
        volume_mounts=[k8s.V1VolumeMount(name="data", mount_path="/data", sub_path="in")],
    ),
    _case(
        "emptydir-memory",
        "volumes and mounts",
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit="1Gi"))
        ],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
    ),
    _case(
        "secret-volume-items",
        "volumes and mounts",
        volumes=[
            k8s.V1Volume(
                name="keys",
                secret=k8s.V1SecretVolumeSource(
                    secret_name="keys", default_mode=0o400, items=[k8s.V1KeyToPath(key="id", path="id.pem")]
                ),
            )
        ],
        volume_mounts=[k8s.V1VolumeMount(name="keys", mount_path="/keys", read_only=True)],
    ),
    _case(
        "two-volumes-two-mounts",
        "volumes and mounts",
        volumes=[
            k8s.V1Volume(name="a", empty_dir=k8s.V1EmptyDirVolumeSource()),
            k8s.V1Volume(name="b", host_path=k8s.V1HostPathVolumeSource(path="/var/b", type="Directory")),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="a", mount_path="/a"),
            k8s.V1VolumeMount(name="b", mount_path="/b", mount_propagation="HostToContainer"),
        ],
    ),
    # -- env and secrets ---------------------------------------------------------------------------
    _case("env-dict", "env and secrets", env_vars={"A": "1", "B": "two", "C": ""}),
    _case(
        "env-list-value-from",
        "env and secrets",
        env_vars=[
            k8s.V1EnvVar(name="PLAIN", value="x"),
            k8s.V1EnvVar(
                name="TOKEN",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name="api", key="token")
                ),
            ),
            k8s.V1EnvVar(name="URL", value="http://$(PLAIN)"),
        ],
    ),
    _case(
        "env-from",
        "env and secrets",
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="settings")),
            k8s.V1EnvFromSource(prefix="S_", secret_ref=k8s.V1SecretEnvSource(name="creds", optional=True)),
        ],
    ),
    _case("configmaps", "env and secrets", configmaps=["cm-a", "cm-b"]),
    _case("secret-env", "env and secrets", secrets=[Secret("env", "PASSWORD", "creds", "pw")]),
    _case("secret-volume", "env and secrets", secrets=[Secret("volume", "/etc/tls", "tls-cert")]),
    _case("secret-all-keys", "env and secrets", secrets=[Secret("env", None, "all-of-it")]),
    _case(
        "pod-runtime-info",
        "env and secrets",
        pod_runtime_info_envs=[
            k8s.V1EnvVar(name="NODE", value_from=_FIELD),
            k8s.V1EnvVar(
                name="POD_IP",
                value_from=k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path="status.podIP")),
            ),
        ],
    ),
    _case(
        "env-every-source",
        "env and secrets",
        env_vars={"FIRST": "1", "ON": "$(NODE)"},
        pod_runtime_info_envs=[k8s.V1EnvVar(name="NODE", value_from=_FIELD)],
        secrets=[Secret("env", "PW", "creds", "pw"), Secret("env", None, "more")],
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="settings"))],
        configmaps=["cm-a"],
    ),
    # -- scheduling --------------------------------------------------------------------------------
    _case("node-selector", "scheduling", node_selector={"pool": "batch", "zone": "a"}),
    _case(
        "tolerations",
        "scheduling",
        tolerations=[
            k8s.V1Toleration(key="spot", operator="Equal", value="true", effect="NoSchedule"),
            k8s.V1Toleration(key="gone", operator="Exists", effect="NoExecute", toleration_seconds=60),
        ],
    ),
    _case(
        "tolerations-dicts",
        "scheduling",
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    ),
    _case("node-affinity", "scheduling", affinity=_NODE_AFFINITY),
    _case("pod-anti-affinity-dict", "scheduling", affinity=_ANTI_AFFINITY),
    _case("priority-and-scheduler", "scheduling", priority_class_name="high", schedulername="batch-sched"),
    _case("runtime-class", "scheduling", runtime_class_name="gvisor"),
    _case("hostname-subdomain", "scheduling", hostname="worker", subdomain="jobs"),
    _case(
        "host-aliases",
        "scheduling",
        host_aliases=[k8s.V1HostAlias(ip="10.0.0.1", hostnames=["db", "db.local"])],
    ),
    _case(
        "dns",
        "scheduling",
        dnspolicy="None",
        dns_config=k8s.V1PodDNSConfig(
            nameservers=["1.1.1.1"],
            searches=["svc.local"],
            options=[k8s.V1PodDNSConfigOption(name="ndots", value="2")],
        ),
    ),
    _case("host-network", "scheduling", hostnetwork=True, dnspolicy="ClusterFirstWithHostNet"),
    # -- identity ----------------------------------------------------------------------------------
    _case("service-account", "identity", service_account_name="etl-runner"),
    _case("automount-token-off", "identity", automount_service_account_token=False),
    _case(
        "image-pull-secrets",
        "identity",
        image_pull_secrets=[k8s.V1LocalObjectReference(name="registry-a")],
    ),
    _case("image-pull-secrets-string", "identity", image_pull_secrets="registry-a,registry-b"),
    _case(
        "labels-annotations", "identity", labels={"team": "data", "cost": "c1"}, annotations={"owner": "me"}
    ),
    _case("exact-name", "identity", name="nightly-etl", random_name_suffix=False),
    _case("name-prefix", "identity", name="nightly-etl"),
    _case("container-name", "identity", base_container_name="worker"),
    # -- security ----------------------------------------------------------------------------------
    _case(
        "pod-security-context",
        "security",
        security_context=k8s.V1PodSecurityContext(
            run_as_user=1000,
            run_as_group=1000,
            fs_group=2000,
            run_as_non_root=True,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
    ),
    _case(
        "container-security-context",
        "security",
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
    ),
    _case(
        "security-dicts",
        "security",
        security_context={"runAsUser": 1001, "supplementalGroups": [5, 6]},
        container_security_context={"privileged": False, "runAsNonRoot": True},
    ),
    # -- resources ---------------------------------------------------------------------------------
    _case(
        "requests-limits",
        "resources",
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "256Mi"}, limits={"memory": "1Gi", "nvidia.com/gpu": "1"}
        ),
    ),
    _case(
        "resources-dict", "resources", container_resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}
    ),
    _case(
        "ports-pull-policy",
        "resources",
        ports=[k8s.V1ContainerPort(container_port=8080, name="http", protocol="TCP")],
        image_pull_policy="Always",
    ),
    _case("termination-message-policy", "resources", termination_message_policy="FallbackToLogsOnError"),
    _case(
        "termination-grace-period",
        "resources",
        since=(10, 9, 0),
        why="before 10.9.0 the peer left termination_grace_period out of the Pod spec (apache/airflow#56402)",
        termination_grace_period=45,
    ),
    _case(
        "command-args",
        "resources",
        cmds=["sh", "-c"],
        arguments=["echo $0 $1", "a", "b"],
    ),
    # -- templates and full specs ------------------------------------------------------------------
    _bare("job-template-file", "templates and full specs", job_template_file=File(JOB_TEMPLATE)),
    _case(
        "job-template-file-and-params",
        "templates and full specs",
        job_template_file=File(JOB_TEMPLATE),
        env_vars={"EXTRA": "2"},
        node_selector={"pool": "fast"},
        volumes=[k8s.V1Volume(name="more", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="more", mount_path="/more")],
        labels={"run": "x"},
    ),
    _bare("full-job-spec", "templates and full specs", full_job_spec=_FULL_JOB),
    _bare(
        "job-template-file-and-full-job-spec",
        "templates and full specs",
        job_template_file=File(JOB_TEMPLATE),
        full_job_spec=_FULL_JOB,
    ),
    _bare("pod-template-file", "templates and full specs", pod_template_file=File(POD_TEMPLATE)),
    _case(
        "pod-template-file-and-params",
        "templates and full specs",
        pod_template_file=File(POD_TEMPLATE),
        service_account_name="other",
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "512Mi"}),
    ),
    _bare("pod-template-dict", "templates and full specs", pod_template_dict=_POD_DICT),
    _bare("full-pod-spec", "templates and full specs", full_pod_spec=_FULL_POD),
    _bare(
        "pod-template-dict-and-full-pod-spec",
        "templates and full specs",
        pod_template_dict=_POD_DICT,
        full_pod_spec=_FULL_POD,
    ),
    _case(
        "init-containers",
        "templates and full specs",
        init_containers=[
            k8s.V1Container(name="fetch", image="curlimages/curl:8.8.0", args=["-sO", "http://x/y"]),
            k8s.V1Container(name="unpack", image="busybox:1.36", command=["tar", "xf", "y"]),
        ],
    ),
    _case(
        "every-layer",
        "templates and full specs",
        job_template_file=File(JOB_TEMPLATE),
        pod_template_dict=_POD_DICT,
        image="busybox:1.37",
        tolerations=[k8s.V1Toleration(key="spot", operator="Exists")],
        backoff_limit=0,
    ),
    _case(
        "env-over-template",
        "templates and full specs",
        job_template_file=File(JOB_TEMPLATE),
        env_vars={"FROM_TEMPLATE": "2", "NEW": "3"},
    ),
    _bare(
        "false-over-template",
        "templates and full specs",
        job_template_file=File(
            JOB_TEMPLATE.replace("  backoffLimit: 1\n", "  backoffLimit: 1\n  suspend: true\n")
        ),
        suspend=False,
        backoff_limit=0,
    ),
    _bare(
        "automount-off-over-template",
        "templates and full specs",
        job_template_file=File(
            JOB_TEMPLATE.replace(
                "      nodeSelector", "      automountServiceAccountToken: true\n      nodeSelector"
            )
        ),
        automount_service_account_token=False,
    ),
    _bare(
        "restart-on-failure",
        "templates and full specs",
        job_template_file=File(
            JOB_TEMPLATE.replace("      nodeSelector", "      restartPolicy: OnFailure\n      nodeSelector")
        ),
    ),
    # -- job spec fields ---------------------------------------------------------------------------
    _case("backoff-and-deadline", "job spec fields", backoff_limit=3, active_deadline_seconds=120),
    _case("completions-parallelism", "job spec fields", completions=5, parallelism=2),
    _case("indexed", "job spec fields", completion_mode="Indexed", completions=4, parallelism=4),
    _case("suspend", "job spec fields", suspend=True),
    _case("ttl", "job spec fields", ttl_seconds_after_finished=300),
    _case(
        "ttl-without-waiting", "job spec fields", ttl_seconds_after_finished=60, wait_until_job_complete=False
    ),
    _case("no-wait-no-ttl", "job spec fields", wait_until_job_complete=False),
    _case("skip-on-exit-code", "job spec fields", skip_on_exit_code=[3, 100]),
    _case(
        "xcom-sidecar",
        "job spec fields",
        do_xcom_push=True,
        volume_mounts=[k8s.V1VolumeMount(name="x", mount_path="/x")],
        volumes=[k8s.V1Volume(name="x", empty_dir=k8s.V1EmptyDirVolumeSource())],
    ),
    _bare(
        "manual-selector-in-template",
        "job spec fields",
        job_template_file=File(
            JOB_TEMPLATE.replace(
                "  completions: 2\n",
                "  completions: 2\n  manualSelector: true\n  selector: {matchLabels: {tier: batch}}\n",
            )
        ),
    ),
]

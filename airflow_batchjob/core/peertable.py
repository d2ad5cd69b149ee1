"""The table: what each constructor parameter of cncf.kubernetes' ``KubernetesJobOperator``
becomes here (``PEER_PARAMS``), and the converters of the values it maps. Applied by
``core/peerparams.py``; written out as ``docs/migration.rst`` by ``scripts/gen_migration.py``,
with ``JOB_DIFFERENCES``: how the Job built here differs from the peer's, and why.

Pure: no Airflow, no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_batchjob.core.errors import InvalidJobSpecError

Answer = Literal["same", "alias", "mapped", "watched", "fixed"]


class PeerParamError(InvalidJobSpecError):
    """A cncf.kubernetes parameter (or value of one) that has no counterpart here."""


@dataclass(frozen=True)
class PeerParam:
    """The answer for one peer parameter.

    ``same``: the parameter exists here with the peer's meaning. ``alias``: another name for
    ``target``. ``mapped``: its value is translated onto ``target`` (``convert``). ``watched``: a
    polling knob with no effect because this provider watches; accepted and noted in the task log.
    ``fixed``: this provider always behaves one way; values in ``accepted`` (that way) pass, any
    other is refused with ``doc`` as the reason.
    """

    answer: Answer
    doc: str
    target: str | None = None
    convert: Callable[[Any], Any] | None = None
    accepted: tuple[Any, ...] = field(default=())


def _value(v: Any) -> Any:
    """An enum member's value (cncf's ``OnFinishAction``), else ``v``."""
    return getattr(v, "value", v)


_ON_FINISH = {"delete_pod": "always", "delete_succeeded_pod": "on_success", "keep_pod": "never"}
_ON_KILL = {"delete_pod": True, "keep_pod": False}


def _on_finish(v: Any) -> str:
    if _value(v) not in _ON_FINISH:
        raise PeerParamError(
            f"on_finish_action={v!r}: use 'delete_pod', 'delete_succeeded_pod' or 'keep_pod' "
            "(or delete_on_finish='always' / 'on_success' / 'never')"
        )
    return _ON_FINISH[_value(v)]


def _is_delete(v: Any) -> str:
    if not isinstance(v, bool):
        raise PeerParamError(f"is_delete_operator_pod={v!r}: use True or False (or delete_on_finish)")
    return "always" if v else "never"


def _on_kill(v: Any) -> bool:
    if _value(v) not in _ON_KILL:
        raise PeerParamError(
            f"on_kill_action={v!r}: use 'delete_pod' or 'keep_pod' (or delete_on_kill=True / False)"
        )
    return _ON_KILL[_value(v)]


def _seconds(name: str) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise PeerParamError(f"{name}={v!r}: give a positive number of seconds (or pending_timeout)")
        return v

    return convert


def _bool(name: str, target: str) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        if not isinstance(v, bool):
            raise PeerParamError(f"{name}={v!r}: use True or False (or {target})")
        return v

    return convert


def _exit_codes(v: Any) -> tuple[int, ...] | None:
    """``skip_on_exit_code`` as the peer takes it: an int, a list of ints, or None."""
    if v is None:
        return None
    codes = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(codes, (str, bytes, Mapping)) or not isinstance(codes, Sequence | set | frozenset):
        raise PeerParamError(f"skip_on_exit_code={v!r}: give an exit code or a list of exit codes")
    out = []
    for c in codes:
        if not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= 255:
            raise PeerParamError(
                f"skip_on_exit_code={v!r}: {c!r} is not an exit code from 1 to 255 (0 is success)"
            )
        out.append(c)
    return tuple(sorted(set(out))) or None


def exit_codes(value: Any) -> tuple[int, ...] | None:
    """``skip_on_exit_code`` normalised (sorted, unique), or PeerParamError saying what is wrong."""
    return _exit_codes(value)


_WATCH = "accepted, no effect: this provider watches the Job and its Pods (no polling) and streams their logs"
_SAME = "same"

# Every constructor parameter of cncf.kubernetes 10.25.0's KubernetesJobOperator (with
# KubernetesPodOperator's), BaseOperator's aside; tests/unit/test_peerparams.py checks the list
# against the installed provider's signatures.
PEER_PARAMS: dict[str, PeerParam] = {
    # -- the Job --------------------------------------------------------------------------------
    "job_template_file": PeerParam(
        "alias", "``job_template`` (which also takes a dict, YAML text or a V1Job)", "job_template"
    ),
    "full_job_spec": PeerParam("same", "same: laid over ``job_template`` as cncf.kubernetes does"),
    "backoff_limit": PeerParam("same", _SAME),
    "completion_mode": PeerParam("same", _SAME),
    "completions": PeerParam("same", _SAME),
    "parallelism": PeerParam("same", "same (default: the template's, else Kubernetes' 1)"),
    "suspend": PeerParam("same", _SAME),
    "ttl_seconds_after_finished": PeerParam(
        "same", "same, held back until the task has read the outcome (README: TTL hold)"
    ),
    "active_deadline_seconds": PeerParam("same", _SAME),
    "manual_selector": PeerParam(
        "fixed",
        "no parameter: adoption and Pod lookups rely on the selector the Job controller generates, and a "
        "manual one lets Jobs take each other's Pods; a ``job_template`` with ``spec.manualSelector: true`` "
        "keeps its ``spec.selector``",
        accepted=(None, False),
    ),
    "selector": PeerParam(
        "fixed",
        "no parameter (see ``manual_selector``): put ``spec.manualSelector`` and ``spec.selector`` in "
        "``job_template``",
        accepted=(None,),
    ),
    "wait_until_job_complete": PeerParam(
        "same", "same, default **True**; False returns the Job's identity at once, a ``JobSensor`` waits"
    ),
    "job_poll_interval": PeerParam("watched", _WATCH),
    "deferrable": PeerParam(
        "same", "same (default ``[operators] default_deferrable`` where the deployment sets it, else True)"
    ),
    "on_kill_propagation_policy": PeerParam("alias", "``propagation_policy``", "propagation_policy"),
    "discover_pods_retry_number": PeerParam(
        "watched", "accepted, no effect: Pods are watched as the Job controller creates them, none is missed"
    ),
    "unwrap_single": PeerParam(
        "fixed",
        "True only: the return value holds ``result`` (the one Pod's value) and ``results`` (all of them); "
        "read ``results`` instead of unwrap_single=False",
        accepted=(True,),
    ),
    # -- connection, naming ---------------------------------------------------------------------
    "kubernetes_conn_id": PeerParam("same", _SAME),
    "namespace": PeerParam("same", "same (default: the connection's, else ``default``)"),
    "config_file": PeerParam("same", "same, in the worker and in the trigger"),
    "in_cluster": PeerParam("same", _SAME),
    "cluster_context": PeerParam("same", _SAME),
    "name": PeerParam(
        "alias",
        "``job_name``: a prefix to which the deterministic per-task-instance suffix is added",
        "job_name",
    ),
    "random_name_suffix": PeerParam(
        "same", "same (the suffix is derived from dag, task, run and map index, not random)"
    ),
    "labels": PeerParam("same", "same (on the Job and its Pod template)"),
    "annotations": PeerParam("same", "same (on the Job and its Pod template)"),
    # -- the container --------------------------------------------------------------------------
    "image": PeerParam("same", _SAME),
    "cmds": PeerParam("same", _SAME),
    "arguments": PeerParam("same", _SAME),
    "ports": PeerParam("same", _SAME),
    "volume_mounts": PeerParam("same", _SAME),
    "env_vars": PeerParam("alias", "``env`` (a dict or a ``V1EnvVar`` list)", "env"),
    "env_from": PeerParam("same", _SAME),
    "secrets": PeerParam("same", "same (cncf.kubernetes ``Secret`` objects)"),
    "base_container_name": PeerParam("same", "same (default ``main``, else the template's first)"),
    "image_pull_policy": PeerParam("same", "same (checked: ``Always``, ``IfNotPresent``, ``Never``)"),
    "container_resources": PeerParam(
        "same", "same (``V1ResourceRequirements`` or a dict; quantities checked)"
    ),
    "container_security_context": PeerParam("same", _SAME),
    "termination_message_policy": PeerParam("same", _SAME),
    "pod_runtime_info_envs": PeerParam("same", _SAME),
    "configmaps": PeerParam("same", _SAME),
    # -- the Pod --------------------------------------------------------------------------------
    "volumes": PeerParam("same", _SAME),
    "affinity": PeerParam("same", _SAME),
    "runtime_class_name": PeerParam("same", _SAME),
    "node_selector": PeerParam("same", _SAME),
    "image_pull_secrets": PeerParam("same", 'same (a list or ``"a,b"``)'),
    "service_account_name": PeerParam("same", _SAME),
    "automount_service_account_token": PeerParam("same", _SAME),
    "hostnetwork": PeerParam("same", _SAME),
    "host_aliases": PeerParam("same", _SAME),
    "tolerations": PeerParam("same", "same (operator and effect checked)"),
    "security_context": PeerParam("same", _SAME),
    "dnspolicy": PeerParam("same", _SAME),
    "dns_config": PeerParam("same", _SAME),
    "hostname": PeerParam("same", _SAME),
    "subdomain": PeerParam("same", _SAME),
    "schedulername": PeerParam("same", _SAME),
    "full_pod_spec": PeerParam("same", "same (the layers: 'The Job it builds' below)"),
    "init_containers": PeerParam("same", _SAME),
    "pod_template_file": PeerParam("same", "same (the layers: 'The Job it builds' below)"),
    "pod_template_dict": PeerParam("same", "same (the layers: 'The Job it builds' below)"),
    "priority_class_name": PeerParam("same", _SAME),
    "termination_grace_period": PeerParam("same", _SAME),
    # -- running, waiting, cleaning up ----------------------------------------------------------
    "reattach_on_restart": PeerParam(
        "same",
        "same: True (default) adopts this task instance's Job on a retry or restart; False deletes it "
        "and creates a fresh one",
    ),
    "durable": PeerParam(
        "alias",
        "``reattach_on_restart``",
        "reattach_on_restart",
        convert=_bool("durable", "reattach_on_restart"),
    ),
    "startup_timeout_seconds": PeerParam(
        "mapped",
        "``pending_timeout`` (a Pod not scheduled or not started that long fails the task, with the reason); "
        "given with ``schedule_timeout_seconds``, the sum",
        "pending_timeout",
        _seconds("startup_timeout_seconds"),
    ),
    "schedule_timeout_seconds": PeerParam(
        "mapped",
        "``pending_timeout``; given with ``startup_timeout_seconds``, the sum",
        "pending_timeout",
        _seconds("schedule_timeout_seconds"),
    ),
    "startup_check_interval_seconds": PeerParam("watched", _WATCH),
    "base_container_status_polling_interval": PeerParam("watched", _WATCH),
    "poll_interval": PeerParam("watched", _WATCH),
    "logging_interval": PeerParam(
        "watched", "accepted, no effect: the trigger streams the Pods' logs to the task log while deferred"
    ),
    "skip_on_exit_code": PeerParam(
        "same",
        "same: the task is skipped when the Job failed and its last failed Pod's main container exited "
        "with one of these codes",
    ),
    "on_finish_action": PeerParam(
        "mapped",
        "``delete_on_finish``: ``delete_pod`` -> ``always``, ``delete_succeeded_pod`` -> ``on_success``, "
        "``keep_pod`` -> ``never`` (the Job and its Pods)",
        "delete_on_finish",
        _on_finish,
    ),
    "is_delete_operator_pod": PeerParam(
        "mapped",
        "``delete_on_finish``: True -> ``always``, False -> ``never``",
        "delete_on_finish",
        _is_delete,
    ),
    "on_kill_action": PeerParam(
        "mapped",
        "``delete_on_kill``: ``delete_pod`` -> True (default: a killed task deletes its Jobs), "
        "``keep_pod`` -> False",
        "delete_on_kill",
        _on_kill,
    ),
    # -- logs and events ------------------------------------------------------------------------
    "get_logs": PeerParam("same", "same, streamed live from every Pod (replacements too)"),
    "container_logs": PeerParam("same", "same (True: every container, init containers too)"),
    "init_container_logs": PeerParam(
        "mapped",
        "added to ``container_logs``: True follows every init container too, names follow those",
        "container_logs",
    ),
    "log_events_on_failure": PeerParam(
        "mapped",
        "``diagnostics`` (events explained while waiting and summed up at the end); with "
        "``log_events_on_startup``, on if either is",
        "diagnostics",
        _bool("log_events_on_failure", "diagnostics"),
    ),
    "log_events_on_startup": PeerParam(
        "mapped",
        "``diagnostics``; with ``log_events_on_failure``, on if either is",
        "diagnostics",
        _bool("log_events_on_startup", "diagnostics"),
    ),
    "log_pod_spec_on_failure": PeerParam(
        "same", "same (default False here): the failed Job's Pod template is logged as YAML"
    ),
    "container_name_log_prefix_enabled": PeerParam(
        "fixed",
        "True only: every log line is prefixed with its Pod, container and item or index",
        accepted=(True,),
    ),
    "log_formatter": PeerParam(
        "fixed",
        "None only: no formatter hook (lines are prefixed with the Pod and its item or index)",
        accepted=(None,),
    ),
    "xcom_sidecar_container_security_context": PeerParam(
        "fixed", "None only: no XCom sidecar (Pods write ``$BATCHJOB_RESULT_FILE``)", accepted=(None,)
    ),
    "callbacks": PeerParam(
        "fixed",
        "None only: no Pod-level callback classes; use Airflow's ``on_success_callback`` / "
        "``on_failure_callback`` with the returned outcome",
        accepted=(None, (), []),
    ),
    "progress_callback": PeerParam(
        "fixed", "None only: progress goes to the task log (``progress_interval``)", accepted=(None,)
    ),
    "trigger_kwargs": PeerParam(
        "fixed",
        "None only: the trigger is built from the operator's own parameters (wait_timeout, "
        "pending_timeout, diagnostics, log settings)",
        accepted=(None, {}),
    ),
}

PEER_ONLY = frozenset(n for n, p in PEER_PARAMS.items() if p.answer != "same")


# How the Job built here differs from the one cncf.kubernetes' ``KubernetesJobOperator`` builds
# from the same parameters (``build_job_request_obj``): one line each, the reason included.
# tests/unit/test_peer_differential.py builds both for a corpus of parameter sets, rewrites away
# each entry (by its key) and fails on any other difference; gen_migration.py lists them in
# docs/migration.rst, where a user coming from the peer reads them.
JOB_DIFFERENCES: dict[str, str] = {
    "job-name": "``metadata.name``: the peer's is ``job-`` + ``name`` (else the task id) + a random "
    "suffix; ours is ``job_name`` + a suffix derived from dag, task, run and map index, so a retry "
    "finds its Job; with ``random_name_suffix=False`` exactly ``job_name``, without ``job-``",
    "pod-template-name": "``spec.template.metadata.name`` and ``namespace``: the peer copies its Pod's; "
    "the Job controller names the Pods itself, so ours sets neither",
    "ttl-hold": "``spec.ttlSecondsAfterFinished`` waits in the annotation "
    "``batchjob.airflow.io/ttl-seconds-after-finished`` until the task has read the outcome (the TTL "
    "would delete the Pods whose logs and results it reads), then is set",
    "default-ttl": "a Job with no TTL gets ``[batchjob] default_ttl_seconds_after_finished`` "
    "(7 days), so finished Jobs do not pile up; the peer's stays until deleted",
    "identity-labels": "labels: the peer's Pods carry ``dag_id``, ``task_id``, ``run_id``, ``try_number``, "
    "``map_index``, ``kubernetes_pod_operator``, ``airflow_version``, ``airflow_kpo_in_cluster``; the Job "
    "and its Pods here carry ``batchjob.airflow.io/`` ``dag``, ``task``, ``run``, ``try``, ``map-index``",
    "identity-annotations": "annotations: the Job and its Pods here also carry the exact ids "
    "(``batchjob.airflow.io/`` ``dag-id``, ``task-id``, ``run-id``, ``map-index``), which labels may shorten",
    "result-file": "the main container's env gets ``BATCHJOB_RESULT_FILE``, the file a Pod writes its "
    "result to (its termination message)",
    "xcom-sidecar": "``do_xcom_push=True`` adds no ``airflow-xcom-sidecar`` container, ``xcom`` volume "
    "or ``/airflow/xcom`` mount: results come back through ``$BATCHJOB_RESULT_FILE``",
    "main-container-name": "the main container's name: the peer renames a template's first container "
    "to ``base_container_name`` (default ``base``); ours keeps a template's name (``podFailurePolicy`` "
    "rules refer to it) and names its own ``base_container_name`` (default ``main``)",
    "peer-defaults": "``parallelism``, ``termination_message_policy`` and ``hostnetwork`` not given: the "
    "peer sends its defaults (1, ``File``, false), which replace a template's values; ours sends "
    "nothing, so a template's value stands, else Kubernetes' (the same) default",
    "env-by-name": "``env_vars`` naming a template's variable replace it where the template has it; "
    "the peer adds a second entry (Kubernetes takes the last, so the value is the same)",
    "resources-merge": "``container_resources`` over a template's are merged per quantity (a template's "
    "``requests`` stay when only ``limits`` are given); the peer replaces the template's whole",
    "falsy-over-template": "a parameter given as 0 or False (``backoff_limit=0``, ``suspend=False``, "
    "``automount_service_account_token=False``) over a template's value applies; the peer's merge "
    "skips falsy values and keeps the template's",
    "restart-policy": "``restartPolicy``: the peer always sends ``Never``; ours keeps a template's "
    "``OnFailure`` (``Never`` when the template says nothing)",
    "pod-deadline": "``active_deadline_seconds`` is set on the Job only; the peer also sets it on each "
    "Pod, where it never fires first (a Pod starts after its Job)",
    "skip-rule": "``skip_on_exit_code`` adds a ``FailJob`` rule first in ``podFailurePolicy``: those exit "
    "codes end the Job at once instead of being retried; the peer's Job is unchanged by it",
    "empty-values": "empty lists and empty ``affinity``, ``securityContext``, ``nodeSelector``, labels and "
    "annotations: the peer sends them, ours leaves them out; Kubernetes treats both as unset",
}

"""Why is a Job slow, stuck or failing? Pure readings of Jobs, Pods and Events.

The Kubernetes docs list why a Job's actual parallelism differs from ``.spec.parallelism``:
fewer completions remain, a work-queue Job stops starting Pods after its first success, the
controller has not caught up, it cannot create Pods (quota, admission, RBAC: ``FailedCreate``
events), it backs off after failures, or Pods are still terminating. And a Pod that exists may
not run: unschedulable (``PodScheduled=False`` with the scheduler's message) or its containers
cannot start (``ErrImagePull``, ``CreateContainerConfigError``, ...). These functions turn the
API objects into those explanations; the triggers watch the objects and log the lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_batchjob.core.indexes import parse_indexes

Obj = Mapping[str, Any]

# Container waiting reasons that mean "cannot start", as the kubelet writes them.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch from an API timestamp ("2024-05-01T10:00:00Z"), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None


def _one_line(text: str | None, limit: int = 300) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class Parallelism:
    """How many Pods the Job wants running now, how many are, and why fewer are wanted."""

    requested: int  # .spec.parallelism (1 when unset)
    wanted: int  # what the controller should run now, given completions and state
    active: int
    ready: int | None
    why_fewer_wanted: str | None = None


def parallelism_of(job: Obj) -> Parallelism:
    """Requested vs wanted vs actual parallelism of one Job, read like the Job controller does."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    requested = spec.get("parallelism")
    requested = 1 if requested is None else int(requested)
    active = int(status.get("active") or 0)
    ready = status.get("ready")
    ready = None if ready is None else int(ready)
    conditions = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    if spec.get("suspend") or "Suspended" in conditions:
        return Parallelism(requested, 0, active, ready, "the Job is suspended")
    if conditions & {"SuccessCriteriaMet", "FailureTarget", "Complete", "Failed"}:
        return Parallelism(requested, 0, active, ready, "the Job's outcome is decided")
    completions = spec.get("completions")
    succeeded = int(status.get("succeeded") or 0)
    if completions is None:  # work queue: no new Pods once any Pod has succeeded
        if succeeded:
            return Parallelism(
                requested,
                min(requested, active),
                active,
                ready,
                "a work-queue Job starts no new Pods after its first success",
            )
        return Parallelism(requested, requested, active, ready)
    if spec.get("completionMode") == "Indexed":
        done = len(parse_indexes(status.get("completedIndexes"))) + len(
            parse_indexes(status.get("failedIndexes"))
        )
    else:
        done = succeeded
    remaining = max(0, int(completions) - done)
    if remaining < requested:
        return Parallelism(
            requested, remaining, active, ready, f"only {remaining} of {completions} completions remain"
        )
    return Parallelism(requested, requested, active, ready)


@dataclass(frozen=True)
class PodProblem:
    """A Pod that exists but does not run (yet), with the reason Kubernetes gives."""

    pod: str
    reason: str  # Unschedulable, ErrImagePull, CreateContainerConfigError, ContainerCreating, ...
    message: str
    since: float | None  # when the Pod was created: how long it has not been running
    container: str | None = None
    index: str | None = None
    stuck: bool = True  # cannot start; False for ordinary start-up and for restart back-off

    def line(self, now: float) -> str:
        age = f" for {now - self.since:.0f}s" if self.since is not None else ""
        where = f"Pod {self.pod}" + (f" (index {self.index})" if self.index is not None else "")
        if self.container:
            where += f" container {self.container}"
        state = "Pending" if self.container is None else "waiting"
        text = f"{where} {state}{age}: {self.reason}"
        return text + (f": {self.message}" if self.message else "")


def pod_problem(pod: Obj) -> PodProblem | None:
    """Why this Pod is not running, or None if it runs, ran, or is being deleted."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") not in (None, "Pending", "Running"):
        return None
    name = meta.get("name") or "?"
    since = parse_time(meta.get("creationTimestamp"))
    index = (meta.get("annotations") or {}).get(INDEX_ANNOTATION)
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    if status.get("phase") == "Running":  # restartPolicy OnFailure: a crashing container is retried
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                message = _one_line(waiting.get("message")) or f"restarted {cs.get('restartCount', 0)} times"
                return PodProblem(name, "CrashLoopBackOff", message, None, cs.get("name"), index, stuck=False)
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodProblem(
                name,
                cond.get("reason") or "Unschedulable",
                _one_line(cond.get("message")),
                since,
                index=index,
            )
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") in STUCK_REASONS:
            return PodProblem(
                name,
                waiting["reason"],
                _one_line(waiting.get("message")),
                since,
                container=cs.get("name"),
                index=index,
            )
    if not status.get("conditions"):  # not scheduled yet, no verdict from the scheduler either
        return PodProblem(name, "NotScheduled", "waiting for the scheduler", since, index=index, stuck=False)
    waiting = next(((cs.get("state") or {}).get("waiting") for cs in statuses if cs.get("state")), None)
    reason = (waiting or {}).get("reason") or "ContainerCreating"
    return PodProblem(
        name, reason, _one_line((waiting or {}).get("message")), since, index=index, stuck=False
    )


def failed_create_events(events: Iterable[Obj], job_uid: str | None) -> list[str]:
    """Messages of the Job's ``FailedCreate`` events (quota, admission, RBAC), newest last."""
    out: list[tuple[str, str]] = []
    for ev in events:
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        if ev.get("reason") != "FailedCreate" or (job_uid and involved.get("uid") != job_uid):
            continue
        when = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or ""
        out.append((str(when), _one_line(ev.get("message") or ev.get("note"))))
    return [m for _, m in sorted(out)]


@dataclass
class Diagnosis:
    """What holds one Job back right now, as log lines; ``key`` changes when the reasons do."""

    job: str
    lines: list[str] = field(default_factory=list)
    key: tuple[str, ...] = ()
    stuck: list[PodProblem] = field(default_factory=list)
    gap: int = 0  # Pods wanted but not there


def diagnose(
    job: Obj, pods: Sequence[Obj], events: Sequence[Obj], now: float, *, max_pods: int = 5
) -> Diagnosis:
    """Explain a Job's gap between wanted and actual parallelism, and its Pods that do not run."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    diag = Diagnosis(job=name)
    par = parallelism_of(job)
    keys: list[str] = []
    if par.wanted == 0 and par.why_fewer_wanted in ("the Job is suspended", "the Job's outcome is decided"):
        return diag
    gap = max(0, par.wanted - par.active)
    diag.gap = gap
    head = f"Job {name}: parallelism {par.active} running of {par.requested} requested"
    if par.why_fewer_wanted:
        head += f" ({par.why_fewer_wanted})"
    if gap:
        creates = failed_create_events(events, meta.get("uid"))
        terminating = int(status.get("terminating") or 0)
        failed = int(status.get("failed") or 0)
        if creates:
            why = f"the Job controller cannot create Pods: FailedCreate: {creates[-1]}"
            keys.append("FailedCreate")
        elif terminating:
            why = f"{terminating} Pods are still terminating; their replacements wait for them"
            keys.append("terminating")
        elif failed:
            why = f"{failed} Pods failed: the controller backs off before creating replacements"
            keys.append("backoff")
        else:
            why = "the Job controller has not created them yet"
            keys.append("lag")
        diag.lines.append(f"{head}; {gap} missing: {why}")
    problems = [p for p in (pod_problem(p) for p in pods) if p is not None]
    diag.stuck = [p for p in problems if p.stuck]
    notable = [p for p in problems if p.stuck or p.reason == "CrashLoopBackOff"]
    starting = [p for p in problems if p not in notable]
    if problems and not gap:
        diag.lines.append(f"{head}, {len(problems)} of them not running")
    for p in sorted(notable, key=lambda p: (p.since or 0, p.pod))[:max_pods]:
        diag.lines.append(p.line(now))
        keys.append(f"{p.pod}:{p.reason}")
    if len(notable) > max_pods:
        diag.lines.append(f"{len(notable) - max_pods} more Pods cannot start")
    if starting:
        keys.append("starting")
    diag.key = tuple(keys)  # what holds the Job back, not how many Pods: counts change all the time
    return diag


def pending_violation(problems: Iterable[PodProblem], now: float, timeout: float) -> PodProblem | None:
    """The longest-stuck Pod that has been unschedulable or unable to start for ``timeout`` s."""
    late = [p for p in problems if p.since is not None and now - p.since >= timeout]
    return min(late, key=lambda p: p.since or 0.0) if late else None


def pod_summary(pods: Sequence[Obj], now: float) -> dict[str, Any]:
    """Counts and time spent Pending over a Job's Pods that still exist (for the XCom summary)."""
    pending: list[float] = []
    evicted = failed = 0
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        created = parse_time(meta.get("creationTimestamp"))
        if status.get("phase") == "Failed":
            failed += 1
        if status.get("reason") == "Evicted" or any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True"
            for c in status.get("conditions") or []
        ):
            evicted += 1
        if created is None:
            continue
        starts = []
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            for key in ("running", "terminated"):
                t = parse_time((state.get(key) or {}).get("startedAt"))
                if t is not None:
                    starts.append(t)
        end = min(starts) if starts else parse_time(meta.get("deletionTimestamp")) or now
        pending.append(max(0.0, end - created))
    return {
        "pods_seen": len(pods),
        "pods_failed_seen": failed,
        "pods_evicted": evicted,
        "pending_seconds_total": round(sum(pending), 1),
        "pending_seconds_max": round(max(pending), 1) if pending else 0.0,
    }


def needs_diagnosis(job: Obj) -> bool:
    """True when a running Job's status shows fewer Pods (or fewer ready Pods) than it wants."""
    par = parallelism_of(job)
    if par.wanted == 0 and par.active == 0:
        return False
    if par.active < par.wanted:
        return True
    return par.ready is None or par.ready < par.active

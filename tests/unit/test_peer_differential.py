"""The same Job, field by field: cncf.kubernetes' ``KubernetesJobOperator`` and ``BatchJobOperator``.

Each case of ``tests/unit/peer_corpus.py`` (one set of the peer's parameters) is given unchanged to
both operators; both Jobs are built offline (the peer's ``build_job_request_obj`` with a stand-in
hook, ours with ``build``) and turned into API-form dicts. Then each difference we intend, listed
once with its reason in ``core/peertable.py``'s ``JOB_DIFFERENCES`` (and so in docs/migration.rst),
is rewritten away by the function registered under its key (``tests/unit/peer_rewrites.py``), and
every remaining field must be equal. Any other difference fails the case with a path-by-path diff.

Peer releases older than the table's (the floor, 10.0.0) lack some parameters: a case using one
is skipped, naming it; a case the peer built wrongly before a release says which (``since``).
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes import secret as cncf_secret
from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from packaging.version import Version

from airflow_batchjob.core.manifest import to_api
from airflow_batchjob.core.naming import ANNOTATION_HELD_TTL
from airflow_batchjob.core.peertable import JOB_DIFFERENCES
from airflow_batchjob.operators.job import BatchJobOperator
from tests.unit.peer_corpus import CASES, GROUPS, Case, File
from tests.unit.peer_rewrites import (
    PEER_DEFAULTS,
    REWRITES,
    Job,
    Params,
    compare,
    main_container,
    meta,
    pod_spec,
)

PEER_VERSION = version("apache-airflow-providers-cncf-kubernetes")
PEER_RELEASE = Version(PEER_VERSION).release


def _peer_accepts() -> set[str]:
    """Every keyword the peer's constructor takes, through its MRO (BaseOperator's too)."""
    names: set[str] = set()
    for klass in KubernetesJobOperator.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            names |= set(inspect.signature(init).parameters)
    return names - {"self", "args", "kwargs"}


PEER_ACCEPTS = _peer_accepts()
TI = SimpleNamespace(
    dag_id="nightly", task_id="load", run_id="manual__2024-01-01", map_index=-1, try_number=1
)
CONTEXT: Any = {"ti": TI, "run_id": TI.run_id, "dag": SimpleNamespace(dag_id=TI.dag_id)}


class OfflineHook:
    """What ``build_job_request_obj`` asks the peer's hook: no connection, not in a cluster."""

    is_in_cluster = False

    def get_namespace(self) -> None:
        return None

    def get_xcom_sidecar_container_image(self) -> None:
        return None

    def get_xcom_sidecar_container_resources(self) -> None:
        return None

    def get_xcom_sidecar_container_security_context(self) -> None:
        return None


# -- building -----------------------------------------------------------------------------------


def case_params(case: Case, tmp_path: Path) -> dict[str, Any]:
    """The case's parameters, its ``File`` values written out as files."""
    params: dict[str, Any] = {"task_id": TI.task_id, "namespace": "ns", **case.base, **case.kwargs}
    for key, value in params.items():
        if isinstance(value, File):
            path = tmp_path / f"{key}.yaml"
            path.write_text(value.text, encoding="utf-8")
            params[key] = str(path)
    return params


@contextmanager
def _numbered_secret_volumes() -> Iterator[None]:
    """A volume Secret's volume is named ``secretvol`` + a random uuid (cncf.kubernetes'
    ``Secret.attach_to_pod``, which both operators use): numbered instead, the same on both sides."""
    count = itertools.count()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cncf_secret, "uuid", SimpleNamespace(uuid4=lambda: f"-{next(count)}"))
        yield


def build_peer(params: Params) -> Job:
    kwargs = copy.deepcopy(dict(params))
    for name in PEER_DEFAULTS:  # "peer-defaults": what the peer sends when they are not given
        kwargs.setdefault(name, None)
    op = KubernetesJobOperator(**kwargs)
    op.__dict__["hook"] = OfflineHook()  # a cached_property: this instance's value
    with _numbered_secret_volumes():
        return to_api(op.build_job_request_obj(CONTEXT))


def build_ours(params: Params) -> Job:
    op = BatchJobOperator(**copy.deepcopy(dict(params)))  # (checks the parameters: a Job of its own)
    with _numbered_secret_volumes():
        return op.build(CONTEXT, "ns")


def runnable(case: Case, params: Params) -> None:
    """Skip a case this peer release cannot build (a parameter it lacks, a bug it had)."""
    missing = sorted(set(params) - PEER_ACCEPTS)
    if missing:
        pytest.skip(f"cncf.kubernetes {PEER_VERSION}'s KubernetesJobOperator has no {', '.join(missing)}")
    if case.since is not None and case.since > PEER_RELEASE:
        pytest.skip(f"cncf.kubernetes {PEER_VERSION}: {case.why}")


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_same_job(case: Case, tmp_path: Path) -> None:
    params = case_params(case, tmp_path)
    runnable(case, params)
    peer, ours = build_peer(params), build_ours(params)
    unintended, _ = compare(peer, ours, params)
    assert not unintended, (
        f"{case.id} ({case.group}): the Jobs differ beyond core/peertable.py's JOB_DIFFERENCES:\n"
        + "\n".join(unintended)
    )


def test_the_corpus_covers_every_parameter_group() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.group for c in CASES} == set(GROUPS)


def test_every_documented_difference_has_a_rewrite_and_is_met(tmp_path: Path) -> None:
    """The list and the rewrites are the same keys, and each rewrite changes some case."""
    assert set(REWRITES) == set(JOB_DIFFERENCES)
    met: set[str] = {"peer-defaults"}  # rewrites the peer's parameters, not its Job
    for case in CASES:
        params = case_params(case, tmp_path)
        try:
            runnable(case, params)
        except pytest.skip.Exception:
            continue
        met |= compare(build_peer(params), build_ours(params), params)[1]
    assert met == set(JOB_DIFFERENCES), f"never needed: {sorted(set(JOB_DIFFERENCES) - met)}"


def _by_id(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def _set_image(job: Job) -> None:
    main_container(job)["image"] = "busybox:9"


def _add_node_name(job: Job) -> None:
    pod_spec(job)["nodeName"] = "node-1"


def _reverse_env(job: Job) -> None:
    main_container(job)["env"].reverse()


def _drop_user_label(job: Job) -> None:
    del meta(job, pod=True)["labels"]["team"]


def _drop_held_ttl(job: Job) -> None:
    del job["metadata"]["annotations"][ANNOTATION_HELD_TTL]


def _peer_label_on_ours(job: Job) -> None:
    meta(job)["labels"]["dag_id"] = "nightly"


def _rename_volume(job: Job) -> None:
    pod_spec(job)["volumes"][0]["name"] = "other"


@pytest.mark.parametrize(
    ("case_id", "inject", "path"),
    [
        ("env-dict", _set_image, "spec.template.spec.containers[0:main].image"),
        ("node-selector", _add_node_name, "spec.template.spec.nodeName"),
        ("env-every-source", _reverse_env, "spec.template.spec.containers[0:main].env["),
        ("labels-annotations", _drop_user_label, "spec.template.metadata.labels.team"),
        ("ttl", _drop_held_ttl, "spec.ttlSecondsAfterFinished"),
        ("labels-annotations", _peer_label_on_ours, "metadata.labels.dag_id"),
        ("configmap-volume", _rename_volume, "spec.template.spec.volumes[0:"),
    ],
    ids=["image", "extra-field", "env-order", "lost-label", "lost-ttl", "peer-label-on-job", "volume-name"],
)
def test_an_injected_difference_is_caught(
    case_id: str, inject: Callable[[Job], None], path: str, tmp_path: Path
) -> None:
    """The comparison can fail: one change to our Job (none of them intended) is reported."""
    params = case_params(_by_id(case_id), tmp_path)
    peer, ours = build_peer(params), build_ours(params)
    assert compare(peer, ours, params)[0] == []
    inject(ours)
    unintended, _ = compare(peer, ours, params)
    assert unintended and all(line.startswith(f"  {path}") for line in unintended), unintended

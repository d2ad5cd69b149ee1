"""cncf.kubernetes' Kueue operators under their own names, so that a DAG written for them runs here
by changing its import (issue 33). Every operator of this provider that creates Jobs takes
``queue_name`` (``operators/base.py``); these two only keep the peer's class names and contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batchjob.exceptions import BatchJobError, InvalidJobTemplateError
from airflow_batchjob.hooks.batchjob import BatchJobHook, ClusterConnection
from airflow_batchjob.hooks.kueue import served_versions
from airflow_batchjob.operators.job import BatchJobOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class KubernetesStartKueueJobOperator(BatchJobOperator):
    """``BatchJobOperator`` with a required Kueue LocalQueue (cncf.kubernetes' class of this name).

    The Job is labelled for the queue and created suspended; Kueue admits it. The wait follows its
    Workload (docs/guides/kueue.rst). Every other parameter is ``BatchJobOperator``'s.

    :param queue_name: the Kueue LocalQueue (templated in cncf.kubernetes; a literal here,
        checked when the DAG is parsed).
    :param suspend: True or unset: a Job for Kueue is always created suspended; False is refused,
        as cncf.kubernetes refuses it.
    """

    def __init__(self, *, queue_name: str, suspend: bool | None = None, **kwargs: Any) -> None:
        if suspend is False:
            raise InvalidJobTemplateError(
                "suspend=False: a Job run by Kueue is created suspended and Kueue unsuspends it once "
                "admitted; drop suspend (or pass True)"
            )
        super().__init__(queue_name=queue_name, suspend=True, **kwargs)


class KubernetesInstallKueueOperator(ClusterConnection, BaseOperator):
    """Checks that Kueue is installed (cncf.kubernetes' class of this name installs it).

    cncf.kubernetes applies Kueue's release manifests downloaded from GitHub at run time, with the
    task's connection. This provider does not install cluster software from a task: the task
    succeeds when the cluster serves Kueue's API, and fails saying how to install it otherwise.

    :param kueue_version: the version the DAG asks for; logged beside what the cluster serves.
    :param kubernetes_conn_id: the cncf.kubernetes connection (default ``kubernetes_default``).
    :param config_file: a kubeconfig file instead of the connection's (templated).
    :param in_cluster: use the Pod's service account (True) or not, instead of the connection's.
    :param cluster_context: the kubeconfig context to use (templated).
    """

    template_fields: Sequence[str] = ("cluster_context", "config_file", "kueue_version")

    def __init__(
        self,
        *,
        kueue_version: str,
        kubernetes_conn_id: str = "kubernetes_default",
        config_file: str | None = None,
        in_cluster: bool | None = None,
        cluster_context: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kueue_version = kueue_version
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file, self.in_cluster, self.cluster_context = config_file, in_cluster, cluster_context

    def execute(self, context: Context) -> list[str]:
        versions = served_versions(BatchJobHook(self.conn()).api)
        if not versions:
            raise BatchJobError(
                f"Kueue is not installed in this cluster (kueue_version={self.kueue_version!r} asked for): "
                "install it with its release manifests (kubectl apply --server-side -f https://github.com/"
                f"kubernetes-sigs/kueue/releases/download/{self.kueue_version}/manifests.yaml) or its "
                "Helm chart; this provider does not install cluster software from a task"
            )
        self.log.info(
            "Kueue is installed: the cluster serves kueue.x-k8s.io %s (kueue_version=%s not applied)",
            ", ".join(versions),
            self.kueue_version,
        )
        return versions

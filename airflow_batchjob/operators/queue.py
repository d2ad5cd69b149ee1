"""Queue-backed Jobs: pre-fill a broker queue, then a Job whose Pods consume it through the worker.

Two Kubernetes patterns: one Pod per item on RabbitMQ (``completions = N``, each Pod takes one
message and exits) and a variable Pod count on Redis (``parallelism = P``, no completions; each
worker leases items until the queue is drained). The in-Pod side is ``python -m
airflow_batchjob.worker``; it wraps the user's unchanged program. Broker credentials reach Pods
through a Kubernetes Secret the operator creates from the Airflow connection (owned by the Job,
so garbage-collected with it), never as plain env in the spec; with TLS the same Secret holds the
CA and client certificate, mounted read-only (``core/brokerconn.py`` reads the connection).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator

from airflow_batchjob import extras, queues
from airflow_batchjob._compat import BaseHook
from airflow_batchjob.core import inject, naming
from airflow_batchjob.core.brokerconn import TLS_MOUNT_PATH, BrokerConfigError, BrokerConn
from airflow_batchjob.core.build import JobOverrides
from airflow_batchjob.core.errors import InvalidJobSpecError
from airflow_batchjob.core.items import normalize_items
from airflow_batchjob.core.specvalues import to_int
from airflow_batchjob.exceptions import BatchJobError, InvalidJobTemplateError, JobFailedError
from airflow_batchjob.operators.base import items_at_parse
from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.operators.templated import waits_for_run

if TYPE_CHECKING:
    from airflow.sdk import Context

Broker = Literal["rabbitmq", "redis"]
Mode = Literal["pod_per_item", "variable"]
_BROKER_OF_MODE: dict[str, Broker] = {"pod_per_item": "rabbitmq", "variable": "redis"}
_URL_ENV = {"rabbitmq": "BATCHJOB_AMQP_URL", "redis": "BATCHJOB_REDIS_URL"}
_DEFAULT_CONN = {"rabbitmq": "rabbitmq_default", "redis": "redis_default"}
QUEUE_ITEM_BYTES = 16 * 1024 * 1024


def broker_conn(broker: Broker, conn_id: str) -> BrokerConn:
    """The Airflow connection as a checked :class:`BrokerConn` (TLS files found and loaded).

    A connection that cannot work fails here, before anything is created, with what to fix.
    """
    try:
        return BrokerConn.from_connection(broker, conn_id, BaseHook.get_connection(conn_id))
    except BrokerConfigError as e:
        raise InvalidJobTemplateError(str(e)) from None


@contextlib.contextmanager
def open_queue(conn: BrokerConn, name: str) -> Iterator[queues.RedisQueue | queues.RabbitQueue]:
    """The queue, reached from this machine (inline PEM lives in private temporary files meanwhile)."""
    with conn.local_url() as url:
        if conn.broker == "rabbitmq":
            yield queues.RabbitQueue(queues.rabbit_params_from_url(url), name)
            return
        client = queues.redis_from_url(url)
        try:
            yield queues.RedisQueue(client, name)
        finally:
            client.close()


def default_queue_name(context: Context) -> str:
    """Unique per DAG run and task (and map index), so backfill runs never share a queue."""
    ti = context["ti"]
    return naming.job_name(ti.dag_id, ti.task_id, ti.run_id, -1 if ti.map_index is None else ti.map_index)


class QueuePrefillOperator(BaseOperator):
    """Put items into a RabbitMQ or Redis queue for a queue-backed Job; idempotent on retry.

    RabbitMQ: durable queue, persistent messages, publisher confirms, batched. Redis: one
    pipelined transaction. A retried pre-fill leaves each item exactly once. Returns (XCom)
    ``{"broker", "queue", "count"}`` for the Job task.

    :param items: the work items (a list, or templated to one): strings or JSON values.
    :param broker: ``rabbitmq`` or ``redis``.
    :param queue_name: the queue (templated); default: unique per DAG run and task.
    :param conn_id: the broker's Airflow connection (default ``rabbitmq_default`` /
        ``redis_default``); TLS from its extras (``ssl``, ``ssl_ca_certs``, ``ssl_certfile``,
        ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``: ``core/brokerconn.py``).
    """

    template_fields: Sequence[str] = ("items", "queue_name")

    def __init__(
        self,
        *,
        items: Any,
        broker: Broker,
        queue_name: str | None = None,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if broker not in ("rabbitmq", "redis"):
            raise InvalidJobTemplateError(f"broker={broker!r}: use 'rabbitmq' or 'redis'")
        extras.require(broker)
        literal = items_at_parse(items)
        if literal is not None:
            items = literal
            self._texts(items)
        self.items = items
        self.broker: Broker = broker
        self.queue_name = queue_name
        self.conn_id: str = conn_id or _DEFAULT_CONN[broker]

    @staticmethod
    def _texts(values: Any) -> list[str]:
        try:
            return [
                i.text
                for i in normalize_items(values, max_item_bytes=QUEUE_ITEM_BYTES, allow_duplicates=True)
            ]
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(f"items: {e}") from e

    def execute(self, context: Context) -> dict[str, Any]:
        texts = self._texts(self.items)
        name = self.queue_name or default_queue_name(context)
        conn = broker_conn(self.broker, self.conn_id)
        with open_queue(conn, name) as queue:
            count = queue.prefill(texts)
        tls = " over TLS" if conn.tls else ""
        self.log.info(
            "queue %s on %s (%s:%d%s) holds %d items", name, self.broker, conn.host, conn.port, tls, count
        )
        return {"broker": self.broker, "queue": name, "count": len(texts)}


class QueueJobOperator(BatchJobOperator):
    """Run a Job whose Pods consume a queue through the worker entrypoint.

    :param mode: ``pod_per_item`` (RabbitMQ; ``completions = count``) or ``variable`` (Redis;
        ``parallelism`` workers drain the queue).
    :param queue_name: the queue name (templated; e.g. from the pre-fill task's XCom).
    :param count: items in the queue (``pod_per_item`` only; templated: Jinja, or the pre-fill
        task's XCom, checked once rendered).
    :param parallelism: workers (Pods) that run at once, at least 1 (templated, as the
        :class:`BatchJobOperator` spec parameters are).
    :param conn_id: the broker's Airflow connection, as for :class:`QueuePrefillOperator`; its URL,
        and with TLS its CA and client certificate, reach the Pods only in the Job's Secret.
    :param max_attempts: attempts per item before it goes to the dead-letter list.
    :param lease_seconds: Redis lease, renewed while the program runs; a dead worker's item is
        taken again once its lease expires.
    :param fail_on_dead_letter: fail the task when items were dead-lettered (default True).
    :param broker_tls_mount_path: where a TLS connection's CA, client certificate and key
        (``ca.crt``, ``tls.crt``, ``tls.key``, from the Job's Secret) are mounted read-only in the
        worker container, mode 0440; the worker's broker URL names these files. Default
        ``/etc/batchjob/broker-tls``; change it only if the container uses that path.

    :param worker_command: how the image runs the worker (``python -m airflow_batchjob.worker``).
    :param inject_worker: run the program under the static worker binary an init container copies
        in from ``worker_image`` (``core/inject.py``), so the image needs no Python. Default
        (None): on when the image is not ``worker_image`` and ``worker_command`` is unchanged.
    :param worker_image: the worker image the injected binary comes from.

    Takes the parameters of :class:`BatchJobOperator` for the program (``cmds``/``arguments`` or
    a template) and the Job spec; ``wait_until_job_complete=False`` and ``skip_on_exit_code`` are
    refused (see the messages). Returns the Job outcome, queue statistics and ``results``: what
    each item's program wrote to ``$BATCHJOB_RESULT_FILE``, ``[{"id", "item", "result"}]`` in pre-fill
    order (kept by the worker in the broker beside the queue, stored with the item's completion).
    """

    template_fields: Sequence[str] = (*BatchJobOperator.template_fields, "count", "queue_name")
    cannot_honour = (
        (
            "wait_until_job_complete",
            True,
            "the queue is read after the Job (dead-lettered and leftover items fail the task, results "
            "are collected), so QueueJobOperator always waits",
        ),
        (
            "skip_on_exit_code",
            None,
            "the worker takes items from the queue and retries a failed one up to max_attempts; "
            "a program's exit code decides its item, not the task",
        ),
    )

    def __init__(
        self,
        *,
        mode: Mode,
        queue_name: str,
        count: int | str | None = None,
        parallelism: int | str = 1,
        conn_id: str | None = None,
        max_attempts: int = 3,
        lease_seconds: int = 30,
        fail_on_dead_letter: bool = True,
        worker_command: Sequence[str] = ("python", "-m", "airflow_batchjob.worker"),
        broker_tls_mount_path: str = TLS_MOUNT_PATH,
        inject_worker: bool | None = None,
        worker_image: str = inject.WORKER_IMAGE,
        **kwargs: Any,
    ) -> None:
        if mode not in _BROKER_OF_MODE:
            raise InvalidJobTemplateError(
                f"mode={mode!r}: use 'pod_per_item' (RabbitMQ) or 'variable' (Redis)"
            )
        extras.require(_BROKER_OF_MODE[mode])
        if mode == "pod_per_item" and count is None:
            raise InvalidJobTemplateError("mode='pod_per_item' needs count (the number of items queued)")
        if mode == "variable" and count is not None:
            raise InvalidJobTemplateError("mode='variable' takes no count: workers drain the queue")
        if kwargs.get("completions") is not None:
            raise InvalidJobTemplateError("QueueJobOperator sets completions itself (from count)")
        # A templated parallelism (or count) is checked once rendered (check_spec_fields).
        if max_attempts < 1 or lease_seconds < 3 or (isinstance(parallelism, int) and parallelism < 1):
            raise InvalidJobTemplateError(
                "max_attempts >= 1, lease_seconds >= 3 and parallelism >= 1 are required"
            )
        path = broker_tls_mount_path
        if not path.startswith("/") or not path.strip("/") or ".." in path.split("/"):
            raise InvalidJobTemplateError(
                f"broker_tls_mount_path={path!r}: give an absolute directory path (not /, no '..')"
            )
        kwargs["parallelism"] = parallelism
        if isinstance(count, str) and not waits_for_run(count):
            count = self._count(count)  # literal text: "5" is read now, "lots" refused now
        if mode == "pod_per_item" and isinstance(count, int):
            kwargs["completions"] = count
        super().__init__(**kwargs)
        self.mode: Mode = mode
        self.broker: Broker = _BROKER_OF_MODE[mode]
        self.queue_name = queue_name
        self.count = count
        self.conn_id = conn_id or _DEFAULT_CONN[self.broker]
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.fail_on_dead_letter = fail_on_dead_letter
        self.worker_command = list(worker_command)
        self.inject_worker, self.worker_image = inject_worker, worker_image
        self.broker_tls_mount_path = broker_tls_mount_path.rstrip("/")
        self._conn: BrokerConn | None = None

    def broker_conn(self) -> BrokerConn:
        """The broker connection, read once per operator instance (each call would read the
        connection and the certificate files again)."""
        if self._conn is None:
            self._conn = broker_conn(self.broker, self.conn_id)
        return self._conn

    def build(
        self, context: Context, namespace: str, broker: BrokerConn | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The Job; with ``broker`` (a TLS connection with files) also the Secret volume for them."""
        kwargs["overrides"] = self.check_spec_fields()
        body = super().build(context, namespace, **kwargs)
        name = body["metadata"]["name"]
        main = body["spec"]["template"]["spec"]["containers"][0]
        program = list(main.pop("command", None) or []) + list(main.pop("args", None) or [])
        if not program:
            raise InvalidJobTemplateError(
                "QueueJobOperator needs the program to run: pass cmds (and arguments)"
            )
        opts = ["--queue", str(self.queue_name), "--max-attempts", str(self.max_attempts)]
        if self.mode == "variable":
            opts += ["--lease-seconds", str(self.lease_seconds)]
        how = (self.inject_worker, self.broker, self.worker_image, self.worker_command)
        worker = inject.worker_for(body["spec"]["template"], *how)
        main["command"] = [*worker, self.broker, *opts, "--", *program]
        env = main.setdefault("env", [])
        env.append(
            {
                "name": _URL_ENV[self.broker],
                "valueFrom": {"secretKeyRef": {"name": self.secret_name(name), "key": "url"}},
            }
        )
        tls = broker.pod_volume(self.secret_name(name), self.broker_tls_mount_path) if broker else None
        if tls is not None:
            volume, mount = tls
            pod = body["spec"]["template"]["spec"]
            clash = [v["name"] for v in pod.get("volumes") or [] if v.get("name") == volume["name"]] + [
                m["mountPath"]
                for m in main.get("volumeMounts") or []
                if m.get("mountPath", "").rstrip("/") == mount["mountPath"]
            ]
            if clash:
                raise InvalidJobTemplateError(
                    f"the broker's TLS files need volume {volume['name']!r} at {mount['mountPath']}, "
                    f"but the template already has {clash[0]!r}: pass another broker_tls_mount_path"
                )
            pod.setdefault("volumes", []).append(volume)
            main.setdefault("volumeMounts", []).append(mount)
        return body

    @staticmethod
    def _count(value: Any) -> int:
        """``count`` as given or rendered (``"5"`` -> 5); anything else is refused, naming it."""
        try:
            count = to_int("count", value)
        except InvalidJobSpecError as e:
            raise InvalidJobTemplateError(str(e)) from e
        if count < 0:
            raise InvalidJobTemplateError(f"count={count}: must be >= 0")
        return count

    def check_spec_fields(self) -> JobOverrides:
        """The rendered spec parameters, with this pattern's own: at least one worker, and
        ``completions = count`` (pod-per-item)."""
        overrides = super().check_spec_fields()
        if overrides.parallelism is None or overrides.parallelism < 1:
            raise InvalidJobTemplateError(
                f"task {self.task_id}: parallelism={overrides.parallelism!r}: QueueJobOperator needs "
                "parallelism >= 1 (the number of workers)"
            )
        if self.mode == "pod_per_item":
            overrides = dataclasses.replace(overrides, completions=self._count(self.count))
        return overrides

    @staticmethod
    def secret_name(job_name: str) -> str:
        return f"{job_name}-broker"

    def execute(self, context: Context) -> Any:
        self.check_spec_fields()
        self.log_peer_notes()
        conn = self.broker_conn()  # a connection that cannot work fails before anything exists
        namespace = self.resolve_namespace()
        body = self.build(context, namespace, broker=conn)
        name = body["metadata"]["name"]
        hook = self.hook
        self.server_dry_run(hook, namespace, body)  # before the broker Secret exists
        secret = {
            "metadata": {"name": self.secret_name(name), "labels": body["metadata"]["labels"]},
            "type": "Opaque",
            "stringData": conn.secret_data(self.broker_tls_mount_path),
        }
        hook.put_secret(namespace, secret)
        job = self.create_or_adopt(hook, namespace, body, context)
        owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}]
        hook.core.patch_namespaced_secret(
            self.secret_name(name), namespace, {"metadata": {"ownerReferences": owner}}
        )
        self.push(context, "job_name", name)
        self.push(context, "job_namespace", namespace)
        return self.wait(context, namespace, name, job["metadata"]["uid"], job)

    def work_left_done(self, job: dict[str, Any]) -> bool:
        """A succeeded queue Job is kept only if its queue is drained: items redelivered after
        the Job completed (a lost acknowledgement) need a fresh Job to run them."""
        stats = self.queue_stats()
        left = int(stats.get("pending", 0) or 0) + int(stats.get("processing", 0) or 0)
        if left:
            self.log.info("queue %s still holds %d items: the Job runs again", self.queue_name, left)
        return not left

    def queue_stats(self) -> dict[str, Any]:
        with open_queue(self.broker_conn(), str(self.queue_name)) as queue:
            return queue.stats()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if self.resumed_without_event(context, event):
            return self.execute(context)
        assert event is not None
        try:
            outcome = self.finish(event, context)
        except JobFailedError as e:
            raise JobFailedError(f"{e}; queue {self.queue_name}: {self.queue_stats()}", e.outcome) from e
        stats = self.queue_stats()
        self.log.info("queue %s after the Job: %s", self.queue_name, stats)
        dead = int(stats.get("dead", 0) or 0)
        if dead and self.fail_on_dead_letter:
            shown = stats.get("dead_items") or []
            raise JobFailedError(
                f"{dead} items were dead-lettered after {self.max_attempts} attempts: {shown}",
                outcome.to_dict(),
            )
        left = int(stats.get("pending", 0) or 0) + int(stats.get("processing", 0) or 0)
        if left:
            raise BatchJobError(
                f"the Job ended but {left} items are still in queue {self.queue_name}: {stats}"
            )
        results = self.queue_results() if self.do_xcom_push else []
        return {**self.result(outcome), "queue": stats, "results": results}

    def queue_results(self) -> list[dict[str, Any]]:
        """What the programs wrote to ``$BATCHJOB_RESULT_FILE``, per item, kept by the worker in the
        broker beside the queue (Redis hash ``<queue>:results``, RabbitMQ queue ``<queue>.results``)."""
        with open_queue(self.broker_conn(), str(self.queue_name)) as queue:
            return queue.read_results()

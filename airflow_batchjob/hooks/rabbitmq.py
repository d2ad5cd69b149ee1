"""The RabbitMQ connection types of the one-Pod-per-item queue pattern: ``amqp`` and ``amqps``.

No installed Airflow provider defines them, so the connection form would otherwise be a generic
one. These hooks only describe the form (Airflow reads ``get_ui_field_behaviour``) and read the
connection as the operators do; they import no broker client.
"""

from __future__ import annotations

import copy
from typing import Any

from airflow_batchjob._compat import BaseHook
from airflow_batchjob.core.brokerconn import RABBITMQ_FORM, BrokerConn


class RabbitMQHook(BaseHook):
    """A RabbitMQ broker: host, port (5672), login, password, schema = the virtual host (``/``).

    TLS when the extras say ``"ssl": true``, with ``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile`` (paths on the Airflow worker or PEM text), ``ssl_cert_reqs`` and
    ``ssl_check_hostname``, as for Redis (docs/connections.rst).

    :param conn_id: the Airflow connection (default ``rabbitmq_default``).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "rabbitmq_default"
    conn_type = "amqp"
    hook_name = "RabbitMQ (airflow-batchjob)"

    def __init__(self, conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.conn_id = conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return copy.deepcopy(RABBITMQ_FORM)

    def broker_conn(self) -> BrokerConn:
        """The connection as the queue operators read it (raises ``BrokerConfigError`` if it cannot work)."""
        return BrokerConn.from_connection("rabbitmq", self.conn_id, self.get_connection(self.conn_id))


class RabbitMQTLSHook(RabbitMQHook):
    """A RabbitMQ broker over TLS (``amqps``): the same fields; TLS without ``"ssl": true``.

    :param conn_id: the Airflow connection (default ``rabbitmq_default``).
    """

    conn_type = "amqps"
    hook_name = "RabbitMQ over TLS (airflow-batchjob)"

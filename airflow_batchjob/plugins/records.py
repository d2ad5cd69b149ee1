"""What Airflow's database holds about one task instance: its state and the XComs the view reads.

The api-server has the metadata database; one query for the state and one for the XComs per
refresh, whatever the batch's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

from airflow_batchjob.links import VIEW_XCOM

AIRFLOW_3_1 = tuple(int(p) for p in AIRFLOW_VERSION.split(".")[:2] if p.isdigit()) >= (3, 1)
KEYS = (VIEW_XCOM, "return_value")
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


@dataclass
class Records:
    task_state: str | None  # None: no such task instance
    xcoms: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """The try is over: its Jobs change no more because of it (a retry starts a new picture)."""
        return self.task_state in FINISHED


def read_records(dag_id: str, run_id: str, task_id: str, map_index: int) -> Records:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.execute(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        ).first()
        if state is None:
            return Records(None)
        rows = session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key.in_(KEYS),
            )
        ).all()
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
    value = state[0]
    return Records(str(getattr(value, "value", value) or "none"), xcoms)

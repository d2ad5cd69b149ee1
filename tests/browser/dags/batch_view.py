"""What the Batch view's browser test watches: a 50-item group with two failing items, and a small
group whose Jobs are deleted at the end, so its view is what the task recorded.

The group's items hold until the test opens a gate: items 0-24 wait for ``<gate>/first``, items
25-49 for ``<gate>/second`` (the Pods mount the gate directory). The test opens them one at a time
while the page is open, so the counts it sees change (0, then 25, then 50) whatever the machine's
speed."""

import os

import pendulum
from airflow.sdk import DAG

from airflow_batchjob.operators.jobgroup import JobGroupOperator

NS = os.environ.get("BATCHJOB_TEST_NAMESPACE", "default")
GATE = os.environ.get("BATCHJOB_TEST_GATE", "/tmp")
FAILING = ("item-7", "item-33")  # one in each half
# Each item waits for its half's gate file; two exit 3 after a line on stderr (the log tail the
# view shows).
SCRIPT = (
    'n=${ITEM#item-}; if [ "$n" -lt 25 ]; then g=first; else g=second; fi; '
    'until [ -e "/gate/$g" ]; do sleep 0.5; done; echo "working on $ITEM"; '
    f'case "$ITEM" in {"|".join(FAILING)}) echo "$ITEM: bad input, giving up" >&2; exit 3;; esac; '
    'echo "{\\"n\\": $n}" > "$BATCHJOB_RESULT_FILE"'
)

with DAG(
    "batch_view",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
) as dag:
    JobGroupOperator(
        task_id="fifty",
        namespace=NS,
        image="busybox:1.36",
        items=[f"item-{i}" for i in range(50)],
        cmds=["sh", "-c", SCRIPT],
        volumes=[{"name": "gate", "hostPath": {"path": GATE, "type": "Directory"}}],
        volume_mounts=[{"name": "gate", "mountPath": "/gate", "readOnly": True}],
        # Room for the whole first half at once: with the second half held, the group then sits
        # at 25 done until the test opens the second gate.
        max_active_jobs=25,
        backoff_limit=0,
        defer_after=0,
    )
    JobGroupOperator(
        task_id="small",
        namespace=NS,
        image="busybox:1.36",
        items=["a", "b", "c"],
        cmds=["sh", "-c", 'echo "\\"done $ITEM\\"" > "$BATCHJOB_RESULT_FILE"'],
        delete_on_finish="always",
    )

"""Template expansion: one Job per work item from one template, labelled as a jobgroup."""

from _common import DEFAULT_ARGS, IMAGE, NAMESPACE, START
from airflow.sdk import DAG

from airflow_batchjob.operators.jobgroup import JobGroupOperator
from airflow_batchjob.sensors.jobgroup import JobGroupSensor

with DAG(
    "example_jobgroup",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Template expansion** (Kubernetes' "Parallel Processing using Expansions"): one Job per item,
    all labelled `jobgroup=<group>`. Items reach the Pod as the env var `ITEM` (never spliced into
    the spec's text). `max_active_jobs` bounds how many run at once; a retry re-runs only the
    items that failed. See them with `kubectl get jobs -l jobgroup=<group>`.
    """,
) as dag:
    process = JobGroupOperator(
        task_id="process",
        namespace=NAMESPACE,
        items=["apple", "banana", "cherry"],
        image=IMAGE,
        cmds=["sh", "-c", "echo Processing item $ITEM"],
        max_active_jobs=2,
    )
    # The same group watched by label, as a downstream DAG would.
    watch = JobGroupSensor(
        task_id="watch_group",
        namespace=NAMESPACE,
        label_selector="jobgroup={{ ti.xcom_pull(task_ids='process', key='group') }}",
        expected_jobs=3,
        timeout=600,
    )
    process >> watch

"""Plain Jobs: one Pod, a fixed completion count, and a sensor on a Job created elsewhere."""

from _common import DEFAULT_ARGS, IMAGE, NAMESPACE, START
from airflow.sdk import DAG

from airflow_batchjob.operators.job import BatchJobOperator
from airflow_batchjob.sensors.job import JobSensor

with DAG(
    "example_batchjob",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["batchjob", "example"],
    doc_md="""
    **Plain Jobs.** `BatchJobOperator` creates one Job per task instance (its name derives from
    dag, task, run and map index, so a retry adopts the Job it already created), waits with a
    watch in the triggerer, and returns the Job's outcome. On failure the task log shows each
    failed Pod's exit code and log tail. `JobSensor` waits on a Job this DAG did not create.
    """,
) as dag:
    hello = BatchJobOperator(
        task_id="hello",
        namespace=NAMESPACE,
        image=IMAGE,
        cmds=["sh", "-c", "echo hello from run $RUN_ID"],
        env={"RUN_ID": "{{ run_id }}"},
    )
    fan = BatchJobOperator(
        task_id="three_completions",
        namespace=NAMESPACE,
        image=IMAGE,
        cmds=["sh", "-c", "echo pod $HOSTNAME done"],
        completions=3,
        parallelism=2,
        delete_on_finish="on_success",
    )
    # A Job created by the `hello` task is waited on by name, as another DAG would.
    wait = JobSensor(
        task_id="wait_for_hello",
        namespace=NAMESPACE,
        job_name="{{ ti.xcom_pull(task_ids='hello', key='job_name') }}",
        condition="Complete",
        timeout=600,
    )
    hello >> [fan, wait]

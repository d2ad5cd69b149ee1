"""The in-Pod worker of the queue and Indexed patterns: it wraps the user's unchanged program.

Runs where Airflow is not installed, so nothing here (nor in what it imports) imports Airflow:
only the standard library, pika, redis, ``airflow_batchjob.queues`` and ``airflow_batchjob.core``.
"""

"""Task decorators the provider registers with Airflow (``task-decorators`` in the provider info)."""

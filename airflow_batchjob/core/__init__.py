"""Pure core of airflow-batchjob: naming, Job building/validation and status interpretation.

No Airflow imports and no network I/O here, so everything is unit-testable and reusable from the
operator, the trigger and the in-Pod worker alike. Import the modules themselves
(``airflow_batchjob.core.items`` ...): this package imports nothing, so the worker, which needs
only ``core.items``, does not pull in ``manifest`` (and PyYAML) with it.
"""

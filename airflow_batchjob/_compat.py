"""Names that moved between the oldest Airflow and cncf.kubernetes this provider supports and today's.

The floors are in ``pyproject.toml`` and tested by ``scripts/test.sh``'s floor lane. Each fallback
names the version that made it unnecessary, so it can go when the floor passes that version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the type checker reads: today's homes
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowOptionalProviderFeatureException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
else:
    try:
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowOptionalProviderFeatureException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    except ImportError:  # Airflow < 3.2: the task SDK did not define them yet
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowOptionalProviderFeatureException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow < 3.1
        from airflow.hooks.base import BaseHook

try:
    from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import (
        API_RETRIES,
        API_RETRY_WAIT_MAX,
        API_RETRY_WAIT_MIN,
    )
except ImportError:  # cncf.kubernetes < 10.11: the same settings, read the same way
    from airflow.configuration import conf

    API_RETRIES = conf.getint("workers", "api_retries", fallback=5)
    API_RETRY_WAIT_MIN = conf.getfloat("workers", "api_retry_wait_min", fallback=1)
    API_RETRY_WAIT_MAX = conf.getfloat("workers", "api_retry_wait_max", fallback=15)

__all__ = [
    "API_RETRIES",
    "API_RETRY_WAIT_MAX",
    "API_RETRY_WAIT_MIN",
    "AirflowException",
    "AirflowFailException",
    "AirflowOptionalProviderFeatureException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
]

"""``python -m airflow_batchjob.worker <mode> [options] -- PROGRAM [ARGS...]`` (see ``worker.cli``)."""

from __future__ import annotations

import sys

from airflow_batchjob.worker.cli import main

if __name__ == "__main__":
    sys.exit(main())

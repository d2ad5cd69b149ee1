"""The provider registers with Airflow and every module it declares imports."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_batchjob import get_provider_info


def test_every_declared_module_imports() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-batchjob"
    modules = [
        m
        for key in ("operators", "sensors", "triggers", "hooks")
        for entry in info[key]
        for m in entry["python-modules"]
    ]
    assert modules
    for module in modules:
        importlib.import_module(module)


def test_airflow_providers_list_shows_the_package(tmp_path: Path) -> None:
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run(
        [airflow, "providers", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "airflow-batchjob" in out

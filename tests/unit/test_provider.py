"""The provider registers with Airflow and every module it declares imports."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from airflow_batchjob import config, get_provider_info
from airflow_batchjob.config import OPTIONS
from airflow_batchjob.operators.job import BatchJobOperator


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


def _airflow(tmp_path: Path, *args: str, **env: str) -> str:
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__BATCHJOB__")}  # conftest's
    full = {**inherited, "AIRFLOW_HOME": str(tmp_path), **env}
    return subprocess.run([airflow, *args], env=full, capture_output=True, text=True, check=True).stdout


def test_airflow_lists_the_batchjob_section_with_its_documented_defaults(tmp_path: Path) -> None:
    listing = ["config", "list", "--section", "batchjob"]
    if "--show-values" in _airflow(tmp_path, *listing, "--help"):  # newer Airflow hides values without it
        listing.append("--show-values")
    out = _airflow(tmp_path, *listing)
    for name, option in OPTIONS.items():
        assert f"{name} = {option.default}" in out, (name, out[-3000:])
    # The deployment's value wins over the default, in the same listing and for the code.
    out = _airflow(tmp_path, *listing, AIRFLOW__BATCHJOB__API_CONCURRENCY="3")
    assert "api_concurrency = 3" in out


def test_settings_are_read_through_airflows_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.get("api_concurrency") == 16 and config.get("get_logs") is True
    monkeypatch.setenv("AIRFLOW__BATCHJOB__API_CONCURRENCY", "3")
    monkeypatch.setenv("AIRFLOW__BATCHJOB__GET_LOGS", "False")
    monkeypatch.setenv("AIRFLOW__BATCHJOB__MAX_LOG_LINES", "7")
    assert config.get("api_concurrency") == 3 and config.get("get_logs") is False
    op = BatchJobOperator(task_id="t", image="busybox", cmds=["true"])
    assert (op.get_logs, op.max_log_lines) == (False, 7)
    assert BatchJobOperator(task_id="u", image="busybox", cmds=["true"], get_logs=True).get_logs is True


def test_airflow_providers_get_shows_the_documentation_url(tmp_path: Path) -> None:
    # Airflow takes it from the installed metadata (pyproject's [project.urls] Documentation).
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    url = tomllib.loads(pyproject.read_text())["project"]["urls"]
    out = _airflow(tmp_path, "providers", "get", "airflow-batchjob", "--full", "-o", "json")
    assert url["Documentation"] in out


def test_the_rabbitmq_connection_types_are_registered_with_their_form() -> None:
    import inspect

    from airflow import providers_manager
    from airflow.providers_manager import ProvidersManager

    from airflow_batchjob.hooks.rabbitmq import RabbitMQHook

    manager = ProvidersManager()
    # Newer Airflow reads the form from provider info; older, from the hook (only with the FAB UI).
    form_in_provider_info = "ui-field-behaviour" in inspect.getsource(providers_manager)
    assert RabbitMQHook.get_ui_field_behaviour()["relabeling"]["schema"] == "Virtual host"
    for conn_type, hook in (("amqp", "RabbitMQHook"), ("amqps", "RabbitMQTLSHook")):
        info = manager.hooks[conn_type]
        assert info is not None and info.hook_class_name == f"airflow_batchjob.hooks.rabbitmq.{hook}"
        assert info.package_name == "airflow-batchjob"
        if form_in_provider_info:
            assert manager.field_behaviours[conn_type]["relabeling"]["schema"] == "Virtual host"

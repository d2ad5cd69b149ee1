"""docs/migration.rst is generated from the real signatures and lists every peer parameter."""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "migration.rst"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_migration", ROOT / "scripts" / "gen_migration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_peer_parameter_has_a_row() -> None:
    rows = set(re.findall(r"^   \* - ``(\w+)``$", DOC.read_text(encoding="utf-8"), re.M))
    missing = set(_generator().peer_parameters()) - rows
    assert not missing, f"docs/migration.rst lacks {sorted(missing)}: run python scripts/gen_migration.py"


def test_the_file_is_not_stale() -> None:
    text = DOC.read_text(encoding="utf-8")
    cncf = version("apache-airflow-providers-cncf-kubernetes")
    if f"cncf.kubernetes {cncf}'s" not in text:
        pytest.skip(f"docs/migration.rst was generated for another cncf.kubernetes than {cncf}")
    assert _generator().render() == text, "docs/migration.rst is stale: run python scripts/gen_migration.py"


def test_it_is_valid_restructuredtext() -> None:
    docutils = pytest.importorskip("docutils.core")
    import io

    errors = io.StringIO()
    docutils.publish_doctree(
        DOC.read_text(encoding="utf-8"), settings_overrides={"warning_stream": errors, "report_level": 2}
    )
    assert errors.getvalue() == ""

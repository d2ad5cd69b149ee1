"""What the Go worker must hold as the Python worker does, read from both sources (pure)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from airflow_batchjob.core import items, results
from airflow_batchjob.queues import redis_lua
from airflow_batchjob.worker import run

GO = Path(__file__).resolve().parents[2] / "injector"


def go_source(name: str) -> str:
    return (GO / name).read_text()


def test_lua_scripts_are_the_same_text() -> None:
    """The same scripts, so both workers run (and Redis caches) the same SHA."""
    found = dict(re.findall(r"\blua(\w+) = `(.*?)`", go_source("lua.go"), re.S))
    assert found == {
        n.title(): getattr(redis_lua, n) for n in ("LEASE", "RENEW", "COMPLETE", "FAIL", "RELEASE", "RECLAIM")
    }


def go_set(source: str, var: str) -> set[str]:
    body = re.search(rf"var {var} = map\[string\]bool\{{(.*?)\}}", source, re.S)
    assert body is not None, var
    return set(re.findall(r'"([^"]+)": true', body.group(1)))


def test_environment_rules_are_the_same() -> None:
    src = go_source("run.go")
    assert go_set(src, "unsafeVars") == set(items.UNSAFE_VARS)
    assert items.UNSAFE_PREFIXES == ("LD_", "DYLD_") and '"LD_"' in src and '"DYLD_"' in src
    assert go_set(src, "secretVars") == set(run.SECRET_VARS)
    assert go_set(src, "reservedVars") == set(run.RESERVED_VARS)
    for name, value in [
        ("envValueLimit", "128*1024 - 64"),
        ("terminationLogLimit", str(run.TERMINATION_LOG_LIMIT)),
        ("exitBadResult", str(run.EXIT_BAD_RESULT)),
        ("resultLimit", str(results.MAX_RESULT_BYTES)),
        ("resultEnv", f'"{results.RESULT_ENV}"'),
    ]:
        assert re.search(rf"\b{name}\s*=\s*{re.escape(value)}", src), name
    assert run.ENV_VALUE_LIMIT == 128 * 1024 - 64


def test_go_sources_are_gofmt_clean() -> None:
    gofmt = shutil.which("gofmt") or str(Path(shutil.which("go") or "go").parent / "gofmt")
    done = subprocess.run([gofmt, "-l", "."], cwd=GO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr

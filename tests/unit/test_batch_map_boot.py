"""``worker/batch_map_boot.py``, run as a Pod runs it: a local ``python3`` on an items directory.

The directory holds what the operator's ConfigMaps hold (``core.batchmap.build_payload``'s files
and one JSON file per index); the result or error lands in the file ``BATCHJOB_RESULT_FILE`` names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_batchjob.core.batchmap import BOOT_KEY, PAYLOAD_KEY, build_payload, function_source
from airflow_batchjob.worker import batch_map_boot as boot


def triple(item: Any, extra: int = 0, *, sep: str = "-") -> Any:
    if item == "raise":
        raise ValueError("asked to raise")
    if item == "big":
        return "x" * 5000
    if item == "set":
        return {1, 2}
    if item == "exit":
        import sys

        sys.exit(4)
    print(f"tripling {item!r}")
    return sep.join([str(item)] * 3) if isinstance(item, str) else item * 3 + extra


def run_boot(
    tmp_path: Path, items: list[Any], index: int, payload: dict[str, str] | None = None, **env: str
) -> tuple[int, Any, str]:
    """Run the bootstrap on item ``index``: (exit code, what it wrote as the message, stderr)."""
    d = tmp_path / "items"
    d.mkdir(exist_ok=True)
    for key, text in (payload or build_payload(function_source(triple), [1], {"sep": "+"}, "3.11.7")).items():
        (d / key).write_text(text)
    for i, item in enumerate(items):
        (d / str(i)).write_text(json.dumps(item))
    message = tmp_path / "termination-log"
    message.write_bytes(b"")
    full = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "BATCHJOB_RESULT_FILE": str(message), **env}
    proc = subprocess.run(
        [sys.executable, "-u", str(d / BOOT_KEY), str(d)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = message.read_text()
    return proc.returncode, json.loads(text) if text else None, proc.stdout + proc.stderr


def test_the_item_is_called_with_the_constant_arguments(tmp_path: Path) -> None:
    code, result, out = run_boot(tmp_path, [4, "ab", {"k": [1]}], 0)
    assert (code, result) == (0, 13) and "tripling 4" in out
    assert run_boot(tmp_path, [4, "ab"], 1)[:2] == (0, "ab+ab+ab")
    assert run_boot(tmp_path, [None, "5"], 1)[:2] == (0, "5+5+5")  # "5" stays a string


def test_an_exception_is_reported_with_type_message_and_traceback(tmp_path: Path) -> None:
    code, doc, out = run_boot(tmp_path, ["raise"], 0)
    assert code == boot.EXIT_RAISED
    err = doc[boot.ERROR_KEY]
    assert err["stage"] == "call" and err["type"] == "ValueError"
    assert err["message"] == "ValueError: asked to raise"
    line = function_source(triple).first_line + 2  # the raise, as numbered in this file
    assert f'File "test_batch_map_boot.py", line {line}, in triple' in err["traceback"]
    assert 'raise ValueError("asked to raise")' in err["traceback"]  # source lines shown
    assert "batch-map-boot.py" not in err["traceback"]  # the bootstrap's own frame is cut
    assert "Traceback (most recent call last)" in out
    assert 'batch_map: the function raised on item "raise": ValueError: asked to raise' in out
    code, doc, _ = run_boot(tmp_path, ["exit"], 0)
    assert code == 1 and doc[boot.ERROR_KEY]["type"] == "SystemExit"


def test_a_result_that_cannot_travel_fails_the_item_naming_the_limit(tmp_path: Path) -> None:
    code, doc, out = run_boot(tmp_path, ["big"], 0)
    assert code == boot.EXIT_RESULT
    assert doc[boot.ERROR_KEY]["stage"] == "result"
    assert "5002 bytes as JSON, over the 4095-byte limit" in doc[boot.ERROR_KEY]["message"]
    assert "return a reference" in out
    code, doc, _ = run_boot(tmp_path, ["set"], 0)
    assert code == boot.EXIT_RESULT and "returned a set, which is not JSON" in doc[boot.ERROR_KEY]["message"]


def test_exactly_at_the_limit(tmp_path: Path) -> None:
    assert boot.encode_result("x" * 4093, 4096) == (b'"' + b"x" * 4093 + b'"', None)
    data, why = boot.encode_result("x" * 4094, 4096)
    assert data is None and why is not None and "4096 bytes as JSON, over the 4095-byte limit" in why


def test_source_the_image_python_cannot_compile_names_both_versions(tmp_path: Path) -> None:
    newer = {
        "name": "f",
        "source": "def f[T](item: T) -> T:\n    return item\n",  # Python 3.12 syntax (PEP 695)
        "filename": "dag.py",
        "first_line": 7,
        "built_with": "3.13.1",
        "args": [],
        "kwargs": {},
    }
    files = {PAYLOAD_KEY: json.dumps(newer), BOOT_KEY: Path(boot.__file__).read_text()}
    code, doc, out = run_boot(tmp_path, [1], 0, payload=files)
    here = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 12):
        assert code == 0
        return
    assert code == boot.EXIT_SETUP
    message = doc[boot.ERROR_KEY]["message"]
    assert f"does not compile on the image's Python {here} (the DAG was parsed by Python 3.13.1)" in message
    assert "line 7" in message and "use an image whose Python is 3.13 or newer" in message
    assert "batch_map: the function f does not compile" in out


def test_a_python_too_old_is_named_with_the_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "termination-log"
    code = boot.main([str(tmp_path)], {"BATCHJOB_RESULT_FILE": str(message)}, info=(3, 8, 10, "final", 0))
    assert code == boot.EXIT_SETUP
    err = json.loads(message.read_text())[boot.ERROR_KEY]
    assert err["stage"] == "setup" and err["python"] == "3.8.10"
    assert err["message"].startswith(
        "the image's Python is 3.8.10; @task.batch_map needs Python 3.9 or newer"
    )
    assert "python_command" in capsys.readouterr().err
    assert boot.too_old((3, 9, 0)) is None and boot.too_old((2, 7, 18)) is not None


def test_the_bootstrap_parses_on_old_pythons() -> None:
    """No f-strings, annotations or other newer syntax: a too-old Python must get to its message."""
    import ast

    tree = ast.parse(Path(boot.__file__).read_text())
    newer = (ast.JoinedStr, ast.AnnAssign, ast.NamedExpr, ast.AsyncFunctionDef, ast.Await)
    assert not [type(n).__name__ for n in ast.walk(tree) if isinstance(n, newer)]
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assert fn.returns is None and not fn.args.kwonlyargs and not fn.args.posonlyargs, fn.name
        assert all(a.annotation is None for a in fn.args.args), fn.name


def test_setup_problems_exit_3(tmp_path: Path) -> None:
    code, doc, _ = run_boot(tmp_path, [1], 0, JOB_COMPLETION_INDEX="")
    assert code == boot.EXIT_SETUP and "Indexed Job" in doc[boot.ERROR_KEY]["message"]
    code, doc, _ = run_boot(tmp_path, [1], 5)
    assert code == boot.EXIT_SETUP and "cannot read the function or item 5" in doc[boot.ERROR_KEY]["message"]


def test_unevaluated_annotations_and_imports_inside(tmp_path: Path) -> None:
    payload = {
        "name": "g",
        "source": "def g(item: NotInThePod) -> AlsoMissing:\n    import json\n    return json.dumps(item)\n",
        "built_with": "3.11.7",
    }
    files = {PAYLOAD_KEY: json.dumps(payload), BOOT_KEY: Path(boot.__file__).read_text()}
    assert run_boot(tmp_path, [[1, 2]], 0, payload=files)[:2] == (0, "[1, 2]")


def test_an_error_message_is_cut_to_the_termination_message() -> None:
    doc = {boot.ERROR_KEY: {"message": "m" * 9000, "traceback": "t" * 20000 + "THE END", "stage": "call"}}
    data = boot.fit(doc)
    assert len(data) < boot.MESSAGE_LIMIT
    err = json.loads(data)[boot.ERROR_KEY]
    assert err["message"].startswith("mmm") and err["stage"] == "call"
    assert err["traceback"] is None or err["traceback"].endswith("THE END")
    small = boot.fit({boot.ERROR_KEY: {"message": "short", "traceback": "t" * 3000 + "END"}})
    assert json.loads(small)[boot.ERROR_KEY]["traceback"].endswith("END")

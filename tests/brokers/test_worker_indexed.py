"""The ``indexed`` worker mode: item ``DIR/$JOB_COMPLETION_INDEX`` reaches the program byte for byte."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import WORKER, pod_environ

pytestmark = pytest.mark.cluster

HOSTILE = [
    "it's \"quoted\" and 'single'",
    "$(rm -rf /)",
    "`touch /tmp/pwned` ; rm -rf ~ && echo pwned | sh",
    "line one\nline two\n\nlast, no newline",
    "trailing newline\n",
    "ünïcødé ☃ 🚀 中文 \u202e",
    "-n",
    "back\\slash \\n not a newline, tab\there",
    "  spaces  ",
    '{"first-name": "Ada", "n": 3, "ok": true, "tags": ["x"], "ld_preload": "/evil.so", "path": "/nowhere"}',
    "${HOME} $$ $(VAR) %s %n",
]

# Records what the program received: stdin and the environment, as bytes (base64), to a file.
RECORD = r"""
import base64, json, os, sys
data = sys.stdin.buffer.read()
env = os.environb
keys = [b"ITEM", b"ITEM_INDEX", b"ITEM_FILE", b"FIRST_NAME", b"N", b"OK", b"TAGS", b"LD_PRELOAD", b"PATH"]
out = {"stdin": base64.b64encode(data).decode()}
out.update({k.decode(): base64.b64encode(env[k]).decode() for k in keys if k in env})
with open(os.path.join(os.environ["OUT"], os.environ["ITEM_INDEX"] + ".json"), "w") as f:
    json.dump(out, f)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


def run_index(
    items: Path, index: str | None, out: Path, program: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    full = {**pod_environ(), "OUT": str(out), **env}
    full.pop("JOB_COMPLETION_INDEX", None)
    if index is not None:
        full["JOB_COMPLETION_INDEX"] = index
    cmd = [*WORKER, "indexed", "--items-dir", str(items), "--termination-log", str(out / f"term-{index}")]
    return subprocess.run(
        [*cmd, "--", *(program or [sys.executable, "-c", RECORD])], env=full, capture_output=True, timeout=60
    )


@pytest.fixture
def items(tmp_path: Path) -> Path:
    d = tmp_path / "items"
    d.mkdir()
    for i, text in enumerate(HOSTILE):
        (d / str(i)).write_bytes(text.encode())
    return d


def received(out: Path, index: int) -> dict[str, bytes]:
    doc = json.loads((out / f"{index}.json").read_text())
    return {k: base64.b64decode(v) for k, v in doc.items()}


def test_hostile_items_arrive_byte_exact(items: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for i, text in enumerate(HOSTILE):
        proc = run_index(items, str(i), out)
        assert proc.returncode == 0, proc.stderr.decode()
        got = received(out, i)
        assert got["stdin"] == text.encode(), f"item {i} on stdin"
        assert got["ITEM"] == text.encode(), f"item {i} in ITEM"
        assert got["ITEM_INDEX"] == str(i).encode()
        assert got["ITEM_FILE"] == str(items / str(i)).encode()
        assert json.loads((out / f"term-{i}").read_text()) == {"mode": "indexed", "index": i, "exit_code": 0}
    assert not Path("/tmp/pwned").exists()


def test_object_item_gives_one_variable_per_scalar_key(items: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    index = next(i for i, t in enumerate(HOSTILE) if t.startswith("{"))
    assert run_index(items, str(index), out).returncode == 0
    got = received(out, index)
    assert (got["FIRST_NAME"], got["N"], got["OK"]) == (b"Ada", b"3", b"true")
    assert "TAGS" not in got  # not a scalar: it stays in ITEM
    assert "LD_PRELOAD" not in got  # an item cannot make the program load code
    assert got["PATH"] == os.environ["PATH"].encode()  # nor replace what the Pod already sets


def test_exit_code_follows_the_program(items: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = run_index(items, "1", out, EXIT_WITH="7")
    assert proc.returncode == 7
    assert json.loads((out / "term-1").read_text())["exit_code"] == 7
    killed = run_index(items, "2", out, ["sh", "-c", "kill -KILL $$"])
    assert killed.returncode == 128 + 9
    loud = run_index(items, "3", out, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 0"])
    assert loud.returncode == 0 and loud.stdout == b"to-stdout\n"  # output passes through untouched
    assert b"to-stderr\n" in loud.stderr


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (None, "JOB_COMPLETION_INDEX is not set"),
        ("", "JOB_COMPLETION_INDEX is not set"),
        ("-1", "not a non-negative integer"),
        ("1x", "not a non-negative integer"),
        ("99", "no item file"),
    ],
)
def test_missing_index_or_file_is_a_clear_error(
    items: Path, tmp_path: Path, index: str | None, message: str
) -> None:
    proc = run_index(items, index, tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()
    assert not list(tmp_path.glob("*.json"))  # the program never ran

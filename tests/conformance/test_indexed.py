"""The ``indexed`` mode of every worker: the same item, environment, exit codes, results, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brokers import pod_environ, wait_for

from . import Impl, summary_of

ITEMS: list[bytes] = [
    b"it's \"quoted\" and 'single'",
    b"$(rm -rf /) `touch /tmp/pwned` ${HOME} $$ %s",
    b"line one\nline two\n\nlast, no newline",
    "ünïcødé ☃ 🚀 中文 \u202e".encode(),
    b"  spaces  ",
    b"-n",
    b"",
    b"not utf-8: \xff\xfe \xc3(",
    b"nul \x00 inside",
    b'{"first-name": "Ada", "n": 3, "ok": true, "tags": ["x"], "ld_preload": "/evil.so", "path": "/nowhere"}',
    b'{"big": 123456789012345678901234567890, "neg0": -0, "f": 1e16, "g": 1.5e-7, "h": 2.50, "i": 1E2}',
    b'{"a-b": "first", "a_b": "second", "dup": 1, "dup": 2, "\xc3\xa9t\xc3\xa9": "accent", "9x": "digit"}',
    b'{"nan": NaN, "inf": -Infinity, "esc": "tab\\there \\u00e9 \\ud83d\\ude80", "nested": {"x": 1}}',
    b'  \n {"space": "before"}',
    b'{"HOME": "/evil", "ITEM": "no", "ITEM_ID": "no", "BASH_ENV": "/evil", "LD_X": "no", "ok": "yes"}',
    b"[1, 2, 3]",
    b'{"broken": ',
    ("x" * (128 * 1024)).encode(),  # too big for ITEM: stdin only
]

# What the program received, as JSON on stdout: stdin and the environment (the result file's
# random path left out), all as latin-1 text so any bytes survive.
DUMP = r"""
import json, os, sys
env = {k.decode("latin-1"): v.decode("latin-1") for k, v in os.environb.items()}
env.pop("BATCHJOB_RESULT_FILE", None)
sys.stdout.write(json.dumps({"stdin": sys.stdin.buffer.read().decode("latin-1"), "env": env}, sort_keys=True))
"""


@pytest.fixture
def items(tmp_path: Path) -> Path:
    d = tmp_path / "items"
    d.mkdir()
    for i, data in enumerate(ITEMS):
        (d / str(i)).write_bytes(data)
    return d


def run_index(
    impl: Impl, items: Path, index: str | None, tmp: Path, program: list[str], **env: str
) -> tuple[subprocess.CompletedProcess[bytes], dict]:
    summary = tmp / f"{impl.name}-{index}.json"
    full = dict(env)
    if index is not None:
        full["JOB_COMPLETION_INDEX"] = index
    done = impl.run("indexed", ["--items-dir", str(items)], program, full, summary)
    return done, summary_of(summary)


def test_every_item_reaches_the_program_identically(
    both: tuple[Impl, Impl], items: Path, tmp_path: Path
) -> None:
    """Stdin, ITEM, ITEM_INDEX, ITEM_FILE and the object keys' variables, byte for byte, as
    the Python worker gives them; the same summary and the same messages."""
    for i in range(len(ITEMS)):
        seen = [run_index(impl, items, str(i), tmp_path, [sys.executable, "-c", DUMP]) for impl in both]
        (py, py_summary), (go, go_summary) = seen
        assert py.returncode == 0, py.stderr
        assert go.returncode == py.returncode, (i, go.stderr)
        assert json.loads(go.stdout) == json.loads(py.stdout), f"item {i}: the program saw something else"
        assert go_summary == py_summary == {"mode": "indexed", "index": i, "exit_code": 0}
        assert go.stderr == py.stderr, f"item {i}"
    got = json.loads(py.stdout)  # the last item: too big for ITEM, on stdin only
    assert "ITEM" not in got["env"] and len(got["stdin"]) == 128 * 1024
    assert b"batchjob-worker: the item (131072 characters) cannot travel in ITEM" in go.stderr


RESULTS = {
    "value": '{"rows": 10, "f": 1.0, "u": "\u00fc", "big": 1e400, "l": [1, -0, 2.5e-7]}',
    "spaces": "  \n",
    "null": "null",
    "number": "42\n",
    "unicode": json.dumps({"k": "中文 🚀" * 20}, ensure_ascii=False),
    "too-big": "[" + "1," * 2100 + "1]",
    "too-big-with-summary": json.dumps("y" * 4040),
}


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_results_in_the_summary_identically(
    both: tuple[Impl, Impl], items: Path, tmp_path: Path, name: str
) -> None:
    """What the program writes to $BATCHJOB_RESULT_FILE: the same summary (an unusable result
    fails the item with 65), the same messages."""
    (tmp_path / "r").write_text(RESULTS[name])
    program = ["sh", "-c", f'cat {tmp_path / "r"} > "$BATCHJOB_RESULT_FILE"']
    (py, py_summary), (go, go_summary) = (run_index(impl, items, "0", tmp_path, program) for impl in both)
    assert (go.returncode, go_summary, go.stderr) == (py.returncode, py_summary, py.stderr)
    if name.startswith("too-big"):
        assert py.returncode == 65 and "error" in py_summary
    else:
        assert py.returncode == 0 and "error" not in py_summary


def test_a_result_that_is_not_json_fails_the_item(worker: Impl, items: Path, tmp_path: Path) -> None:
    program = ["sh", "-c", 'echo "n=1" > "$BATCHJOB_RESULT_FILE"']
    done, summary = run_index(worker, items, "2", tmp_path, program)
    assert done.returncode == 65
    assert summary["exit_code"] == 65 and summary["error"].startswith(
        "item 2: its result ($BATCHJOB_RESULT_FILE) is not JSON"
    )
    assert done.stderr.startswith(b"batchjob-worker: item 2: its result")


def test_result_file_goes_to_batchjob_tmpdir(worker: Impl, items: Path, tmp_path: Path) -> None:
    """A read-only root filesystem: the injection points BATCHJOB_TMPDIR at a writable volume."""
    d = tmp_path / "writable"
    d.mkdir()
    program = ["sh", "-c", 'echo "$BATCHJOB_RESULT_FILE"; echo 7 > "$BATCHJOB_RESULT_FILE"']
    done, summary = run_index(worker, items, "0", tmp_path, program, BATCHJOB_TMPDIR=str(d))
    assert done.stdout.decode().startswith(f"{d}/batchjob-result-")
    assert summary["result"] == 7 and list(d.iterdir()) == []  # read, then deleted


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 3", 3), ("exit 255", 255), ("kill -9 $$", 137), ("kill -15 $$", 143)],
)
def test_exit_code_follows_the_program(
    worker: Impl, items: Path, tmp_path: Path, script: str, code: int
) -> None:
    done, summary = run_index(worker, items, "1", tmp_path, ["sh", "-c", script])
    assert done.returncode == code
    assert summary == {"mode": "indexed", "index": 1, "exit_code": code}


@pytest.mark.parametrize(
    ("index", "program", "code", "message"),
    [
        (None, ["true"], 2, "JOB_COMPLETION_INDEX is not set"),
        ("", ["true"], 2, "JOB_COMPLETION_INDEX is not set"),
        ("-1", ["true"], 2, "JOB_COMPLETION_INDEX='-1' is not a non-negative integer"),
        ("99", ["true"], 2, "no item file"),
        ("0", ["no-such-program-here"], 127, "program 'no-such-program-here' not found on PATH"),
        ("0", ["/nonexistent/prog"], 127, "program '/nonexistent/prog' not found"),
        ("0", ["/proc/self/status"], 126, "program '/proc/self/status' is not executable"),
    ],
)
def test_setup_errors(
    both: tuple[Impl, Impl],
    items: Path,
    tmp_path: Path,
    index: str | None,
    program: list[str],
    code: int,
    message: str,
) -> None:
    """The same exit code and the same message, prefixed ``batchjob-worker:``, from both."""
    outs = [run_index(impl, items, index, tmp_path, program)[0] for impl in both]
    for done in outs:
        assert done.returncode == code
        assert done.stderr.startswith(b"batchjob-worker: ") and message.encode() in done.stderr
    assert outs[0].stderr == outs[1].stderr


@pytest.mark.parametrize(
    "args",
    [
        ["indexed", "--items-dir", "/x"],  # no "--"
        ["indexed", "--items-dir", "/x", "--"],  # no program
        ["indexed", "--", "true"],  # no --items-dir
        ["sqs", "--", "true"],  # no such mode
        ["redis", "--queue", "q", "--max-attempts", "0", "--", "true"],
        ["redis", "--queue", "q", "--lease-seconds", "x", "--", "true"],
        ["redis", "--queue", "q", "--poll-seconds", "-1", "--", "true"],
        ["redis", "--queue", "q", "--bogus", "1", "--", "true"],
    ],
)
def test_usage_errors_exit_2(worker: Impl, args: list[str]) -> None:
    done = subprocess.run([*worker.command, *args], env=pod_environ(), capture_output=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(b"batchjob-worker: ")


def test_options_as_argparse_takes_them(worker: Impl, items: Path, tmp_path: Path) -> None:
    """``--opt=value`` and an unambiguous prefix, as argparse allows."""
    env = {**pod_environ(), "JOB_COMPLETION_INDEX": "4"}
    summary = tmp_path / "s.json"
    cmd = [*worker.command, "indexed", f"--items={items}", "--termination-log", str(summary), "--", "cat"]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout == ITEMS[4]


def test_sigterm_is_forwarded_and_the_exit_code_follows(worker: Impl, items: Path, tmp_path: Path) -> None:
    """Pod deletion: the worker passes SIGTERM on; a program that traps it decides the exit code."""
    flag = tmp_path / "started"
    script = f'trap "echo got-term; exit 7" TERM; touch {flag}; while :; do sleep 0.1; done'
    summary = tmp_path / "s.json"
    cmd = [*worker.command, "indexed", "--items-dir", str(items), "--termination-log", str(summary), "--"]
    proc = subprocess.Popen(
        [*cmd, "sh", "-c", script],
        env={**pod_environ(), "JOB_COMPLETION_INDEX": "0"},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(flag.exists, what="the program to start")
        os.kill(proc.pid, signal.SIGTERM)  # the worker only, as the kubelet signals PID 1
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 7 and out == b"got-term\n"
    assert summary_of(summary)["exit_code"] == 7


def test_sigterm_to_a_program_that_does_not_trap_it_gives_143(
    worker: Impl, items: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "s.json"
    cmd = [*worker.command, "indexed", "--items-dir", str(items), "--termination-log", str(summary), "--"]
    proc = subprocess.Popen(
        [*cmd, "sleep", "300"], env={**pod_environ(), "JOB_COMPLETION_INDEX": "0"}, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not _has_child(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert summary_of(summary) == {"mode": "indexed", "index": 0, "exit_code": 143}


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def test_default_termination_log_only_if_writable(worker: Impl, items: Path, tmp_path: Path) -> None:
    """An explicit path is created; with none (and no /dev/termination-log) nothing is written."""
    target = tmp_path / "sub-created.json"
    env = {**pod_environ(), "JOB_COMPLETION_INDEX": "0", "BATCHJOB_TERMINATION_LOG": str(target)}
    cmd = [*worker.command, "indexed", "--items-dir", str(items), "--", "true"]
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    assert json.loads(target.read_text()) == {"mode": "indexed", "index": 0, "exit_code": 0}

"""The in-Pod worker without brokers: command line, the program's environment, envelopes, no Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_batchjob import queues
from airflow_batchjob.queues.envelope import resp_bulk
from airflow_batchjob.worker.cli import Options, UsageError, parse_args
from airflow_batchjob.worker.run import ENV_VALUE_LIMIT, check_program, program_env

WORKER = [sys.executable, "-m", "airflow_batchjob.worker"]


# -- command line ----------------------------------------------------------------------------


def test_redis_options_and_defaults() -> None:
    opts = parse_args(["redis", "--queue", "q1", "--", "python", "work.py", "--flag", "--"])
    assert opts == Options(
        mode="redis",
        program=["python", "work.py", "--flag", "--"],
        queue="q1",
        max_attempts=3,
        lease_seconds=30,
        poll_seconds=1.0,
        termination_log=os.environ.get("BATCHJOB_TERMINATION_LOG"),
    )
    opts = parse_args(["redis", "--queue", "q", "--lease-seconds", "5", "--max-attempts", "1", "--", "cat"])
    assert (opts.lease_seconds, opts.max_attempts) == (5, 1)


def test_rabbitmq_and_indexed_options() -> None:
    opts = parse_args(["rabbitmq", "--queue", "jobs", "--max-attempts", "5", "--", "rev"])
    assert (opts.mode, opts.queue, opts.max_attempts, opts.program) == ("rabbitmq", "jobs", 5, ["rev"])
    opts = parse_args(
        ["indexed", "--items-dir", "/batchjob/items", "--termination-log", "", "--", "sh", "-c", "x"]
    )
    assert (opts.mode, opts.items_dir, opts.program, opts.termination_log) == (
        "indexed",
        "/batchjob/items",
        ["sh", "-c", "x"],
        "",
    )


def test_termination_log_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHJOB_TERMINATION_LOG", "/tmp/summary.json")
    assert parse_args(["indexed", "--items-dir", "d", "--", "cat"]).termination_log == "/tmp/summary.json"
    opts = parse_args(["indexed", "--items-dir", "d", "--termination-log", "/x", "--", "cat"])
    assert opts.termination_log == "/x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["redis", "--queue", "q"], "give the program after '--'"),
        (["redis", "--queue", "q", "--"], "the program after '--' is empty"),
        (["redis", "--", "cat"], "--queue"),
        (["indexed", "--", "cat"], "--items-dir"),
        (["kafka", "--queue", "q", "--", "cat"], "invalid choice"),
        (["redis", "--queue", "q", "--lease-seconds", "0", "--", "cat"], "must be at least 1"),
        (["redis", "--queue", "q", "--max-attempts", "x", "--", "cat"], "not an integer"),
        (["redis", "--queue", "q", "--poll-seconds", "0", "--", "cat"], "must be above 0"),
        (["rabbitmq", "--queue", "q", "--lease-seconds", "3", "--", "cat"], "unrecognized arguments"),
    ],
)
def test_bad_command_lines_say_what_to_fix(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


def test_check_program(tmp_path: Path) -> None:
    assert check_program(["sh", "-c", "true"]) is None
    assert "not found on PATH" in (check_program(["no-such-program-xyz"]) or "")
    assert "not found" in (check_program([str(tmp_path / "missing")]) or "")
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert "not executable" in (check_program([str(script)]) or "")
    script.chmod(0o755)
    assert check_program([str(script)]) is None


# -- the program's environment ---------------------------------------------------------------


BASE = {"PATH": "/usr/bin:/bin", "HOME": "/root", "BATCHJOB_AMQP_URL": "amqp://u:secret@h/", "X": "1"}


def test_env_has_the_item_and_no_broker_secret() -> None:
    env = program_env("apple", {"ITEM_ID": "abc"}, base=BASE)
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/root", "X": "1", "ITEM": "apple", "ITEM_ID": "abc"}
    env = program_env("x", base={**BASE, "BATCHJOB_REDIS_URL": "redis://:secret@h:1/0"})
    assert not any("secret" in v for v in env.values())


def test_object_items_give_one_variable_per_scalar_key() -> None:
    text = json.dumps(
        {
            "first-name": "Ada",
            "n": 3,
            "ratio": 0.5,
            "ok": False,
            "none": None,
            "tags": ["a"],
            "nested": {"a": 1},
            "9lives": "x",
            "item": "not ITEM",
            "item_id": "not ITEM_ID",
            "path": "/nowhere",
            "home": "/elsewhere",
            "ld_preload": "/evil.so",
            "pythonpath": "/evil",
            "bash-env": "/evil.sh",
            "x": "2",
        }
    )
    env = program_env(text, {"ITEM_ID": "id1"}, base=BASE)
    assert env["ITEM"] == text and env["ITEM_ID"] == "id1"
    assert (env["FIRST_NAME"], env["N"], env["RATIO"], env["OK"], env["NONE"]) == (
        "Ada",
        "3",
        "0.5",
        "false",
        "null",
    )
    for name in ("TAGS", "NESTED", "9LIVES", "LD_PRELOAD", "PYTHONPATH", "BASH_ENV"):
        assert name not in env
    assert (env["PATH"], env["HOME"], env["X"]) == ("/usr/bin:/bin", "/root", "1")  # the Pod's own win


def test_non_object_json_and_broken_json_stay_plain() -> None:
    for text in ("[1, 2]", "7", '"quoted"', "{not json", "{}"):
        env = program_env(text, base={})
        assert env == {"ITEM": text}


def test_items_that_cannot_travel_in_env_still_reach_stdin_only() -> None:
    big = "x" * (ENV_VALUE_LIMIT + 1)
    assert "ITEM" not in program_env(big, base={})
    assert "ITEM" not in program_env("a\x00b", base={})
    assert program_env("x" * ENV_VALUE_LIMIT, base={})["ITEM"] == "x" * ENV_VALUE_LIMIT


# -- envelopes (shared by the pre-fill and the worker) ---------------------------------------


@given(st.lists(st.text(), max_size=30))
def test_fast_envelopes_match_the_reference(texts: list[str]) -> None:
    texts = [t.encode("utf-8", "replace").decode() for t in texts]  # no lone surrogates: not UTF-8
    assert queues.encode_envelopes(texts, start=5) == [
        queues.make_envelope(5 + i, t) for i, t in enumerate(texts)
    ]
    bulk = resp_bulk(texts, 5)
    expected = b"".join(b"$%d\r\n%s\r\n" % (len(e), e) for e in queues.encode_envelopes(texts, start=5))
    assert bulk == expected
    for i, t in enumerate(texts):
        env = queues.parse_envelope(queues.make_envelope(i, t))
        assert (env.id, env.item) == (queues.item_id(i, t), t)


def test_ids_are_stable_and_positional() -> None:
    assert queues.item_id(0, "a") == queues.item_id(0, "a") != queues.item_id(1, "a")
    assert len(queues.item_id(0, "a")) == 16
    assert queues.fingerprint(["a", "b"]) != queues.fingerprint(["ab"]) != queues.fingerprint(["a\nb"])
    assert queues.fingerprint(["a", "b"]) != queues.fingerprint(["b", "a"])
    assert queues.fingerprint([]) != queues.fingerprint([""])


def test_messages_that_are_not_envelopes_are_the_item() -> None:
    for raw in (b"plain text", b'{"id": 1, "item": "x"}', b"\xff\xfe raw bytes", b'["a"]'):
        env = queues.parse_envelope(raw)
        assert env.item_bytes == raw and env.id.startswith("raw-")


def test_redact_url() -> None:
    assert queues.redact_url("amqp://user:s3cret@host:5672/%2F") == "amqp://user:***@host:5672/%2F"
    assert queues.redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert queues.redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert queues.redact_url("amqp://u:p%40ss@[::1]:5672/") == "amqp://u:***@[::1]:5672/"


# -- as a process ----------------------------------------------------------------------------


def test_worker_imports_only_what_its_image_has() -> None:
    # The worker image has only the standard library, pika and redis: block what it must not need.
    code = (
        "import sys\n"
        "sys.modules.update({m: None for m in ('airflow', 'yaml', 'kubernetes', 'kubernetes_asyncio')})\n"
        "import airflow_batchjob.worker.__main__, airflow_batchjob.worker.cli\n"
        "import airflow_batchjob.worker.redis_mode, airflow_batchjob.worker.rabbitmq_mode\n"
        "import airflow_batchjob.worker.indexed_mode, airflow_batchjob.queues\n"
        "bad = sorted(m for m, mod in sys.modules.items() if mod and m.split('.')[0] == 'airflow')\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["redis", "--queue", "q"], {}, 2, "give the program after '--'"),
        (["redis", "--queue", "q", "--", "no-such-program-xyz"], {}, 127, "not found on PATH"),
        (
            ["redis", "--queue", "q", "--", "cat"],
            {"BATCHJOB_REDIS_URL": ""},
            2,
            "BATCHJOB_REDIS_URL is not set",
        ),
        (
            ["rabbitmq", "--queue", "q", "--", "cat"],
            {"BATCHJOB_AMQP_URL": ""},
            2,
            "BATCHJOB_AMQP_URL is not set",
        ),
        (
            ["indexed", "--items-dir", "/nonexistent", "--", "cat"],
            {"JOB_COMPLETION_INDEX": "0"},
            2,
            "no item file",
        ),
    ],
)
def test_worker_exit_codes_for_setup_errors(
    argv: list[str], env: dict[str, str], code: int, message: str
) -> None:
    full = {**os.environ, "BATCHJOB_TERMINATION_LOG": "", **env}
    proc = subprocess.run([*WORKER, *argv], env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr

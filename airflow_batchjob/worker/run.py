"""Running the user's unchanged program on one item, the way ``amqp-consume`` does.

The item goes to the program's stdin and to ``ITEM`` (plus one variable per scalar key of an
object item); stdout and stderr pass through; SIGTERM (Pod deletion) is forwarded to the program.
Standard library only, plus ``airflow_batchjob.core.items`` (which imports no Airflow).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from airflow_batchjob.core.items import env_name, unsafe_env_name
from airflow_batchjob.core.results import check_result

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_LIMIT = 4096  # the kubelet keeps at most this many bytes of the message
# One environment string may not exceed MAX_ARG_STRLEN (128 KiB) or exec fails with E2BIG.
ENV_VALUE_LIMIT = 128 * 1024 - 64
# The broker URLs carry credentials: the worker needs them, the program does not.
SECRET_VARS = frozenset({"BATCHJOB_AMQP_URL", "BATCHJOB_REDIS_URL"})
# Variables the worker sets itself; an object item's keys never replace them.
RESERVED_VARS = frozenset({"ITEM", "ITEM_ID", "ITEM_INDEX", "ITEM_FILE"})
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BAD_RESULT = 65  # sysexits' EX_DATAERR: the program succeeded but its result is unusable


def log(message: str) -> None:
    """Worker messages go to stderr, prefixed, between the program's own output."""
    print(f"batchjob-worker: {message}", file=sys.stderr, flush=True)


class Stop:
    """Set on SIGTERM/SIGINT (Pod deletion); the signal is passed on to the running program."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum
        self.event.set()
        self.forward()

    def forward(self) -> None:
        """Pass the stop signal on to the running program, if any."""
        child = self.child
        if self.signum is not None and child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, self.signum)

    @property
    def requested(self) -> bool:
        return self.event.is_set()


class ProgramStartError(Exception):
    """The program could not be started at all: a setup problem, not a failure of the item."""

    def __init__(self, program: str, error: OSError) -> None:
        super().__init__(f"cannot run {program!r}: {error.strerror or error}")
        self.exit_code = 127 if isinstance(error, FileNotFoundError) else 126


def check_program(program: Sequence[str]) -> str | None:
    """Why the program cannot run (before any item is taken), or None when it looks runnable."""
    name = program[0]
    if os.sep in name:
        if not os.path.isfile(name):
            return f"program {name!r} not found"
        if not os.access(name, os.X_OK):
            return f"program {name!r} is not executable"
        return None
    if shutil.which(name) is None:
        return f"program {name!r} not found on PATH"
    return None


def program_env(
    text: str, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The program's environment: ours without broker secrets, ``ITEM``, ``extra``, object keys.

    An object item (JSON text of a dict) adds one variable per scalar top-level key, named by
    ``core.items.env_name`` (``first-name`` -> ``FIRST_NAME``), numbers and booleans as JSON. Such
    a key never replaces a variable that is already set (``PATH``, ``HOME``, the Pod's own), the
    worker's ``ITEM*`` variables, nor a variable that makes programs load code (``LD_PRELOAD``,
    ``PYTHONPATH``, ``BASH_ENV``, ...).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in SECRET_VARS}
    fixed = dict(extra or {})
    if _env_safe(text):
        fixed["ITEM"] = text
    else:
        log(f"the item ({len(text)} characters) cannot travel in ITEM (too big or NUL): read it from stdin")
    value = _object(text)
    if value is not None:
        for key, v in value.items():
            name = env_name(str(key))
            if name is None or name in env or name in fixed or name in RESERVED_VARS or unsafe_env_name(name):
                continue
            if v is None or isinstance(v, (str, int, float, bool)):
                s = v if isinstance(v, str) else json.dumps(v)
                if _env_safe(s):
                    env[name] = s
    env.update(fixed)
    return env


def _object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _env_safe(value: str) -> bool:
    return "\x00" not in value and len(value.encode("utf-8", "surrogateescape")) <= ENV_VALUE_LIMIT


def run_program(
    program: Sequence[str],
    stdin: bytes | IO[bytes],
    env: Mapping[str, str],
    stop: Stop,
    idle: Callable[[float], None] | None = None,
) -> int:
    """Run the program with ``stdin`` (bytes, or an open file) and return its exit code.

    A program killed by signal N gives 128+N, like a shell. ``idle(seconds)`` is called while it
    runs (the RabbitMQ connection's event processing, which keeps heartbeats going).
    Raises :class:`ProgramStartError` when it cannot be started.
    """
    source: int | IO[bytes] = subprocess.PIPE if isinstance(stdin, bytes) else stdin
    try:
        child = subprocess.Popen(list(program), stdin=source, env=dict(env), close_fds=True)
    except OSError as e:
        raise ProgramStartError(program[0], e) from e
    stop.child = child
    stop.forward()  # a signal that came between taking the item and starting the program
    writer = None
    if isinstance(stdin, bytes):
        writer = threading.Thread(target=_feed, args=(child, stdin), daemon=True)
        writer.start()
    try:
        code = _wait(child, idle)
    finally:
        stop.child = None
    if writer is not None:
        writer.join(timeout=5)
    return code if code >= 0 else 128 - code


def _wait(child: subprocess.Popen[bytes], idle: Callable[[float], None] | None) -> int:
    """Wait for the program, calling ``idle`` meanwhile; if ``idle`` fails, just wait.

    A broker connection lost mid-item must not orphan the program: it finishes, and the broker
    redelivers the item it never saw acknowledged.
    """
    while idle is not None:
        code = child.poll()
        if code is not None:
            return code
        try:
            idle(0.2)
        except Exception as e:
            log(f"broker connection lost while the program runs ({type(e).__name__}); waiting for it")
            idle = None
    return child.wait()


def _feed(child: subprocess.Popen[bytes], data: bytes) -> None:
    """Write the item to the program's stdin, in a thread: a program that does not read it is fine."""
    assert child.stdin is not None
    try:
        child.stdin.write(data)
    except OSError:  # BrokenPipeError: the program exited or closed stdin without reading it all
        pass
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()


def write_summary(path: str | None, summary: Mapping[str, Any]) -> None:
    """One JSON line as the container's termination message (the kubelet puts it in the Pod status).

    The default path is written only if it exists and is writable, as in a container; an explicit
    path is created.
    """
    line = json.dumps(summary, separators=(",", ":"), ensure_ascii=False)
    # Not also logged: the Pod log is the program's own output (e.g. `rev` prints only its result).
    target = path if path is not None else TERMINATION_LOG
    if not target or (path is None and not (os.path.isfile(target) and os.access(target, os.W_OK))):
        return
    data = line.encode()[:TERMINATION_LOG_LIMIT]
    try:
        with open(target, "wb") as f:
            f.write(data)
    except OSError as e:
        log(f"cannot write the termination message to {target}: {e.strerror}")


def new_result_file() -> str:
    """A private file for the program's result (``BATCHJOB_RESULT_FILE``): the termination message
    itself carries the worker's summary, with the result in it."""
    # BATCHJOB_TMPDIR: a writable directory when the root filesystem is read-only (core/inject.py).
    fd, path = tempfile.mkstemp(prefix="batchjob-result-", dir=os.environ.get("BATCHJOB_TMPDIR") or None)
    os.close(fd)
    return path


def item_result(path: str, where: str) -> tuple[Any, str | None]:
    """Read (and delete) what the program wrote to its result file: ``(value, None)``, or
    ``(None, why it is unusable)``; an empty file is no result (``None``)."""
    try:
        with open(path, "rb") as f:
            text = f.read(TERMINATION_LOG_LIMIT + 1).decode("utf-8", "surrogateescape")
    except OSError:
        text = ""
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return check_result(text, where)


def take_result(path: str, summary: dict[str, Any], where: str) -> str | None:
    """Move the program's result into ``summary["result"]``; why it is unusable, or None.

    The summary with the result must fit the termination message (the kubelet keeps 4 KiB).
    """
    value, error = item_result(path, where)
    if error is not None or value is None:
        return error
    room = TERMINATION_LOG_LIMIT - 1 - len(json.dumps({**summary, "result": None}, separators=(",", ":")))
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > room:
        return (
            f"{where}: its result is {size} bytes; beside the worker's summary at most {room} fit the "
            f"{TERMINATION_LOG_LIMIT - 1}-byte termination message: return a reference (a path or URI)"
        )
    summary["result"] = value
    return None

"""Command line of the in-Pod worker: ``python -m airflow_batchjob.worker <mode> [options] -- PROGRAM``.

Modes:

- ``rabbitmq --queue Q [--max-attempts 3]``: one message per Pod (URL in ``BATCHJOB_AMQP_URL``,
  ``amqp://`` or ``amqps://...?ssl_options={...}`` naming the CA and client certificate files).
- ``redis --queue Q [--lease-seconds 30] [--max-attempts 3]``: lease items until the queue is
  drained (URL in ``BATCHJOB_REDIS_URL``, ``redis://`` or ``rediss://...?ssl_ca_certs=...``).
- ``indexed --items-dir DIR``: the item is ``DIR/$JOB_COMPLETION_INDEX``.

The program gets the item on stdin and in ``ITEM`` (``ITEM_ID`` for queues; ``ITEM_INDEX`` and
``ITEM_FILE`` for indexed), plus one variable per scalar key of an object item. Its output passes
through, and the worker's exit code follows the program's. Exit codes of the worker itself: 2
for a usage or setup error, 1 for a broker error, 126/127 when the program cannot be started,
143 when stopped by SIGTERM (the current item is released first).

Imports no Airflow: the standard library, pika, redis and ``airflow_batchjob.core.items``.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_batchjob.extras import CLIENTS, missing_message
from airflow_batchjob.worker.run import Stop, check_program, log

MODES = ("rabbitmq", "redis", "indexed")
EXIT_USAGE = 2
EXIT_BROKER = 1
TERMINATION_LOG_ENV = "BATCHJOB_TERMINATION_LOG"


class UsageError(Exception):
    """Bad command line: the message says what to change."""


@dataclass
class Options:
    mode: str
    program: list[str]
    queue: str | None = None
    max_attempts: int = 3
    lease_seconds: int = 30
    poll_seconds: float = 1.0
    items_dir: str | None = None
    termination_log: str | None = None  # None: /dev/termination-log if the container has one


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return value


_SUB_USAGE = "%(prog)s [options] -- PROGRAM [ARGS...]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m airflow_batchjob.worker"
    parser = _Parser(
        prog=prog,
        description="Feed work items to an unchanged program, one at a time.",
        usage="%(prog)s {rabbitmq,redis,indexed} [options] -- PROGRAM [ARGS...]",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--termination-log",
        default=None,
        help="where to write the one-line JSON summary (default: $BATCHJOB_TERMINATION_LOG, else "
        "/dev/termination-log when it exists; '' for none)",
    )
    sub = parser.add_subparsers(dest="mode", required=True, parser_class=_Parser)
    rabbit = sub.add_parser(
        "rabbitmq",
        parents=[common],
        prog=f"{prog} rabbitmq",
        usage=_SUB_USAGE,
        help="one RabbitMQ message per Pod",
    )
    rabbit.add_argument("--queue", required=True)
    rabbit.add_argument("--max-attempts", type=_positive_int, default=3)
    red = sub.add_parser(
        "redis",
        parents=[common],
        prog=f"{prog} redis",
        usage=_SUB_USAGE,
        help="lease Redis items until the queue is drained",
    )
    red.add_argument("--queue", required=True)
    red.add_argument("--lease-seconds", type=_positive_int, default=30)
    red.add_argument("--max-attempts", type=_positive_int, default=3)
    red.add_argument(
        "--poll-seconds",
        type=_positive_float,
        default=1.0,
        help="longest wait between looks at the queue while other workers still hold items",
    )
    ix = sub.add_parser(
        "indexed",
        parents=[common],
        prog=f"{prog} indexed",
        usage=_SUB_USAGE,
        help="the item file of $JOB_COMPLETION_INDEX",
    )
    ix.add_argument("--items-dir", required=True)
    return parser


def parse_args(argv: Sequence[str]) -> Options:
    """Split at the first ``--``: the worker's options before it, the program and its args after."""
    argv = list(argv)
    if "--" not in argv:
        if "-h" in argv or "--help" in argv:
            build_parser().parse_args(argv)  # prints the help of the mode (or all modes) and exits 0
        raise UsageError("give the program after '--', e.g. ... redis --queue q -- python work.py")
    cut = argv.index("--")
    program = argv[cut + 1 :]
    if not program:
        raise UsageError("the program after '--' is empty")
    ns = build_parser().parse_args(argv[:cut])
    log_path = ns.termination_log if ns.termination_log is not None else os.environ.get(TERMINATION_LOG_ENV)
    return Options(
        mode=ns.mode,
        program=program,
        queue=getattr(ns, "queue", None),
        max_attempts=getattr(ns, "max_attempts", 3),
        lease_seconds=getattr(ns, "lease_seconds", 30),
        poll_seconds=getattr(ns, "poll_seconds", 1.0),
        items_dir=getattr(ns, "items_dir", None),
        termination_log=log_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        log(str(e))
        return EXIT_USAGE
    problem = check_program(opts.program)
    if problem is not None:  # before any item is taken: a setup error must not eat the queue
        log(problem)
        return 127 if "not found" in problem else 126
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # our own messages say what went wrong
    stop = Stop()
    stop.install()
    try:
        return _dispatch(opts, stop)
    except ModuleNotFoundError as e:
        if e.name not in CLIENTS.values():
            raise
        log(missing_message(opts.mode, "worker"))  # an image built without the broker clients
        return EXIT_USAGE
    except Exception as e:
        if not _is_broker_error(e):
            raise
        log(f"broker error: {type(e).__name__}: {e}")  # redis and pika errors carry no credentials
        return EXIT_BROKER


def _dispatch(opts: Options, stop: Stop) -> int:
    if opts.mode == "indexed":
        from airflow_batchjob.worker import indexed_mode

        assert opts.items_dir is not None
        return indexed_mode.run(opts.items_dir, opts.program, stop, opts.termination_log)
    assert opts.queue is not None
    if opts.mode == "rabbitmq":
        from airflow_batchjob.worker import rabbitmq_mode

        return rabbitmq_mode.run(opts.queue, opts.max_attempts, opts.program, stop, opts.termination_log)
    from airflow_batchjob.worker import redis_mode

    return redis_mode.run(
        opts.queue,
        opts.lease_seconds,
        opts.max_attempts,
        opts.poll_seconds,
        opts.program,
        stop,
        opts.termination_log,
    )


def _is_broker_error(error: BaseException) -> bool:
    module = type(error).__module__
    # pika raises a refused TLS handshake (the broker's certificate not trusted) as ssl's own error
    return module.startswith(("redis", "pika")) or isinstance(error, ssl.SSLError)

"""Private servers for the production profile of the Airflow stack (``airflowstack.py``):
PostgreSQL (Airflow's metadata database and Celery's result backend) and a Redis instance of its
own for Celery's broker, each on a free loopback port with a generated password and its own data
directory, stopped and removed with the stack.

Debian's ``postgresql`` package provides the server (``scripts/setup.sh`` installs it); its own
system service is never started. PostgreSQL refuses to run as root, so as root the server runs
as the package's ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from localcluster.cluster import free_port


def bindir() -> Path:
    """The newest installed PostgreSQL's ``bin`` (Debian keeps it off ``PATH``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup.sh (apt-get install postgresql)")
    return found[-1].parent


def _wait_port(port: int, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not start; its log {log}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.2)


class Servers:
    """PostgreSQL and Redis for one stack; the properties are the URLs Airflow is configured with."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="batchjob-ha-"))
        self.password = secrets.token_hex(16)
        self.pg_port, self.redis_port = free_port(), free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def dsn(self, dbname: str = "airflow") -> str:
        """A libpq URL of the server's ``airflow`` role (psycopg2 takes it as it is)."""
        return f"postgresql://airflow:{self.password}@127.0.0.1:{self.pg_port}/{dbname}"

    @property
    def sql_alchemy_conn(self) -> str:
        return self.dsn().replace("postgresql://", "postgresql+psycopg2://", 1)

    @property
    def celery_broker_url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.redis_port}/0"

    @property
    def celery_result_backend(self) -> str:
        return f"db+{self.sql_alchemy_conn}"

    def start(self) -> None:
        try:
            self._start_postgres()
            self._start_redis()
        except BaseException:
            self.stop()
            raise

    def _start_postgres(self) -> None:
        data, run = self.dir / "pg", self.dir / "pg-run"
        as_user: list[str] = []
        if os.geteuid() == 0:
            as_user = ["runuser", "-u", "postgres", "--"]
            self.dir.chmod(0o755)
        for d in (data, run):
            d.mkdir()
            if as_user:
                shutil.chown(d, "postgres", "postgres")
        pwfile = self.dir / "pg-run" / "pw"
        pwfile.write_text(self.password)
        if as_user:
            shutil.chown(pwfile, "postgres", "postgres")
        pg = bindir()
        initdb = ["-D", str(data), "-U", "airflow", "--pwfile", str(pwfile), "-A", "scram-sha-256"]
        subprocess.run([*as_user, str(pg / "initdb"), *initdb, "-E", "UTF8"], check=True, capture_output=True)
        pwfile.unlink()
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "300",
            # A test database: durability buys nothing, speed does.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        cmd = [*as_user, str(pg / "postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(run)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        log = self.dir / "postgres.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        _wait_port(self.pg_port, "PostgreSQL", proc, log)
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(self.dsn("postgres"))
                break
            except psycopg2.OperationalError:  # listening before it accepts logins
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:  # not "with conn": that opens a transaction, which CREATE DATABASE refuses
            cur.execute("create database airflow")
        conn.close()

    def _start_redis(self) -> None:
        conf = self.dir / "redis.conf"
        # The password in a file only this user reads, not on a command line others can list.
        conf.write_text(
            f"port {self.redis_port}\nbind 127.0.0.1\nrequirepass {self.password}\n"
            f'save ""\nappendonly no\ndir {self.dir}\n'
        )
        conf.chmod(0o600)
        log = self.dir / "redis.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["redis-server", str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        _wait_port(self.redis_port, "redis-server (Celery's broker)", proc, log)

    def stop(self) -> None:
        stop_groups(self.procs, timeout=30)  # PostgreSQL: SIGTERM is its "smart" shutdown
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each process's group (started with ``start_new_session``), then SIGKILL the
    groups of those still running after ``timeout`` seconds."""
    procs = list(procs)
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

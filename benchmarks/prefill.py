"""Queue pre-fill throughput: ``RedisQueue.prefill`` and ``RabbitQueue.prefill`` against baselines.

Redis (1,000,000 items, same server, median of ``--reps`` interleaved runs):
  - ours: ``RedisQueue.prefill`` (one MULTI/EXEC, envelopes streamed as raw RESP);
  - ``redis-benchmark -P 100 -t lpush -n 1000000 -q`` (50 clients, 3-byte values): the server's
    own pipelined LPUSH rate, a ceiling rather than a competitor;
  - naive redis-py: ``client.rpush(key, *chunk)`` per 10,000-item chunk, one round trip each,
    with envelopes built one by one (``make_envelope``) and, to separate transport from
    encoding, with our fast encoder (``encode_envelopes``).
RabbitMQ (persistent messages into a durable classic queue):
  - ours: ``RabbitQueue.prefill`` of 100,000 messages (publisher confirms, a window in flight);
  - pika ``BlockingChannel`` with confirms, one confirmed message per round trip (1,000, extrapolated);
  - Debian's ``amqp-publish -p``, one process per message (200, extrapolated).

Usage: ``python benchmarks/prefill.py --dir /tmp/bench`` with a cluster started by
``python -m localcluster up --dir /tmp/bench``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import _common as c

from airflow_batchjob import queues
from airflow_batchjob.queues.envelope import fingerprint_quoted, resp_bulk

REDIS_ITEMS = 1_000_000
REDIS_CHUNK = 10_000
RABBIT_ITEMS = 100_000
PIKA_ITEMS = 1_000
AMQP_PUBLISH_ITEMS = 200
TARGET_REDIS_RATIO = 1.0
TARGET_RABBIT_RATE = 20_000
TARGET_AMQP_PUBLISH_RATIO = 100


# -- Redis ----------------------------------------------------------------------------------


def redis_ours(client: Any, texts: list[str]) -> float:
    q = queues.RedisQueue(client, c.unique("bench-prefill"))
    t0 = time.perf_counter()
    n = q.prefill(texts)
    elapsed = time.perf_counter() - t0
    length = client.llen(q.pending)
    client.unlink(q.pending, q.marker)
    assert n == len(texts) == length, (n, len(texts), length)
    return elapsed


def redis_naive(client: Any, texts: list[str], fast_encode: bool) -> float:
    key = c.unique("bench-naive")
    t0 = time.perf_counter()
    for start in range(0, len(texts), REDIS_CHUNK):
        part = texts[start : start + REDIS_CHUNK]
        if fast_encode:
            bodies = queues.encode_envelopes(part, start)
        else:
            bodies = [queues.make_envelope(start + i, t) for i, t in enumerate(part)]
        client.rpush(key, *bodies)
    elapsed = time.perf_counter() - t0
    length = client.llen(key)
    client.unlink(key)
    assert length == len(texts), (length, len(texts))
    return elapsed


def encode_only(texts: list[str]) -> float:
    """What ``RedisQueue.prefill`` computes before and while sending, without any I/O: the client's share.

    Uses the envelope module's helpers (quoting, fingerprint, RESP bulk per chunk) exactly as
    ``prefill`` does; a diagnostic, not a contender.
    """
    t0 = time.perf_counter()
    quoted = list(map(encode_basestring, texts))
    fingerprint_quoted(quoted)
    for start in range(0, len(texts), REDIS_CHUNK):
        resp_bulk(texts[start : start + REDIS_CHUNK], start, quoted[start : start + REDIS_CHUNK])
    return time.perf_counter() - t0


def redis_benchmark(st: c.State, client: Any, value_bytes: int | None = None) -> tuple[float, str]:
    """``redis-benchmark -P 100 -t lpush -n 1000000 -q`` on the cluster's Redis: requests per second.

    ``value_bytes``: add ``-d`` (the default value is 3 bytes), for a same-size comparison.
    """
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise SystemExit("redis-benchmark not found (apt-get install redis-tools)")
    cmd = [exe, "-h", "127.0.0.1", "-p", str(st.ports["redis"]), "-a", st.redis_password]
    cmd += ["-P", "100", "-t", "lpush", "-n", str(REDIS_ITEMS), "-q"]
    if value_bytes is not None:
        cmd += ["-d", str(value_bytes)]
    client.unlink("mylist")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    client.unlink("mylist")
    # -q prints progress lines ending in \r, then "LPUSH: 123456.79 requests per second, p50=... msec"
    last = [seg for seg in re.split(r"[\r\n]", out) if "requests per second" in seg][-1].strip()
    m = re.search(r"LPUSH:\s*([0-9.]+) requests per second", last)
    if m is None:
        raise RuntimeError(f"cannot parse redis-benchmark output: {last!r}")
    return float(m.group(1)), last


def bench_redis(st: c.State, reps: int) -> dict[str, Any]:
    client = queues.redis_from_url(c.redis_url(st))
    texts = [f"item-{i:07d}" for i in range(REDIS_ITEMS)]
    envelope_bytes = len(queues.make_envelope(0, texts[0]))
    runs: dict[str, list[float]] = {
        "ours": [],
        "naive": [],
        "naive_fast": [],
        "redis_benchmark": [],
        "redis_benchmark_same_size": [],
        "encode_only": [],
    }
    lines: list[str] = []
    for rep in range(reps):  # interleaved, so slow phases of the machine hit every contender alike
        runs["ours"].append(REDIS_ITEMS / redis_ours(client, texts))
        rps, line = redis_benchmark(st, client)
        runs["redis_benchmark"].append(rps)
        lines.append(line)
        runs["naive"].append(REDIS_ITEMS / redis_naive(client, texts, fast_encode=False))
        runs["naive_fast"].append(REDIS_ITEMS / redis_naive(client, texts, fast_encode=True))
        runs["redis_benchmark_same_size"].append(redis_benchmark(st, client, envelope_bytes)[0])
        runs["encode_only"].append(REDIS_ITEMS / encode_only(texts))
        print(
            f"  redis rep {rep + 1}/{reps}: ours {runs['ours'][-1]:,.0f} items/s, "
            f"redis-benchmark {rps:,.0f} req/s, naive {runs['naive'][-1]:,.0f} items/s, "
            f"naive+fast-encode {runs['naive_fast'][-1]:,.0f} items/s",
            file=sys.stderr,
        )
    info = client.info("server")
    client.close()
    return {
        "items": REDIS_ITEMS,
        "envelope_bytes": envelope_bytes,
        "runs": runs,
        "median": {k: c.median(v) for k, v in runs.items()},
        "redis_benchmark_lines": lines,
        "redis_version": info.get("redis_version"),
    }


# -- RabbitMQ -------------------------------------------------------------------------------


def _delete_queues(params: Any, *names: str) -> None:
    import pika

    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        for name in names:
            ch.queue_delete(name)
    finally:
        conn.close()


def _depth(params: Any, name: str) -> int:
    import pika

    conn = pika.BlockingConnection(params)
    try:
        return int(conn.channel().queue_declare(queue=name, passive=True).method.message_count)
    finally:
        conn.close()


def rabbit_ours(params: Any, texts: list[str]) -> float:
    q = queues.RabbitQueue(params, c.unique("bench-prefill"))
    t0 = time.perf_counter()
    n = q.prefill(texts)
    elapsed = time.perf_counter() - t0
    depth = _depth(params, q.name)
    _delete_queues(params, q.name, q.dead, q.marker)
    assert n == len(texts) == depth, (n, len(texts), depth)
    return elapsed


def rabbit_pika_one_by_one(params: Any, count: int) -> float:
    """pika's BlockingChannel with confirms: ``basic_publish`` returns once the broker confirmed."""
    import pika

    name = c.unique("bench-pika")
    bodies = queues.encode_envelopes([f"item-{i:06d}" for i in range(count)])
    props = pika.BasicProperties(delivery_mode=queues.PERSISTENT, content_type="application/json")
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        queues.declare(ch, name)
        ch.confirm_delivery()
        t0 = time.perf_counter()
        for body in bodies:
            ch.basic_publish("", name, body, props)
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    depth = _depth(params, name)
    _delete_queues(params, name)
    assert depth == count, (depth, count)
    return elapsed


def rabbit_amqp_publish(st: c.State, params: Any, count: int) -> float:
    """One ``amqp-publish -p`` process per message (credentials from an --authfile, not argv)."""
    exe = shutil.which("amqp-publish")
    if exe is None:
        raise SystemExit("amqp-publish not found (apt-get install amqp-tools)")
    import pika

    name = c.unique("bench-amqp-publish")
    conn = pika.BlockingConnection(params)
    try:
        queues.declare(conn.channel(), name)
    finally:
        conn.close()
    bodies = queues.encode_envelopes([f"item-{i:06d}" for i in range(count)])
    with tempfile.TemporaryDirectory(prefix="bench-amqp-") as tmp:
        auth = Path(tmp) / "auth"
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"username:{st.rabbitmq_user}\npassword:{st.rabbitmq_password}\n")
        base = [exe, "--server", "127.0.0.1", "--port", str(st.ports["rabbitmq"]), "--authfile", str(auth)]
        base += ["--routing-key", name, "--persistent", "--content-type", "application/json"]
        t0 = time.perf_counter()
        for body in bodies:
            subprocess.run([*base, "--body", body.decode()], check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
    depth = _depth(params, name)
    _delete_queues(params, name)
    assert depth == count, (depth, count)
    return elapsed


def bench_rabbit(st: c.State, reps: int) -> dict[str, Any]:
    params = queues.rabbit_params_from_url(c.amqp_url(st))
    texts = [f"item-{i:06d}" for i in range(RABBIT_ITEMS)]
    runs: dict[str, list[float]] = {"ours": [], "pika": [], "amqp_publish": []}
    for rep in range(reps):
        runs["ours"].append(RABBIT_ITEMS / rabbit_ours(params, texts))
        runs["pika"].append(PIKA_ITEMS / rabbit_pika_one_by_one(params, PIKA_ITEMS))
        runs["amqp_publish"].append(AMQP_PUBLISH_ITEMS / rabbit_amqp_publish(st, params, AMQP_PUBLISH_ITEMS))
        print(
            f"  rabbitmq rep {rep + 1}/{reps}: ours {runs['ours'][-1]:,.0f} msg/s, "
            f"pika one-by-one {runs['pika'][-1]:,.0f} msg/s, "
            f"amqp-publish {runs['amqp_publish'][-1]:,.1f} msg/s",
            file=sys.stderr,
        )
    return {"items": RABBIT_ITEMS, "runs": runs, "median": {k: c.median(v) for k, v in runs.items()}}


# -- report ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import pika
    import redis

    pkgs = ["redis-server", "redis-tools", "rabbitmq-server", "amqp-tools"]
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *pkgs],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    packages = "; ".join(line for line in out.splitlines() if line)
    return {"debian packages": packages, "redis-py": redis.__version__, "pika": pika.__version__}


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="runs of each contender (median reported)")
    p.add_argument("--only", choices=["redis", "rabbitmq"], default=None)
    a = p.parse_args()
    st = c.load_cluster(a.dir)
    c.header("Queue pre-fill throughput")
    for k, v in versions().items():
        print(f"{k}: {v}")
    print()
    out: dict[str, Any] = {"machine": c.machine(), "versions": versions()}
    ok = True
    if a.only in (None, "redis"):
        r = bench_redis(st, a.reps)
        out["redis"] = r
        med = r["median"]
        ratio = med["ours"] / med["redis_benchmark"]
        rows = [
            ["RedisQueue.prefill (ours)", f"{med['ours']:,.0f}", "1.00x"],
            ["redis-benchmark -P 100 -t lpush (req/s)", f"{med['redis_benchmark']:,.0f}",
             f"{med['ours'] / med['redis_benchmark']:.2f}x"],
            ["redis-py RPUSH per 10k chunk, make_envelope", f"{med['naive']:,.0f}",
             f"{med['ours'] / med['naive']:.2f}x"],
            ["redis-py RPUSH per 10k chunk, encode_envelopes", f"{med['naive_fast']:,.0f}",
             f"{med['ours'] / med['naive_fast']:.2f}x"],
            [f"(context) redis-benchmark ... -d {r['envelope_bytes']} (req/s)",
             f"{med['redis_benchmark_same_size']:,.0f}",
             f"{med['ours'] / med['redis_benchmark_same_size']:.2f}x"],
            ["(diagnostic) ours, client-side encoding only, no I/O", f"{med['encode_only']:,.0f}",
             f"{med['ours'] / med['encode_only']:.2f}x"],
        ]  # fmt: skip
        print(
            f"## Redis {r['redis_version']}: {REDIS_ITEMS:,} items "
            f"(envelopes of {r['envelope_bytes']} bytes), median of {a.reps}"
        )
        print(c.table(["contender", "items/s (or req/s)", "ours / it"], rows))
        print(f"redis-benchmark output (last run): {r['redis_benchmark_lines'][-1]}")
        met = ratio >= TARGET_REDIS_RATIO
        ok &= met
        print(f"target ours / redis-benchmark >= {TARGET_REDIS_RATIO}: {ratio:.2f} -> {c.verdict(met)}\n")
    if a.only in (None, "rabbitmq"):
        r = bench_rabbit(st, a.reps)
        out["rabbitmq"] = r
        med = r["median"]
        rows = [
            ["RabbitQueue.prefill (ours)", RABBIT_ITEMS, f"{med['ours']:,.0f}",
             f"{RABBIT_ITEMS / med['ours']:.1f}", "1x"],
            ["pika, one confirmed message per round trip", PIKA_ITEMS, f"{med['pika']:,.0f}",
             f"{RABBIT_ITEMS / med['pika']:.1f}", f"{med['ours'] / med['pika']:.0f}x"],
            ["amqp-publish -p, one process per message", AMQP_PUBLISH_ITEMS, f"{med['amqp_publish']:,.1f}",
             f"{RABBIT_ITEMS / med['amqp_publish']:.0f}", f"{med['ours'] / med['amqp_publish']:.0f}x"],
        ]  # fmt: skip
        print(f"## RabbitMQ: persistent messages, durable classic queue, median of {a.reps}")
        print(c.table(["contender", "messages sent", "msg/s", f"s for {RABBIT_ITEMS:,}", "ours / it"], rows))
        met_rate = med["ours"] >= TARGET_RABBIT_RATE
        ratio = med["ours"] / med["amqp_publish"]
        met_ratio = ratio >= TARGET_AMQP_PUBLISH_RATIO
        ok &= met_rate and met_ratio
        print(f"target ours >= {TARGET_RABBIT_RATE:,} msg/s: {med['ours']:,.0f} -> {c.verdict(met_rate)}")
        print(
            f"target ours / amqp-publish >= {TARGET_AMQP_PUBLISH_RATIO}x: {ratio:.0f}x"
            f" -> {c.verdict(met_ratio)}"
        )
    c.write_json(a.json, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

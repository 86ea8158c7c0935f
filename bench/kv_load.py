"""The load of the key/value benchmark (``bench/kv.py``): ``redis-benchmark`` runs, a lean RESP
load generator for durable writes, latency distributions, and the redis-server peers.

* :func:`redis_benchmark` runs Redis's own ``redis-benchmark`` (Debian ``redis-tools``) with
  ``--csv`` against a port and returns one :class:`BenchRow` per test (ops/s, latency
  percentiles from its histogram).
* :func:`durable_load` drives ``clients`` concurrent RESP connections (asyncio streams on uvloop,
  each writing the request bytes itself and parsing only the replies it expects), each sending
  ``SET`` with a new key, one at a time, optionally followed by ``WAIT N 0`` in the same write;
  the same code for litecluster and redis-server, so that the client's CPU is the same on both.
* :class:`Dist` summarises latencies (percentiles and a CDF for the plots).
* :func:`redis_pair` starts redis-server with ``appendonly yes``/``appendfsync always`` and a
  second one as its replica (``replicaof``), and waits until the link is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sql_load import RAW_ERRORS, LoadRun, drive
from sql_reads import RedisServer

BENCHMARK_HINT = "apt-get install redis-tools (./dev test installs it as root)"
QUANTILES = [*range(0, 99), 99.0, 99.5, 99.9, 99.99, 100.0]
"""The percentiles kept of every latency distribution (the CDFs of the plots)."""


class Missing(RuntimeError):
    """A program the benchmark needs is not installed (the message says how to install it)."""


def need_redis_benchmark() -> str:
    path = shutil.which("redis-benchmark")
    if path is None:
        raise Missing(f"redis-benchmark not found on PATH: {BENCHMARK_HINT}")
    return path


def tool_version(program: str) -> str:
    """``redis-server --version`` and the like, first line ('' when it cannot be run)."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


# ---- latency distributions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """A latency distribution in one unit (µs or ms): percentiles, mean and a CDF."""

    p50: float
    p99: float
    max: float
    mean: float
    n: int
    quantiles: list[float]
    """The values at :data:`QUANTILES`."""

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, scale: float) -> Dist | None:
        """``values`` divided by ``scale`` (e.g. ns to ms: 1e6); None when empty."""
        arr = np.asarray(values, dtype=np.float64) / scale
        if arr.size == 0:
            return None
        qs = [float(x) for x in np.percentile(arr, QUANTILES)]
        return cls(
            float(np.percentile(arr, 50)),
            float(np.percentile(arr, 99)),
            float(arr.max()),
            float(arr.mean()),
            int(arr.size),
            qs,
        )


# ---- redis-benchmark -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRow:
    """One test (SET, GET, ...) of one redis-benchmark run."""

    test: str
    rps: float
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class BenchRun:
    system: str
    """``litecluster`` or ``redis``."""
    variant: str
    repeat: int
    rows: list[BenchRow]
    wall_s: float
    errors: str
    """What redis-benchmark said on stderr besides its password warning ('' when nothing)."""

    def row(self, test: str) -> BenchRow | None:
        return next((r for r in self.rows if r.test == test), None)


def redis_benchmark(
    port: int, password: str | None, args: Sequence[str], timeout: float
) -> tuple[list[BenchRow], str, float]:
    """Run ``redis-benchmark -h 127.0.0.1 -p PORT [-a PASSWORD] ARGS --csv``: its rows, what it
    said on stderr (warnings about the password on the command line left out) and the wall
    time in seconds."""
    cmd = [need_redis_benchmark(), "-h", "127.0.0.1", "-p", str(port)]
    if password:
        cmd += ["-a", password]
    t0 = time.monotonic()
    out = subprocess.run([*cmd, *args, "--csv"], capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    said = [
        line
        for line in out.stderr.splitlines()
        if line.strip() and "Using a password with '-a'" not in line
    ]
    if out.returncode != 0:
        said.insert(0, f"exit status {out.returncode}")
    return parse_csv(out.stdout), "\n".join(said)[:2000], wall


def parse_csv(text: str) -> list[BenchRow]:
    """The rows of ``redis-benchmark --csv`` (header: test, rps, avg, min, p50, p95, p99, max)."""
    rows = []
    for rec in csv.reader(line for line in text.splitlines() if line.startswith('"')):
        if not rec or rec[0] == "test" or len(rec) < 8:
            continue
        try:
            nums = [float(x) for x in rec[1:8]]
        except ValueError:
            continue
        rps, avg, _min, p50, p95, p99, mx = nums
        rows.append(BenchRow(rec[0], rps, avg, p50, p95, p99, mx))
    return rows


# ---- a lean RESP client ------------------------------------------------------------------------


class RespError(Exception):
    """An error reply (``-ERR ...``)."""


def encode(*commands: Sequence[bytes]) -> bytes:
    """RESP arrays of bulk strings, one per command."""
    out = bytearray()
    for args in commands:
        out += b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%b\r\n" % (len(a), a)
    return bytes(out)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    """One RESP2 reply: str (simple), int, bytes or None (bulk), list, or a :class:`RespError`
    instance (returned, not raised: the caller decides)."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else (await reader.readexactly(n + 2))[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [await read_reply(reader) for _ in range(n)]
    raise ValueError(f"not a RESP reply: {line[:100]!r}")


class RespConn:
    """One connection that writes the command bytes itself and reads one reply per command;
    it authenticates first when given a password. After an error it is closed and the next
    call reconnects."""

    def __init__(self, port: int, password: str | None, timeout: float = 30.0) -> None:
        self.port, self.password, self.timeout = port, password, timeout
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._conn = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), self.timeout
        )
        if self.password:
            (got,) = await self.call([b"AUTH", self.password.encode()])
            if got != "OK":
                self.close()
                raise ValueError(f"AUTH answered {got!r}")

    async def call(self, *commands: Sequence[bytes]) -> list[Any]:
        try:
            await self.open()
            assert self._conn is not None
            reader, writer = self._conn
            writer.write(encode(*commands))
            return [await asyncio.wait_for(read_reply(reader), self.timeout) for _ in commands]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


# ---- durable writes ------------------------------------------------------------------------------


def check_write(replies: list[Any], wait: int) -> str:
    """'' when ``SET`` answered OK (and ``WAIT`` counted at least ``wait`` replicas)."""
    if replies[0] != "OK":
        return f"SET answered {replies[0]!r}"[:300]
    if wait and (not isinstance(replies[1], int) or replies[1] < wait):
        return f"WAIT {wait} 0 answered {replies[1]!r}"[:300]
    return ""


def durable_load(
    kind: str,
    port: int,
    password: str | None,
    clients: int,
    seconds: float,
    warmup_s: float,
    value: bytes,
    tag: str,
    wait: int,
    before_go: Callable[[], None],
) -> LoadRun:
    """``clients`` connections sending ``SET TAG:CLIENT:SEQ VALUE`` (a new key each time), one at
    a time, each followed by ``WAIT wait 0`` in the same write when ``wait`` > 0; ``warmup_s``
    seconds untimed, then ``seconds`` measured (``before_go`` runs just before)."""
    import uvloop

    async def run() -> LoadRun:
        conns = [RespConn(port, password) for _ in range(clients)]
        for c in conns:
            await c.open()

        def sender(prefix: str) -> Callable[[int, int], Any]:
            async def send(i: int, seq: int) -> str:
                cmds: list[list[bytes]] = [[b"SET", f"{prefix}:{i}:{seq}".encode(), value]]
                if wait:
                    cmds.append([b"WAIT", str(wait).encode(), b"0"])
                try:
                    replies = await conns[i].call(*cmds)
                except RAW_ERRORS as exc:
                    return f"{type(exc).__name__}: {exc}"[:300]
                return check_write(replies, wait)

            return send

        try:
            if warmup_s > 0:
                await drive(kind, clients, warmup_s, lambda: None, sender(f"{tag}w"))
            return await drive(kind, clients, seconds, before_go, sender(tag))
        finally:
            for c in conns:
                c.close()

    result: LoadRun = uvloop.run(run())
    return result


# ---- redis-server peers --------------------------------------------------------------------------

AOF_ALWAYS = ["--appendonly", "yes", "--appendfsync", "always"]


def redis_info(port: int, section: str) -> dict[str, str]:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
        info: dict[str, Any] = r.info(section)
    return {k: str(v) for k, v in info.items()}


@contextlib.contextmanager
def redis_pair(
    root: Path, args: Sequence[str], timeout: float = 30.0
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A redis-server with ``args`` and a replica of it with the same ``args`` (``replicaof``),
    once the primary counts the replica online; both killed when the block ends."""
    with RedisServer(root / "redis-aof", args) as primary:
        primary.start()
        with RedisServer(
            root / "redis-aof-replica", [*args, "--replicaof", "127.0.0.1", str(primary.port)]
        ) as rep:
            rep.start()
            deadline = time.monotonic() + timeout
            while True:
                info = redis_info(primary.port, "replication")
                if info.get("connected_slaves") == "1" and "online" in info.get("slave0", ""):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the redis replica did not come online: {info}")
                time.sleep(0.05)
            yield primary, rep

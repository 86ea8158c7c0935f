"""Point reads for the SQL benchmark (the key/value benchmark times its reads with the same
helpers, and every benchmark with a Redis peer starts it with :class:`RedisServer`): the
embedded replica, its raw connection, redis, HTTP.

* :func:`load_rows` writes the ``kv`` rows through the primary's SQL API (``executemany`` in
  batches, from an embedded-replica client, which then holds every row locally).
* :class:`RedisServer` is a real ``redis-server`` on 127.0.0.1 (a free port, no persistence) that
  this process starts and kills; :func:`load_redis` gives it the same keys and values.
* :func:`measure_reads` times point lookups by key on each path, interleaved in blocks so that
  a drift of the machine (the VM is shared) touches every path alike, and returns the latency
  percentiles of each (:class:`Latency`).

Every SQLite file is opened through :func:`litecluster.engine.sqlite.connect` (sqlean): the raw path
is the very connection the embedded client reads with (``client._embedded._conns``), never
the stdlib ``sqlite3`` module (two SQLite libraries in one process break each other's locks).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import string
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import httpx
import numpy as np

from litecluster.client.sync import Client

POINT_SQL = "SELECT v FROM kv WHERE k = ?"
CREATE_KV = "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT NOT NULL)"
INSERT_KV = "INSERT INTO kv(k, v) VALUES(?, ?)"
LOAD_BATCH = 1000

REDIS_HINT = "apt-get install redis-server (./dev test installs it as root)"

LOCAL_KINDS = ("client", "raw", "stdlib", "redis", "redis_same_cpu", "redis_other_cpu")
"""Interleaved in blocks; the HTTP paths (much slower) follow, interleaved among themselves."""
HTTP_KINDS = ("http_get", "http_get_raw", "http_get_replica", "http_client", "http_dqlite")

Lookup = Callable[[str], Any]


class RedisMissing(RuntimeError):
    """redis-server (or redis-py) is not installed."""


@dataclass(frozen=True)
class Latency:
    """Percentiles (µs) of one path's timed lookups in one repeat."""

    p50_us: float
    p99_us: float
    mean_us: float
    n: int

    @classmethod
    def of(cls, ns: list[int]) -> Latency:
        arr = np.asarray(ns, dtype=np.float64) / 1e3
        return cls(
            float(np.percentile(arr, 50)),
            float(np.percentile(arr, 99)),
            float(arr.mean()),
            int(arr.size),
        )


def make_rows(n: int, value_bytes: int, seed: int = 1) -> list[tuple[str, str]]:
    """``n`` distinct keys ``key00000000``... with random printable values (deterministic)."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return [(f"key{i:08d}", "".join(rng.choices(alphabet, k=value_bytes))) for i in range(n)]


def load_rows(client: Client, rows: list[tuple[str, str]]) -> None:
    """Create ``kv`` and insert ``rows`` through the primary, ``LOAD_BATCH`` rows a request."""
    client.execute(CREATE_KV)
    for i in range(0, len(rows), LOAD_BATCH):
        client.executemany(INSERT_KV, [list(r) for r in rows[i : i + LOAD_BATCH]])


# ---- redis ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def check_redis() -> None:
    """Raise :class:`RedisMissing` with the fix unless redis-server and redis-py are there."""
    if shutil.which("redis-server") is None:
        raise RedisMissing(f"redis-server not found on PATH: {REDIS_HINT}")
    try:
        import redis  # noqa: F401
    except ImportError:
        raise RedisMissing("redis-py is missing: pip install -e '.[dev]' (./dev does)") from None


def redis_parser() -> str:
    """The reply parser redis-py uses (hiredis, when installed, is faster)."""
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return "redis-py's pure-Python parser (hiredis not installed)"
    return "hiredis"


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 in ``directory`` (its working directory and log there);
    killed by :meth:`kill` (use it as a context manager)."""

    def __init__(self, directory: Path, args: Sequence[str] = ()) -> None:
        """``args``: more ``redis-server`` options, after (and so overriding) the defaults."""
        self.directory = directory
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 10.0, tries: int = 3) -> None:
        check_redis()
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(tries):
            self.port = free_port()
            self._log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (closed in kill)
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                   *self.args]  # fmt: skip
            self.proc = subprocess.Popen(
                cmd, cwd=self.directory, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with redis.Redis(host="127.0.0.1", port=self.port) as r:
                        r.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            self.kill()
            if attempt == tries - 1:
                log = (self.directory / "redis.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def load_redis(r: Any, rows: list[tuple[str, str]]) -> None:
    pipe = r.pipeline(transaction=False)
    for k, v in rows:
        pipe.set(k, v)
    pipe.execute()


# ---- timing --------------------------------------------------------------------------------------

Timed = Callable[[list[str], list[int]], None]
"""Looks up each key, appending the nanoseconds of each lookup to the list."""


def timer_overhead_ns(n: int = 20_000) -> float:
    """p50 of two back-to-back clock reads around nothing: the timing's own cost."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        out.append(clock() - t0)
    return float(np.percentile(out, 50))


def _timed_call(fn: Callable[[str, tuple[str]], Any]) -> Timed:
    """``fn(POINT_SQL, (key,))`` timed, the result left as it is returned."""

    def run(keys: list[str], out: list[int]) -> None:
        clock, sql = time.perf_counter_ns, POINT_SQL
        for k in keys:
            t0 = clock()
            fn(sql, (k,))
            out.append(clock() - t0)

    return run


def _timed_raw(execute: Callable[[str, tuple[str]], Any]) -> Timed:
    """``conn.execute(POINT_SQL, (key,)).fetchall()``: what the client does, minus its wrapping."""

    def run(keys: list[str], out: list[int]) -> None:
        clock, sql = time.perf_counter_ns, POINT_SQL
        for k in keys:
            t0 = clock()
            execute(sql, (k,)).fetchall()
            out.append(clock() - t0)

    return run


def _timed_lookup(fn: Lookup) -> Timed:
    def run(keys: list[str], out: list[int]) -> None:
        clock = time.perf_counter_ns
        for k in keys:
            t0 = clock()
            fn(k)
            out.append(clock() - t0)

    return run


def _pinned(inner: Timed, pid: int, mine: set[int], theirs: set[int]) -> Timed:
    """``inner`` with this thread on the CPUs ``mine`` and process ``pid`` (redis-server's
    event loop thread) on ``theirs``; both put back afterwards. On this VM a loopback round trip
    between two vCPUs costs a cross-CPU wake-up each way, much more than on one vCPU, and the
    scheduler picks either, so both placements are measured besides the scheduler's."""

    def run(keys: list[str], out: list[int]) -> None:
        old_mine, old_theirs = os.sched_getaffinity(0), os.sched_getaffinity(pid)
        os.sched_setaffinity(0, mine)
        os.sched_setaffinity(pid, theirs)
        try:
            inner(keys, out)
        finally:
            os.sched_setaffinity(0, old_mine)
            os.sched_setaffinity(pid, old_theirs)

    return run


def _http_get(http: httpx.Client, key: str, level: str | None) -> Any:
    """GET /db/query with the key inlined (a GET carries no parameters); the value read."""
    params = {"q": f"SELECT v FROM kv WHERE k = '{key}'"}
    if level is not None:
        params["level"] = level
    resp = http.get("/db/query", params=params)
    resp.raise_for_status()
    return resp.json()["results"][0]["values"][0][0]


class RawHttp:
    """A minimal blocking HTTP/1.1 client on one keep-alive connection (TCP_NODELAY): the
    node's own latency with next to no client cost (httpx spends a few hundred µs of CPU per
    request on this machine)."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.host = addr
        self.sock = socket.create_connection((host, int(port)), timeout=10.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get(self, target: str) -> bytes:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if int(lines[0].split()[1]) != 200:
            raise RuntimeError(f"HTTP error: {buf[:300]!r}")
        length = next(
            int(v) for n, _, v in (x.partition(b":") for x in lines[1:])
            if n.strip().lower() == b"content-length"
        )  # fmt: skip
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            rest += chunk
        return rest

    def close(self) -> None:
        self.sock.close()


def _raw_get(http: RawHttp, key: str) -> Any:
    target = "/db/query?" + urlencode({"q": f"SELECT v FROM kv WHERE k = '{key}'"})
    return json.loads(http.get(target))["results"][0]["values"][0][0]


@dataclass
class ReadPaths:
    """Each path's lookup (returning the value, for :func:`verify`) and its timed loop."""

    fns: dict[str, Lookup]
    timed: dict[str, Timed]
    _http: list[httpx.Client | RawHttp]

    @classmethod
    def build(
        cls, client: Client, redis_client: Any, redis_pid: int, primary_http: str,
        replica_http: str | None, remote: Client,
    ) -> ReadPaths:  # fmt: skip
        assert client._embedded is not None, "not an embedded-replica client"
        client.query(POINT_SQL, ("key00000000",))  # opens the local connection
        conn = client._embedded._conns[client.db]
        http = httpx.Client(base_url=f"http://{primary_http}", timeout=10.0)
        fns: dict[str, Lookup] = {
            "client": lambda k: client.query(POINT_SQL, (k,)).rows[0][0],
            "raw": lambda k: conn.execute(POINT_SQL, (k,)).fetchall()[0][0],
            "redis": lambda k: redis_client.get(k).decode(),
            "http_get": lambda k: _http_get(http, k, None),
            "http_client": lambda k: remote.query(POINT_SQL, (k,)).rows[0][0],
        }
        timed: dict[str, Timed] = {
            "client": _timed_call(client.query),
            "raw": _timed_raw(conn.execute),
            "redis": _timed_lookup(redis_client.get),
            "http_get": _timed_lookup(fns["http_get"]),
            "http_client": _timed_call(remote.query),
        }
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) >= 2:
            a, b = {cpus[0]}, {cpus[1]}
            timed["redis_same_cpu"] = _pinned(timed["redis"], redis_pid, a, a)
            timed["redis_other_cpu"] = _pinned(timed["redis"], redis_pid, a, b)
        raw_http = RawHttp(primary_http)
        fns["http_get_raw"] = lambda k: _raw_get(raw_http, k)
        timed["http_get_raw"] = _timed_lookup(fns["http_get_raw"])
        clients: list[httpx.Client | RawHttp] = [http, raw_http]
        if replica_http is not None:
            rep = httpx.Client(base_url=f"http://{replica_http}", timeout=10.0)
            clients.append(rep)
            fns["http_get_replica"] = lambda k: _http_get(rep, k, "none")
            timed["http_get_replica"] = _timed_lookup(fns["http_get_replica"])
        return cls(fns, timed, clients)

    def close(self) -> None:
        for http in self._http:
            http.close()


def verify(paths: ReadPaths, rows: list[tuple[str, str]], sample: int) -> None:
    """Every path returns the stored value (for ``sample`` keys spread over the table)."""
    step = max(1, len(rows) // sample)
    for k, v in rows[::step]:
        for kind, fn in paths.fns.items():
            got = fn(k)
            if got != v:
                raise AssertionError(f"{kind} returned {got!r} for {k}, expected {v!r}")


def sample_reads(
    timed: dict[str, Timed],
    keys: list[str],
    *,
    groups: Sequence[tuple[Sequence[str], int]],
    blocks: int,
    warmup: int,
    seed: int,
) -> dict[str, list[int]]:
    """Nanoseconds of every timed lookup of random keys, by path.

    Each group is (paths, lookups): the paths of a group (those in ``timed``) do ``lookups``
    lookups each, in ``blocks`` blocks whose order rotates, so that a drift of the machine
    touches every path alike; one group after the other. Each path first does ``warmup``
    untimed lookups.
    """
    rng = random.Random(seed)
    out: dict[str, list[int]] = {}
    for group, n in groups:
        kinds = [k for k in group if k in timed]
        for kind in kinds:
            timed[kind](rng.choices(keys, k=warmup), [])
            out[kind] = []
        per_block = max(1, n // blocks)
        for b in range(blocks):
            order = kinds[b % len(kinds) :] + kinds[: b % len(kinds)]
            for kind in order:
                timed[kind](rng.choices(keys, k=per_block), out[kind])
    return out


def measure_reads(
    paths: ReadPaths,
    keys: list[str],
    *,
    lookups: int,
    http_lookups: int,
    blocks: int,
    warmup: int,
    seed: int,
) -> dict[str, Latency]:
    """Timed lookups of random keys on every path (:func:`sample_reads`): the local paths
    (embedded client, raw connection, redis) ``lookups`` each, then the HTTP paths
    ``http_lookups`` each."""
    groups = ((LOCAL_KINDS, lookups), (HTTP_KINDS, http_lookups))
    ns = sample_reads(paths.timed, keys, groups=groups, blocks=blocks, warmup=warmup, seed=seed)
    return {kind: Latency.of(v) for kind, v in ns.items()}

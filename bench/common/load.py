"""The HTTP write load of the SQL benchmark, also driven by ``bench.failover`` and ``bench.sync``
(and its :func:`drive` by the RESP load of :mod:`bench.common.resp`): concurrent clients
inserting one row per request, and :class:`GroupStats`, the writer's group sizes of a phase.

Every client sends ``POST /db/execute`` with ``[["INSERT INTO t(k, v) VALUES(?, ?)", k, v]]``
(a fresh key each time) over one keep-alive connection, one request at a time, until the
phase's time is up; a write counts as acknowledged when the answer is HTTP 200 with no error in
its result. The client kinds differ only in how the load is generated, because on a 2-core
machine the load generator shares the CPU with the nodes and its own cost shows in the result:

* ``threads``: one thread per client, each with its own ``httpx.Client``;
* ``httpx_async``: asyncio (uvloop), one ``httpx.AsyncClient``, a task per client;
* ``aiohttp``: asyncio (uvloop), one ``aiohttp.ClientSession``, a task per client;
* ``raw``: asyncio (uvloop) streams, a task per client writing the HTTP/1.1 request bytes itself
  and reading the ``Content-Length`` framed answer (the least client CPU per request).

Each client makes one untimed warm-up request (its connection opens then), ``before_go`` runs
once all are warm, and then every client starts at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

INSERT_T = "INSERT INTO t(k, v) VALUES(?, ?)"
CREATE_T = "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)"
KINDS = ("threads", "httpx_async", "aiohttp", "raw")
KIND_LABELS = {
    "threads": "threads, one httpx.Client each",
    "httpx_async": "asyncio (uvloop), one httpx.AsyncClient",
    "aiohttp": "asyncio (uvloop), one aiohttp.ClientSession",
    "raw": "asyncio (uvloop) streams, minimal HTTP/1.1",
}
TIMEOUT = 30.0


@dataclass
class Tally:
    """One client's outcome."""

    latency_ns: list[int] = field(default_factory=list)
    acked: int = 0
    errors: int = 0
    first_error: str = ""

    def error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text[:300]


@dataclass(frozen=True)
class LoadRun:
    kind: str
    clients: int
    started: float
    """``time.monotonic()`` when the clients were let go."""
    ended: float
    """``time.monotonic()`` when the last client had its last answer."""
    acked: int
    errors: int
    first_error: str
    latency_ns: np.ndarray
    """Send-to-answer time of every acknowledged write (from its first send, when retried)."""
    retries: int = 0
    """Requests sent again (after the warm-up) as the load's ``retry`` rule said."""

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    @property
    def acked_tps(self) -> float:
        return self.acked / self.wall_s if self.wall_s > 0 else float("nan")

    @staticmethod
    def of(kind: str, started: float, ended: float, tallies: list[Tally]) -> LoadRun:
        lat = np.fromiter((x for t in tallies for x in t.latency_ns), dtype=np.int64)
        return LoadRun(
            kind=kind,
            clients=len(tallies),
            started=started,
            ended=ended,
            acked=sum(t.acked for t in tallies),
            errors=sum(t.errors for t in tallies),
            first_error=next((t.first_error for t in tallies if t.first_error), ""),
            latency_ns=lat,
        )


def body(tag: str, client: int, seq: int, value: str) -> list[list[Any]]:
    return [[INSERT_T, f"{tag}-{client}-{seq}", value]]


def check_answer(status: int, data: Any) -> str:
    """'' for an acknowledged write, else what went wrong."""
    if status != 200:
        return f"HTTP {status}: {str(data)[:200]}"
    try:
        result = data["results"][0]
    except (KeyError, IndexError, TypeError):
        return f"unexpected answer: {str(data)[:200]}"
    return f"SQL error: {result['error']}" if "error" in result else ""


def run_load(
    kind: str,
    http: str,
    clients: int,
    seconds: float,
    value: str,
    tag: str,
    before_go: Callable[[], None],
) -> LoadRun:
    """``clients`` concurrent writers of ``kind`` on ``http`` (HOST:PORT) for ``seconds``."""
    if kind == "threads":
        return _threads(http, clients, seconds, value, tag, before_go)
    import uvloop

    runners = {"httpx_async": _httpx_async, "aiohttp": _aiohttp, "raw": _raw}
    run: LoadRun = uvloop.run(runners[kind](http, clients, seconds, value, tag, before_go))
    return run


# ---- threads -----------------------------------------------------------------------------------


def _threads(
    http: str, n: int, seconds: float, value: str, tag: str, before_go: Callable[[], None]
) -> LoadRun:
    ready = threading.Barrier(n + 1, timeout=60.0)
    go = threading.Event()
    stop_at = [0.0]
    tallies = [Tally() for _ in range(n)]

    def worker(i: int) -> None:
        tally = tallies[i]
        with httpx.Client(base_url=f"http://{http}", timeout=TIMEOUT) as c:
            warm = _post_sync(c, body(tag, i, -1, value))
            ready.wait()
            go.wait()
            if warm:
                tally.error(f"warm-up: {warm}")
                return
            clock, seq = time.perf_counter_ns, 0
            while time.monotonic() < stop_at[0]:
                t0 = clock()
                err = _post_sync(c, body(tag, i, seq, value))
                t1 = clock()
                seq += 1
                if err:
                    tally.error(err)
                else:
                    tally.acked += 1
                    tally.latency_ns.append(t1 - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        before_go()
    finally:
        started = time.monotonic()
        stop_at[0] = started + seconds
        go.set()
        for t in threads:
            t.join()
    return LoadRun.of("threads", started, time.monotonic(), tallies)


def _post_sync(c: httpx.Client, payload: list[list[Any]]) -> str:
    try:
        resp = c.post("/db/execute", json=payload)
        return check_answer(resp.status_code, resp.json())
    except (httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


# ---- asyncio -----------------------------------------------------------------------------------

Send = Callable[[int, int], Awaitable[str]]
"""``send(client, seq)``: one write (``seq`` -1 is the warm-up); '' when acknowledged."""


async def drive(
    kind: str, n: int, seconds: float, before_go: Callable[[], None], send: Send
) -> LoadRun:
    """Warm every client up, call ``before_go``, then run them all until the time is up."""
    tallies = [Tally() for _ in range(n)]
    warm = await asyncio.gather(*(send(i, -1) for i in range(n)))
    before_go()
    started = time.monotonic()
    stop_at = started + seconds

    async def worker(i: int) -> None:
        tally = tallies[i]
        if warm[i]:
            tally.error(f"warm-up: {warm[i]}")
            return
        clock, seq = time.perf_counter_ns, 0
        while time.monotonic() < stop_at:
            t0 = clock()
            err = await send(i, seq)
            t1 = clock()
            seq += 1
            if err:
                tally.error(err)
            else:
                tally.acked += 1
                tally.latency_ns.append(t1 - t0)

    await asyncio.gather(*(worker(i) for i in range(n)))
    return LoadRun.of(kind, started, time.monotonic(), tallies)


async def _httpx_async(
    http: str, n: int, seconds: float, value: str, tag: str, before_go: Callable[[], None]
) -> LoadRun:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=f"http://{http}", timeout=TIMEOUT, limits=limits) as c:

        async def send(i: int, seq: int) -> str:
            try:
                resp = await c.post("/db/execute", json=body(tag, i, seq, value))
                return check_answer(resp.status_code, resp.json())
            except (httpx.HTTPError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}"

        return await drive("httpx_async", n, seconds, before_go, send)


async def _aiohttp(
    http: str, n: int, seconds: float, value: str, tag: str, before_go: Callable[[], None]
) -> LoadRun:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=n)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(
        f"http://{http}", connector=connector, timeout=timeout
    ) as session:

        async def send(i: int, seq: int) -> str:
            try:
                payload = body(tag, i, seq, value)
                async with session.post("/db/execute", json=payload) as resp:
                    return check_answer(resp.status, await resp.json(content_type=None))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}"

        return await drive("aiohttp", n, seconds, before_go, send)


async def _raw(
    http: str, n: int, seconds: float, value: str, tag: str, before_go: Callable[[], None]
) -> LoadRun:
    def request(i: int, seq: int) -> tuple[str, str, bytes]:
        return "POST", "/db/execute", json.dumps(body(tag, i, seq, value)).encode()

    def check(status: int, answer: bytes) -> str:
        try:
            return check_answer(status, json.loads(answer))
        except ValueError as exc:
            return f"{type(exc).__name__}: {exc}"

    return await raw_load("raw", http, n, seconds, request, check, before_go)


# ---- the minimal HTTP/1.1 client ---------------------------------------------------------------

Request = Callable[[int, int], tuple[str, str, bytes]]
"""``request(client, seq)``: the method, path and body of one request."""
Check = Callable[[int, bytes], str]
"""``check(status, body)``: '' for an acknowledged write, else what went wrong."""
Retry = Callable[[str, int], float | None]
"""``retry(error, seq)``: the pause (seconds) before the client sends the same request again,
or None to count the error and go on with the next request."""


class RawConn:
    """One keep-alive HTTP/1.1 connection to ``http`` (HOST:PORT) that writes the request bytes
    itself and reads a ``Content-Length`` framed answer: the least client CPU per request.
    (Re)opened on demand; after an error it is closed and the next request reconnects."""

    def __init__(self, http: str, timeout: float = TIMEOUT,
                 content_type: str = "application/json") -> None:  # fmt: skip
        self.http = http
        self.timeout = timeout
        self.content_type = content_type
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        if self._conn is None:
            host, port = self.http.rsplit(":", 1)
            self._conn = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), self.timeout
            )

    async def request(self, method: str, path: str, data: bytes = b"") -> tuple[int, bytes]:
        """Status and body; raises OSError, TimeoutError, IncompleteReadError or ValueError."""
        try:
            await self.open()
            assert self._conn is not None
            reader, writer = self._conn
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.http}\r\n"
                f"Content-Type: {self.content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            writer.write(head.encode() + data)
            raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            status, length = parse_head(raw_head)
            return status, await asyncio.wait_for(reader.readexactly(length), self.timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


RAW_ERRORS = (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError)
"""What :meth:`RawConn.request` raises when the exchange failed."""


async def raw_load(
    kind: str,
    http: str,
    n: int,
    seconds: float,
    request: Request,
    check: Check,
    before_go: Callable[[], None],
    content_type: str = "application/json",
    retry: Retry | None = None,
) -> LoadRun:
    """``n`` clients, each on its own :class:`RawConn` to ``http``, sending ``request(i, seq)``
    one at a time for ``seconds`` (after a warm-up request each, ``seq`` -1; a client whose
    warm-up fails sends nothing more)."""
    conns = [RawConn(http, content_type=content_type) for _ in range(n)]
    for c in conns:
        await c.open()
    retried = [0] * n

    async def send(i: int, seq: int) -> str:
        while True:
            try:
                status, answer = await conns[i].request(*request(i, seq))
            except RAW_ERRORS as exc:
                return f"{type(exc).__name__}: {exc}"
            err = check(status, answer)
            pause = retry(err, seq) if err and retry is not None else None
            if pause is None:
                return err
            if seq >= 0:
                retried[i] += 1  # the warm-up request's retries are not the measured load's
            await asyncio.sleep(pause)

    try:
        run = await drive(kind, n, seconds, before_go, send)
    finally:
        for c in conns:
            c.close()
    return replace(run, retries=sum(retried))


def parse_head(head: bytes) -> tuple[int, int]:
    """Status and Content-Length of an HTTP/1.1 response head (no chunked answers here)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, val = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(val)
    raise ValueError(f"no Content-Length in {head[:200]!r}")


# ---- group sizes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStats:
    """The writer's groups (transactions) of one phase, by how many requests each held."""

    groups: int
    writes: int
    mean: float
    p50: float
    p90: float
    max: int
    per_write_mean: float
    """The size of the group an average write was in (sum of size² / sum of size)."""

    @classmethod
    def of(cls, hist: dict[int, int]) -> GroupStats | None:
        hist = {k: v for k, v in hist.items() if v > 0}
        if not hist:
            return None
        sizes = np.array(sorted(hist), dtype=np.float64)
        counts = np.array([hist[int(s)] for s in sizes], dtype=np.float64)
        groups, writes = float(counts.sum()), float((sizes * counts).sum())
        cum = np.cumsum(counts) / groups

        def pct(p: float) -> float:
            return float(sizes[int(np.searchsorted(cum, p / 100.0))])

        return cls(
            groups=int(groups),
            writes=int(writes),
            mean=writes / groups,
            p50=pct(50),
            p90=pct(90),
            max=int(sizes[-1]),
            per_write_mean=float((sizes * sizes * counts).sum()) / writes,
        )


def hist_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[int, int]:
    """Group-size histogram of ``after`` minus ``before`` (``/status`` -> ``writers.main``)."""
    b = {int(k): int(v) for k, v in before.get("group_sizes", {}).items()}
    a = {int(k): int(v) for k, v in after.get("group_sizes", {}).items()}
    return {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0) > 0}

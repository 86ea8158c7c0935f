"""dqlite's side of the failover benchmark (``python -m bench.failover``): the same kill -9 of the
leader of a 3-node ``dqlite-demo`` cluster (Debian ``go-dqlite``), timed to the first write a
survivor acknowledges.

Each run: wait until every node answers writes and the cluster names its Raft leader; write to
the leader's API with a few clients for about a second (plus a random part of a second, so that
the kill falls anywhere in Raft's heartbeat cycle); ``SIGKILL`` the leader's process group and,
from that instant, send ``PUT /KEY`` to both survivors: each survivor's client starts a new
write on a new connection every 20 ms without abandoning the earlier ones (a write can wait in
the demo's driver while it looks for a leader; the demo answers ``Error: ...`` when it gives
up), until one answers ``done``; then restart the killed node on its data directory (it
rejoins as a voter) before the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.common.cluster import DqliteCluster, DqliteNode, attempt, kill_group
from bench.common.load import RAW_ERRORS, RawConn

RETRY_PAUSE = 0.01
STAGGER = 0.02
"""After the kill, each survivor's client starts a new write this often (seconds)."""
TIMEOUT = 60.0
"""A run without an acknowledged write for this long fails."""


@dataclass(frozen=True)
class DqliteFailover:
    run: int
    killed: str
    """The killed leader's Raft address."""
    total_s: float | None
    """Kill to the first acknowledged write (None: none within :data:`TIMEOUT`)."""
    via: str
    """The survivor whose API answered it."""
    leader_after: str
    refused: int
    acked_before: int


class Sink(Protocol):
    errors: list[str]
    dqlite_runs: list[DqliteFailover]


def _done(status: int, answer: bytes) -> bool:
    return status == 200 and answer == b"done\n"


async def _probe(
    leader: DqliteNode, survivors: list[DqliteNode], tag: str, load_s: float, clients: int
) -> tuple[float | None, str, int, int, DqliteNode]:
    """(seconds to the first acknowledged write, its API, refusals, writes acknowledged before
    the kill, the killed node)."""
    killed = asyncio.Event()
    done = asyncio.Event()
    acked_before = [0]
    refused = [0]
    result: list[tuple[float, str]] = []

    async def before(i: int) -> None:
        conn, seq = RawConn(leader.api, timeout=2.0, content_type="text/plain"), 0
        try:
            while not killed.is_set():
                seq += 1
                try:
                    status, answer = await conn.request("PUT", f"/{tag}-b{i}-{seq}", b"v")
                except RAW_ERRORS:
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                if _done(status, answer):
                    acked_before[0] += 1
        finally:
            conn.close()

    async def attempt_write(node: DqliteNode, t0: float, seq: int) -> None:
        conn = RawConn(node.api, timeout=TIMEOUT, content_type="text/plain")
        try:
            status, answer = await conn.request("PUT", f"/{tag}-a{node.index}-{seq}", b"v")
        except RAW_ERRORS:
            status, answer = 0, b""
        finally:
            conn.close()
        if _done(status, answer):
            if not done.is_set():
                result.append((time.monotonic() - t0, node.api))
                done.set()
        else:
            refused[0] += 1

    async def after(node: DqliteNode, t0: float) -> None:
        """A new write every :data:`STAGGER` seconds (each on its own connection, none
        abandoned), so that a write stuck in the driver does not hide a later success."""
        tasks: set[asyncio.Task[None]] = set()
        seq = 0
        try:
            while not done.is_set():
                seq += 1
                task = asyncio.create_task(attempt_write(node, t0, seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), STAGGER)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    writers = [asyncio.create_task(before(i)) for i in range(clients)]
    await asyncio.sleep(load_s)
    t0 = time.monotonic()
    kill_group(leader)
    killed.set()
    probes = [asyncio.create_task(after(n, t0)) for n in survivors]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), TIMEOUT)
    done.set()
    await asyncio.gather(*writers, *probes)
    total, via = result[0] if result else (None, "")
    return total, via, refused[0], acked_before[0], leader


def one_failover(dq: DqliteCluster, run: int, load_s: float, clients: int) -> DqliteFailover:
    import uvloop

    dq.wait_ready(60.0)
    leader = dq.leader()
    survivors = [n for n in dq.nodes if n is not leader]
    total, via, refused, before, killed = uvloop.run(
        _probe(leader, survivors, f"f{run}", load_s, clients)
    )
    dq.reap(killed)
    after = dq.leader().db if total is not None else ""
    dq.restart(killed)  # rejoins on its data directory
    return DqliteFailover(run, killed.db, total, via, after, refused, before)


def run_dqlite(res: Sink, root: Path, runs: int, load_s: float, clients: int,
               rng: random.Random, log: Callable[[str], None]) -> None:  # fmt: skip
    """``runs`` failovers of one 3-node dqlite-demo cluster (started once, the killed node
    restarted after each run)."""
    try:
        with attempt(res, "dqlite cluster", log), DqliteCluster(root) as dq:
            dq.start()
            log(f"dqlite: 3 nodes up, leader {dq.leader().db}")
            for run in range(1, runs + 1):
                with attempt(res, f"dqlite run {run}", log):
                    r = one_failover(dq, run, load_s + rng.uniform(0.0, 1.0), clients)
                    res.dqlite_runs.append(r)
                    took = "nothing acknowledged" if r.total_s is None else f"{r.total_s:.2f} s"
                    log(f"dqlite run {run}/{runs}: leader {r.killed} killed, first write "
                        f"acknowledged after {took} via {r.via or '-'}, new leader "
                        f"{r.leader_after or '?'}; {r.refused} refused")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)

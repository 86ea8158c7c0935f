"""The write peers of ``python -m bench.sync`` that are not clusters of nodes: redis-server in
three persistence settings and plain SQLite, measured at the same concurrency levels, in the same
repeats and with the same key/value writes as litecluster and dqlite.

* redis-server (:data:`REDIS`): without persistence (``--save "" --appendonly no``), with
  ``appendonly yes`` and ``appendfsync everysec``, and with ``appendfsync always`` plus one
  replica (same settings) and ``WAIT 1 0`` after each ``SET``. The load is
  ``bench.kv.load.durable_load``: ``clients`` RESP connections in this process, one ``SET`` of a new
  key with a 100-byte value at a time (and ``WAIT 1 0`` in the same write for the replicated
  setting).
* Plain SQLite (:func:`sqlite_phase`): ``clients`` threads, each with its own connection to one
  WAL database with ``synchronous=FULL``, each write ``INSERT OR REPLACE INTO model(key, value)``
  of a new key in its own transaction (autocommit); a write refused with ``database is locked``
  after the 5 s busy timeout is an error. No server: the *nodes* CPU is n/a and the load CPU is
  SQLite's own work.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from bench.common.cluster import attempt, cpu_seconds
from bench.common.nodes import machine_cpu
from bench.common.reads import RedisServer
from bench.common.resp import AOF_ALWAYS, durable_load, redis_pair
from bench.sync.report import Phase, Preset, Results
from litecluster.engine.sqlite import DatabaseError, connect

Log = Callable[[str], None]
SCHEMA = "CREATE TABLE IF NOT EXISTS model (key TEXT, value TEXT, UNIQUE(key))"
UPSERT = "INSERT OR REPLACE INTO model(key, value) VALUES(?, ?)"


@dataclass(frozen=True)
class RedisSetup:
    args: tuple[str, ...]
    """redis-server options after the defaults (``--save "" --appendonly no``); the replica
    gets them too (``--repl-diskless-sync-delay 0`` only shortens its first sync)."""
    wait: int
    """``WAIT wait 0`` after each SET (0: none)."""
    replica: bool = False


REDIS = {
    "redis_none": RedisSetup((), 0),
    "redis_everysec": RedisSetup(("--appendonly", "yes", "--appendfsync", "everysec"), 0),
    "redis_always_wait": RedisSetup((*AOF_ALWAYS, "--repl-diskless-sync-delay", "0"), 1, True),
}
"""Variant -> its redis-server setting (one server, or a primary and its replica)."""


class Sampler:
    """CPU of the nodes, of this process (the load) and of the machine over a phase."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.start: tuple[float, float, float, float, float] | None = None

    def take(self) -> tuple[float, float, float, float, float]:
        busy, total = machine_cpu()
        own = psutil.Process(os.getpid()).cpu_times()
        return time.monotonic(), cpu_seconds(self.pids()), own.user + own.system, busy, total

    def begin(self) -> None:
        self.start = self.take()

    def end(self) -> tuple[float, float, float]:
        """Cores used by the nodes, cores used by the load, share of the machine busy."""
        assert self.start is not None
        t1, nodes1, own1, busy1, total1 = self.take()
        t0, nodes0, own0, busy0, total0 = self.start
        span = max(1e-9, t1 - t0)
        busy = (busy1 - busy0) / max(1e-9, total1 - total0)
        return (nodes1 - nodes0) / span, (own1 - own0) / span, busy


def _percentiles(latency_ns: np.ndarray) -> tuple[float, float, float]:
    if not latency_ns.size:
        return (float("nan"),) * 3
    lat = np.percentile(latency_ns, (50, 99, 100)) / 1e6
    return float(lat[0]), float(lat[1]), float(lat[2])


# ---- redis-server ------------------------------------------------------------------------------


def redis_phase(
    variant: str, rep: int, clients: int, port: int, pids: list[int], p: Preset, value: bytes
) -> Phase:
    sampler = Sampler(lambda: pids)
    run = durable_load(variant, port, None, clients, p.seconds, p.warmup_s, value,
                       f"w{rep}-{variant}-{clients}", REDIS[variant].wait, sampler.begin)  # fmt: skip
    node_cores, load_cores, busy = sampler.end()
    return Phase(
        variant=variant, repeat=rep, clients=clients, seconds=run.wall_s, acked=run.acked,
        errors=run.errors, retries=0, first_error=run.first_error, tps=run.acked_tps,
        latency_ms=_percentiles(run.latency_ns), node_cores=node_cores, load_cores=load_cores,
        machine_busy=busy,
    )  # fmt: skip


def redis_variants(
    res: Results, rep: int, p: Preset, root: Path, variants: tuple[str, ...], value: bytes,
    summary: Callable[[Phase], str], log: Log,
) -> None:  # fmt: skip
    """Each redis-server setting of ``variants`` in turn: started fresh, measured at every
    concurrency level, killed."""
    for variant in (v for v in REDIS if v in variants):
        setup = REDIS[variant]
        with attempt(res, f"{variant} repeat {rep}/{p.repeats}", log), contextlib.ExitStack() as st:
            if setup.replica:
                primary, replica = st.enter_context(redis_pair(root / variant, setup.args))
                servers = [primary, replica]
            else:
                primary = st.enter_context(RedisServer(root / variant, setup.args))
                primary.start()
                servers = [primary]
            pids = [s.proc.pid for s in servers if s.proc is not None]
            for clients in p.clients:
                with attempt(res, f"{variant} {clients} clients repeat {rep}/{p.repeats}", log):
                    phase = redis_phase(variant, rep, clients, primary.port, pids, p, value)
                    res.phases.append(phase)
                    log(f"{variant} {clients} clients repeat {rep}/{p.repeats}: {summary(phase)}")


# ---- plain SQLite ------------------------------------------------------------------------------


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(db) + suffix)


def sqlite_phase(root: Path, rep: int, clients: int, p: Preset, value: str) -> Phase:
    """``clients`` threads writing one WAL database (``synchronous=FULL``), one transaction per
    write: ``p.warmup_s`` untimed, then ``p.seconds`` measured."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "plain.db"
    _remove(db)
    setup = connect(db)
    conns = []
    try:
        setup.execute("PRAGMA journal_mode=WAL").fetchall()
        setup.execute(SCHEMA)
        for _ in range(clients):
            conn = connect(db)
            conn.execute("PRAGMA synchronous=FULL")
            conns.append(conn)
        lats: list[list[int]] = [[] for _ in range(clients)]
        errors = [0] * clients
        first_error = [""]
        ready = threading.Barrier(clients + 1, timeout=60.0)
        phase_end = [time.monotonic() + p.warmup_s, 0.0]

        def worker(i: int) -> None:
            execute, out, clock = conns[i].execute, lats[i], time.perf_counter_ns
            seq = 0
            for measured in (False, True):
                ready.wait()
                ready.wait()
                while time.monotonic() < phase_end[measured]:
                    t0 = clock()
                    try:
                        execute(UPSERT, (f"w{rep}-{i}-{seq}-{int(measured)}", value))
                    except DatabaseError as exc:  # "database is locked" after the busy timeout
                        if measured:
                            errors[i] += 1
                            first_error[0] = first_error[0] or f"{type(exc).__name__}: {exc}"
                        continue
                    finally:
                        seq += 1
                    if measured:
                        out.append(clock() - t0)

        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in pool:
            t.start()
        ready.wait()
        phase_end[0] = time.monotonic() + p.warmup_s
        ready.wait()
        ready.wait()  # warm-up over: every thread is back at the barrier
        sampler = Sampler(list)
        sampler.begin()
        started = time.monotonic()
        phase_end[1] = started + p.seconds
        ready.wait()
        for t in pool:
            t.join()
        wall = time.monotonic() - started
        _nodes, load_cores, busy = sampler.end()
    finally:
        for conn in conns:
            conn.close()
        setup.close()
        _remove(db)
    all_ns = np.fromiter((x for lat in lats for x in lat), dtype=np.int64)
    return Phase(
        variant="sqlite", repeat=rep, clients=clients, seconds=wall, acked=int(all_ns.size),
        errors=sum(errors), retries=0, first_error=first_error[0][:300],
        tps=all_ns.size / wall if wall > 0 else float("nan"), latency_ms=_percentiles(all_ns),
        node_cores=None, load_cores=load_cores, machine_busy=busy,
    )  # fmt: skip


def sqlite_variant(
    res: Results, rep: int, p: Preset, root: Path, value: str, summary: Callable[[Phase], str],
    log: Log,
) -> None:  # fmt: skip
    for clients in p.clients:
        with attempt(res, f"sqlite {clients} clients repeat {rep}/{p.repeats}", log):
            phase = sqlite_phase(root, rep, clients, p, value)
            res.phases.append(phase)
            log(f"sqlite {clients} clients repeat {rep}/{p.repeats}: {summary(phase)}")

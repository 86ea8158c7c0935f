"""The measured write phases of the SQL benchmark and their plain-SQLite peer.

* :func:`write_phase`: one load (``bench.common.load.run_load``) against the primary of a running
  cluster, with the primary's ``/status`` read right before the clients go and right after the
  last answer (txid, the writer's group-size histogram), the CPU of every process sampled over
  the same span, and then the primary's ``/status`` polled until every replica has acknowledged
  the primary's txid at the end: the writes count as *replicated* at that instant.
* :func:`plain_phase`: the same single-row inserts, one autocommit transaction each, on a plain
  WAL database (sqlean) with ``synchronous`` FULL or NORMAL, by 1 thread or by several threads
  each with its own connection; no node running.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.common.load import CREATE_T, INSERT_T, GroupStats, LoadRun, hist_delta, run_load
from bench.common.nodes import DB, Cluster, machine_cpu
from litecluster.engine.sqlite import DatabaseError, connect

Log = Callable[[str], None]


# ---- the cluster phase -------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    at: float
    own: float
    """This process (the load generator)."""
    primary: float
    replicas: float
    """All replicas together."""
    busy: float
    """The machine, all cores (psutil.cpu_times)."""
    total: float

    @classmethod
    def take(cls, cluster: Cluster) -> CpuSample:
        def cpu(pid: int) -> float:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)

        assert cluster.primary is not None
        assert cluster.primary.proc is not None
        reps = sum(cpu(r.proc.pid) for r in cluster.replicas if r.proc is not None)
        busy, total = machine_cpu()
        return cls(
            time.monotonic(), cpu(os.getpid()), cpu(cluster.primary.proc.pid), reps, busy, total
        )


@dataclass(frozen=True)
class WriteRun:
    """One write phase of one client kind in one repeat."""

    repeat: int
    kind: str
    clients: int
    seconds: float
    acked: int
    errors: int
    first_error: str
    acked_tps: float
    replicated_tps: float | None
    """Acknowledged writes over the time from the start until every replica acknowledged the
    primary's txid at the end of the phase (None: they did not within the timeout)."""
    drain_s: float | None
    """From the last answer to that instant."""
    latency_ms: tuple[float, float, float]
    """p50, p99, max of send-to-answer of the acknowledged writes."""
    records: int
    """txids the primary's database advanced during the phase (one per group)."""
    groups: GroupStats | None
    own_cores: float
    primary_cores: float
    replica_cores: float
    machine_busy: float
    """Share of the machine's CPU (all cores) busy during the phase, whoever used it."""


def _replica_txids(status: dict[str, Any], ids: list[str]) -> list[int]:
    best = dict.fromkeys(ids, -1)
    for rep in status.get("replicas", []):
        if rep["node_id"] in best:
            txid = int(rep.get("databases", {}).get(DB, {}).get("txid", -1))
            best[rep["node_id"]] = max(best[rep["node_id"]], txid)
    return [best[i] for i in ids]


def wait_replicated(cluster: Cluster, txid: int, timeout: float) -> float | None:
    """The ``time.monotonic()`` at which the primary's ``/status`` showed every replica at
    ``txid`` or later (polled every 5 ms); None after ``timeout`` seconds."""
    ids = [r.node_id for r in cluster.replicas]
    deadline = time.monotonic() + timeout
    while True:
        status = cluster.primary_status()
        now = time.monotonic()
        if min(_replica_txids(status, ids), default=txid) >= txid:
            return now
        if now > deadline:
            return None
        cluster.check_alive()
        time.sleep(0.005)


def prepare_table(cluster: Cluster) -> None:
    import httpx

    assert cluster.primary is not None
    resp = httpx.post(f"{cluster.primary.url}/db/execute", json=[CREATE_T], timeout=30.0)
    resp.raise_for_status()
    if "error" in resp.json()["results"][0]:
        raise RuntimeError(f"creating the table failed: {resp.text}")


def write_phase(
    cluster: Cluster,
    repeat: int,
    kind: str,
    clients: int,
    seconds: float,
    value: str,
    drain_timeout: float,
) -> WriteRun:
    assert cluster.primary is not None
    marks: dict[str, Any] = {}

    def before_go() -> None:
        status = cluster.primary_status()
        marks["txid"] = int(status["databases"][DB]["txid"])
        marks["writers"] = status.get("writers", {}).get(DB, {})
        marks["cpu"] = CpuSample.take(cluster)

    load: LoadRun = run_load(
        kind, cluster.primary.http, clients, seconds, value, f"{kind}{repeat}", before_go
    )
    cpu1 = CpuSample.take(cluster)
    status = cluster.primary_status()
    head = int(status["databases"][DB]["txid"])
    seen = wait_replicated(cluster, head, drain_timeout)
    cpu0: CpuSample = marks["cpu"]
    span = cpu1.at - cpu0.at
    lat = np.percentile(load.latency_ns, (50, 99, 100)) / 1e6 if load.acked else [np.nan] * 3
    return WriteRun(
        repeat=repeat,
        kind=kind,
        clients=clients,
        seconds=load.wall_s,
        acked=load.acked,
        errors=load.errors,
        first_error=load.first_error,
        acked_tps=load.acked_tps,
        replicated_tps=None if seen is None else load.acked / (seen - load.started),
        drain_s=None if seen is None else max(0.0, seen - load.ended),
        latency_ms=(float(lat[0]), float(lat[1]), float(lat[2])),
        records=head - marks["txid"],
        groups=GroupStats.of(hist_delta(marks["writers"], status.get("writers", {}).get(DB, {}))),
        own_cores=(cpu1.own - cpu0.own) / span,
        primary_cores=(cpu1.primary - cpu0.primary) / span,
        replica_cores=(cpu1.replicas - cpu0.replicas) / span,
        machine_busy=(cpu1.busy - cpu0.busy) / max(1e-9, cpu1.total - cpu0.total),
    )


def write_summary(r: WriteRun) -> str:
    rep = "n/a" if r.replicated_tps is None else f"{r.replicated_tps:,.0f}"
    g = r.groups
    groups = "n/a" if g is None else f"mean {g.mean:.1f} p50 {g.p50:.0f} max {g.max}"
    return (
        f"{r.acked_tps:,.0f} acked/s, {rep} replicated/s, {r.errors} errors, groups {groups}, "
        f"cores: load {r.own_cores:.2f} primary {r.primary_cores:.2f} "
        f"replicas {r.replica_cores:.2f}"
    )


# ---- plain SQLite ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainRun:
    repeat: int
    synchronous: str
    threads: int
    txns: int
    errors: int
    tps: float
    latency_ms: tuple[float, float]
    """p50 and p99 of one insert (its whole transaction)."""

    @property
    def key(self) -> str:
        return plain_key(self.synchronous, self.threads)


def plain_key(synchronous: str, threads: int) -> str:
    return f"{synchronous.lower()}_{threads}"


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(db) + suffix)


def plain_phase(
    root: Path, repeat: int, synchronous: str, threads: int, seconds: float, value: str
) -> PlainRun:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "plain.db"
    _remove(db)
    setup = connect(db)
    conns = []
    try:
        setup.execute("PRAGMA journal_mode=WAL").fetchall()
        setup.execute(CREATE_T)
        for _ in range(threads):
            conn = connect(db)
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conns.append(conn)
        lats: list[list[int]] = [[] for _ in range(threads)]
        errors = [0] * threads
        ready = threading.Barrier(threads + 1, timeout=60.0)
        stop_at = [0.0]

        def worker(i: int) -> None:
            execute, out, clock = conns[i].execute, lats[i], time.perf_counter_ns
            ready.wait()
            ready.wait()
            seq = 0
            while time.monotonic() < stop_at[0]:
                t0 = clock()
                try:
                    execute(INSERT_T, (f"plain-{i}-{seq}", value))
                except DatabaseError:  # "database is locked" after the busy timeout
                    errors[i] += 1
                    continue
                finally:
                    seq += 1
                out.append(clock() - t0)

        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        ready.wait()
        started = time.monotonic()
        stop_at[0] = started + seconds
        ready.wait()
        for t in pool:
            t.join()
        wall = time.monotonic() - started
    finally:
        for conn in conns:
            conn.close()
        setup.close()
        _remove(db)
    all_ns = np.fromiter((x for lat in lats for x in lat), dtype=np.int64)
    p = np.percentile(all_ns, (50, 99)) / 1e6 if all_ns.size else [np.nan, np.nan]
    return PlainRun(
        repeat=repeat,
        synchronous=synchronous,
        threads=threads,
        txns=int(all_ns.size),
        errors=sum(errors),
        tps=all_ns.size / wall,
        latency_ms=(float(p[0]), float(p[1])),
    )

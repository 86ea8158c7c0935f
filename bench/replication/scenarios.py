"""The measured phases of the replication benchmark and the result object of each.

* :func:`run_setup`: one cluster (a primary and ``replicas`` replicas) with an application
  writer on the primary's file; one open-loop phase per offered rate with the reader child
  measuring commit-to-visible (:class:`LagRun`), then one closed-loop phase (:class:`MaxRun`).
  After stopping the nodes it reads the primary's txlog for the uncompressed size of the records
  the phases produced (:class:`SetupRun`).
* :func:`run_fanout`: a cluster with ``n`` replicas and only the closed-loop phase.
* :func:`run_plain`: the same closed-loop writer on a plain WAL database, no node running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common.nodes import Cluster, Counters, LogSizes, Setup, log_sizes
from bench.common.report import percentiles_ms
from bench.replication.load import ReaderProc, Writer, WriteRun, plain_run, visible_lag_ns

LAG_PS = (50.0, 99.0, 99.9, 100.0)
WRITER_PS = (50.0, 99.0, 100.0)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Params:
    rates: tuple[float, ...]
    paced_seconds: float
    max_seconds: float
    warmup_s: float
    """Transactions of the first ``warmup_s`` seconds of a paced phase are left out of the lag
    percentiles (they are still counted everywhere else)."""
    replicas: int = 2
    value_bytes: int = 100
    poll_us: float = 50.0
    drain_timeout: float = 120.0
    start_timeout: float = 60.0


@dataclass
class Phase:
    """Counters of one phase (from before the writer started until every replica applied it)."""

    txns: int
    replicas: int
    records: int
    """Records the primary's txlog gained (one per transaction, plus WAL-restart no-ops)."""
    records_shipped: int
    bytes_shipped: int
    applied: list[int]
    replica_cpu_s: list[float]
    primary_cpu_s: float
    lo_bytes: int
    reconnects: int
    errors: int
    wall_s: float
    machine_busy: float
    """Share of the machine's CPU (all cores) that was busy during the phase, whoever used it."""
    end_lag_records: list[int] = field(default_factory=list)
    """Each replica's lag in records in the primary's ``/status`` right after the writer stopped."""
    end_lag_ms: list[float] = field(default_factory=list)

    @classmethod
    def between(cls, a: Counters, b: Counters, txns: int) -> Phase:
        return cls(
            txns=txns,
            replicas=len(b.applied),
            records=b.head - a.head,
            records_shipped=b.records_shipped - a.records_shipped,
            bytes_shipped=b.bytes_shipped - a.bytes_shipped,
            applied=[y - x for x, y in zip(a.applied, b.applied, strict=True)],
            replica_cpu_s=[y - x for x, y in zip(a.replica_cpu, b.replica_cpu, strict=True)],
            primary_cpu_s=b.primary_cpu - a.primary_cpu,
            lo_bytes=b.lo_bytes - a.lo_bytes,
            reconnects=b.reconnects - a.reconnects,
            errors=b.errors - a.errors,
            wall_s=b.at - a.at,
            machine_busy=(b.machine_busy - a.machine_busy) / (b.machine_total - a.machine_total)
            if b.machine_total > a.machine_total
            else float("nan"),
        )

    @property
    def node_cpu_share(self) -> float:
        """CPU of the node processes as a share of the machine (all cores) over the phase."""
        cores = os.cpu_count() or 1
        used = self.primary_cpu_s + sum(self.replica_cpu_s)
        return used / (self.wall_s * cores) if self.wall_s > 0 else float("nan")

    @property
    def bytes_per_tx(self) -> float | None:
        """Record bytes shipped per transaction and replica (``bytes_shipped`` counter)."""
        return self.bytes_shipped / (self.replicas * self.txns) if self.replicas else None

    @property
    def bytes_per_record(self) -> float | None:
        return self.bytes_shipped / self.records_shipped if self.records_shipped else None

    @property
    def lo_per_tx(self) -> float | None:
        return self.lo_bytes / (self.replicas * self.txns) if self.replicas else None

    @property
    def replica_cpu_ms_per_1k(self) -> float | None:
        """Mean over the replicas of CPU milliseconds per 1,000 records applied."""
        vals = [c / n * 1e6 for c, n in zip(self.replica_cpu_s, self.applied, strict=True) if n]
        return sum(vals) / len(vals) if vals else None

    @property
    def primary_cpu_ms_per_1k(self) -> float | None:
        return self.primary_cpu_s / self.records * 1e6 if self.records else None

    @property
    def max_end_lag(self) -> int | None:
        return max(self.end_lag_records) if self.end_lag_records else None

    @property
    def max_end_lag_ms(self) -> float | None:
        return max(self.end_lag_ms) if self.end_lag_ms else None


def _writer_ms(run: WriteRun) -> list[float]:
    return percentiles_ms(run.commit_ns - run.begin_ns, WRITER_PS)


@dataclass
class LagRun:
    setup: str
    rate: float
    txns: int
    achieved_tps: float
    writer_ms: list[float]
    """Writer latency of one transaction (``INSERT`` call to return): p50, p99, max."""
    lag_each_ms: list[float]
    """Commit-to-visible on a replica, every (transaction, replica) pair: p50 p99 p99.9 max."""
    lag_all_ms: list[float]
    """Commit-to-visible on every replica (the slower of the replicas for each transaction)."""
    measured: int
    """Transactions in the percentiles (after the warm-up)."""
    unseen: int
    """Transactions some replica never showed within the drain timeout."""
    early: float
    """Share of (transaction, replica) pairs visible before the writer's ``INSERT`` returned."""
    poll_us: float
    phase: Phase


@dataclass
class MaxRun:
    setup: str
    replicas: int
    txns: int
    commit_tps: float
    writer_cpu_us: float
    """CPU time of the writing process per transaction, in microseconds."""
    writer_ms: list[float]
    """Writer latency of one transaction: p50, p99, max."""
    writer_slow: float
    """Share of the phase's time the writer spent in transactions longer than 1 ms."""
    drain_s: float | None
    """From the writer's last commit until every replica file showed it (None: timed out)."""
    replicated_tps: float | None
    """Transactions per second from the first commit until the last was visible everywhere."""
    phase: Phase
    converged: bool = True


@dataclass
class PlainRun:
    synchronous: str
    txns: int
    commit_tps: float
    writer_cpu_us: float
    writer_ms: list[float]
    writer_slow: float


@dataclass
class SetupRun:
    setup: Setup
    lags: list[LagRun] = field(default_factory=list)
    max: MaxRun | None = None
    sizes: LogSizes | None = None
    txns: int = 0
    """Transactions of every measured phase (the records of ``sizes``, WAL-restart no-ops aside)."""
    bytes_shipped: int = 0
    records_shipped: int = 0


def _lag_phase(cl: Cluster, w: Writer, setup: Setup, rate: float, p: Params) -> LagRun:
    reader = ReaderProc(
        cl.root / "reader.npz", cl.replica_dbs, w.next_seq, p.poll_us, p.drain_timeout
    )
    try:
        reader.wait_ready(p.start_timeout)
        c0 = cl.counters()
        run = w.paced(rate, p.paced_seconds, p.paced_seconds * 1.25 + 0.5)
        end = cl.counters()
        seen = reader.finish(run.last_seq, p.drain_timeout + 30)
        c1 = cl.counters_end()
    finally:
        reader.kill()
    phase = Phase.between(c0, c1, run.txns)
    phase.end_lag_records, phase.end_lag_ms = list(end.lag_records), list(end.lag_ms)
    pairs = [visible_lag_ns(run, s, t) for s, t in zip(seen.seqs, seen.times, strict=True)]
    skip = min(int(rate * p.warmup_s), run.txns - 1)
    lags = np.stack([lag for lag, _ in pairs])[:, skip:]
    ok = np.stack([mask for _, mask in pairs])[:, skip:]
    each = lags[ok]
    everywhere = ok.all(axis=0)
    worst = lags.max(axis=0)[everywhere]
    return LagRun(
        setup=setup.key,
        rate=rate,
        txns=run.txns,
        achieved_tps=run.tps,
        writer_ms=_writer_ms(run),
        lag_each_ms=percentiles_ms(each, LAG_PS),
        lag_all_ms=percentiles_ms(worst, LAG_PS),
        measured=int(lags.shape[1]),
        unseen=int((~everywhere).sum()),
        early=float((each < 0).mean()) if each.size else 0.0,
        poll_us=seen.poll_us,
        phase=phase,
    )


def _max_phase(cl: Cluster, w: Writer, setup: Setup, seconds: float, p: Params) -> MaxRun:
    c0 = cl.counters()
    run = w.closed(seconds)
    end = cl.counters()
    seen_at = cl.wait_rows(run.last_seq, p.drain_timeout)
    converged = cl.wait_converged(p.drain_timeout) if seen_at is not None else False
    c1 = cl.counters_end()
    phase = Phase.between(c0, c1, run.txns)
    phase.end_lag_records, phase.end_lag_ms = list(end.lag_records), list(end.lag_ms)
    last_commit = int(run.commit_ns[-1])
    drain = None if seen_at is None else max(0.0, seen_at - last_commit / 1e9)
    replicated = None
    if seen_at is not None and cl.replicas:
        replicated = run.txns / (seen_at - int(run.begin_ns[0]) / 1e9)
    return MaxRun(
        setup=setup.key,
        replicas=len(cl.replicas),
        txns=run.txns,
        commit_tps=run.tps,
        writer_cpu_us=run.cpu_s / run.txns * 1e6,
        writer_ms=_writer_ms(run),
        writer_slow=run.slow_share(),
        drain_s=drain if cl.replicas else None,
        replicated_tps=replicated,
        phase=phase,
        converged=converged,
    )


def _bootstrap(cl: Cluster, setup: Setup, p: Params) -> Writer:
    w = Writer(cl.primary_db, setup.writer_sync, p.value_bytes)
    try:
        seq = w.create_schema()
        if cl.wait_rows(seq, p.start_timeout) is None:
            raise RuntimeError(f"replicas did not receive the schema: {cl.max_seqs()}")
    except BaseException:
        w.close()
        raise
    return w


def run_setup(setup: Setup, root: Path, p: Params, log: Log) -> SetupRun:
    out = SetupRun(setup)
    with Cluster(root, setup) as cl:
        try:
            cl.start(p.replicas, p.start_timeout)
            w = _bootstrap(cl, setup, p)
            try:
                first = cl.counters().head + 1
                for rate in p.rates:
                    lag = _lag_phase(cl, w, setup, rate, p)
                    out.lags.append(lag)
                    log(
                        f"{setup.key} {rate:,.0f}/s: achieved {lag.achieved_tps:,.0f} tx/s, lag "
                        f"p50 {lag.lag_each_ms[0]:.2f} p99 {lag.lag_each_ms[1]:.2f} p99.9 "
                        f"{lag.lag_each_ms[2]:.2f} ms (poll {lag.poll_us:.0f} µs)"
                    )
                out.max = _max_phase(cl, w, setup, p.max_seconds, p)
                log(f"{setup.key} max: {max_summary(out.max)}")
            finally:
                w.close()
            last = cl.counters().head
            codes = cl.stop()
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{cl.log_tails()}") from exc
    if any(c not in (0, None) for c in codes):
        log(f"{setup.key}: node exit codes {codes}")
    phases = [lag.phase for lag in out.lags] + ([out.max.phase] if out.max else [])
    out.txns = sum(ph.txns for ph in phases)
    out.bytes_shipped = sum(ph.bytes_shipped for ph in phases)
    out.records_shipped = sum(ph.records_shipped for ph in phases)
    t0 = time.perf_counter()
    out.sizes = log_sizes(cl.txlog_dir, first, last)
    log(
        f"{setup.key}: read {out.sizes.records:,} txlog records in {time.perf_counter() - t0:.1f} s"
    )
    return out


def run_fanout(setup: Setup, replicas: int, root: Path, p: Params, seconds: float) -> MaxRun:
    with Cluster(root, setup) as cl:
        try:
            cl.start(replicas, p.start_timeout)
            w = _bootstrap(cl, setup, p)
            try:
                return _max_phase(cl, w, setup, seconds, p)
            finally:
                w.close()
                cl.stop()
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{cl.log_tails()}") from exc


def run_wide_lag(setup: Setup, replicas: int, root: Path, p: Params) -> list[LagRun]:
    """Commit-to-visible at each fixed rate of ``p`` on a cluster of ``replicas`` replicas."""
    with Cluster(root, setup) as cl:
        try:
            cl.start(replicas, p.start_timeout)
            w = _bootstrap(cl, setup, p)
            try:
                return [_lag_phase(cl, w, setup, rate, p) for rate in p.rates]
            finally:
                w.close()
                cl.stop()
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{cl.log_tails()}") from exc


def run_plain(root: Path, synchronous: str, seconds: float, value_bytes: int) -> PlainRun:
    run = plain_run(root, synchronous, seconds, value_bytes)
    return PlainRun(
        synchronous=synchronous,
        txns=run.txns,
        commit_tps=run.tps,
        writer_cpu_us=run.cpu_s / run.txns * 1e6,
        writer_ms=_writer_ms(run),
        writer_slow=run.slow_share(),
    )


def max_summary(r: MaxRun) -> str:
    drain = "n/a" if r.drain_s is None else f"{r.drain_s:.2f} s"
    return (
        f"{r.commit_tps:,.0f} commits/s with {r.replicas} replicas, lag at end "
        f"{r.phase.max_end_lag} records, drained in {drain}, replica CPU "
        f"{r.phase.replica_cpu_ms_per_1k or float('nan'):.0f} ms/1k records"
    )

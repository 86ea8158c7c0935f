"""The generated replication section of docs/BENCHMARKS.md: every figure comes from a result.

Only the text between :data:`START` and :data:`END` is (re)written; the markers are appended at
the end of the file when absent, and everything else in the file is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.common.nodes import Setup
from bench.common.report import (
    Spread,
    errors_section,
    fmt_num,
    fmt_ratio,
    fmt_spread,
    machine_section,
    ratio_spread,
    render_section,
    spread,
    table_section,
    verdict,
    write_section,
)
from bench.replication.scenarios import LagRun, MaxRun, Phase, PlainRun, SetupRun

START = "<!-- bench:replication:start -->"
END = "<!-- bench:replication:end -->"

# Targets from the issue (inputs of the generator, not measurements).
TARGET_RATE = 5000.0
TARGET_P50_MS = 1.0
TARGET_P99_MS = 10.0
TARGET_FANOUT = 0.8
"""The write rate with many replicas must stay within 20% of the rate with one."""

T = TypeVar("T")


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    setups: list[Setup]
    fanout_setup: Setup
    fanout_counts: tuple[int, ...]
    runs: dict[str, list[SetupRun]] = field(default_factory=dict)
    plain: dict[str, list[PlainRun]] = field(default_factory=dict)
    fanout: dict[int, list[MaxRun]] = field(default_factory=dict)
    wide: list[LagRun] = field(default_factory=list)
    """Commit-to-visible at the fixed rates on the wide cluster (``wide_replicas``)."""
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---- helpers -------------------------------------------------------------------------------------


def _fmt(runs: Iterable[T], get: Callable[[T], float | None], digits: int = 3) -> str:
    return fmt_spread(spread(runs, get), digits)


def _tps_ratio(a: Sequence[MaxRun | PlainRun], b: Sequence[MaxRun | PlainRun]) -> Spread | None:
    """Per-repeat ratios of the commit rates (run i of ``a`` against run i of ``b``)."""
    return ratio_spread((x.commit_tps, y.commit_tps) for x, y in zip(a, b, strict=False))


def _lag_runs(res: Results, key: str, rate: float) -> list[LagRun]:
    return [lag for run in res.runs.get(key, []) for lag in run.lags if lag.rate == rate]


def _max_runs(res: Results, key: str) -> list[MaxRun]:
    return [run.max for run in res.runs.get(key, []) if run.max is not None]


# ---- sections ------------------------------------------------------------------------------------


def _fanout_ratio(res: Results) -> tuple[int, int, Spread | None]:
    lo, hi = min(res.fanout_counts[1:] or (1,)), max(res.fanout_counts)
    one, many = res.fanout.get(lo, []), res.fanout.get(hi, [])
    return lo, hi, _tps_ratio(many, one)


def _targets(res: Results) -> list[str]:
    rows = []
    for s in res.setups:
        runs = _lag_runs(res, s.key, TARGET_RATE)
        achieved = _fmt(runs, lambda r: r.achieved_tps)
        p50 = spread(runs, lambda r: r.lag_each_ms[0])
        p99 = spread(runs, lambda r: r.lag_each_ms[1])
        where = f"{fmt_num(TARGET_RATE)} tx/s offered (achieved {achieved} tx/s), {s.label}"
        rows.append(
            (
                f"Commit-to-visible p50 on a replica, {where}",
                f"< {fmt_num(TARGET_P50_MS)} ms",
                f"{fmt_spread(p50)} ms",
                verdict(None if p50 is None else p50.median < TARGET_P50_MS),
            )
        )
        rows.append(
            (
                f"Commit-to-visible p99 on a replica, {where}",
                f"< {fmt_num(TARGET_P99_MS)} ms",
                f"{fmt_spread(p99)} ms",
                verdict(None if p99 is None else p99.median < TARGET_P99_MS),
            )
        )
    lo, hi, ratio = _fanout_ratio(res)
    rows.append(
        (
            f"Primary's maximum write rate with {hi} replicas / with {lo} replica"
            f"{'s' if lo != 1 else ''} ({res.fanout_setup.label})",
            f"≥ {TARGET_FANOUT:.2f}\N{MULTIPLICATION SIGN} (drop ≤ 20%)",
            fmt_ratio(ratio),
            verdict(None if ratio is None else ratio.median >= TARGET_FANOUT),
        )
    )
    return table_section(
        res,
        "Targets",
        "Verdicts use the median over the repeats.",
        ("Target", "Goal", "Measured", "Verdict"),
        rows,
    )


def _method(res: Results) -> list[str]:
    c = res.config
    rates = " and ".join(f"{fmt_num(r)}" for r in c["rates"])
    return [
        "### Method",
        "",
        f"* Every scenario ran {c['repeats']} times; within a repeat each cluster configuration "
        "runs next to its plain-SQLite peer, and the fan-out clusters alternate their order. "
        "Cells show the median and, in parentheses, the min\N{EN DASH}max over the repeats; "
        "ratios are computed per repeat, then summarised the same way.",
        f"* Cluster: real `litecluster serve` processes on 127.0.0.1 (a primary and "
        f"{c['replicas']} replicas, started with `litecluster.cli.localcluster.LocalNode`, default "
        "settings apart from `replica_durable`), a fresh cluster for each configuration and "
        "repeat. The application is the benchmark process: one sqlean connection to the "
        "primary's `db/main.db` (WAL, default autocheckpoint, the `synchronous` of the row), "
        f"each transaction one autocommit `INSERT` of a row `(seq, {c['value_bytes']} random "
        "bytes)` into a rowid table. The node captures each commit from the WAL into its "
        "txlog, fsyncs it and streams it to the replicas.",
        f"* Commit-to-visible: open-loop writer at {rates} tx/s for {fmt_num(c['paced_seconds'])} "
        "s each (transaction *i* is due at start + *i*/rate; a late one is not skipped, and the "
        "writer gives up after 1.25\N{MULTIPLICATION SIGN} the planned time when it cannot keep "
        "the rate). A separate reader process polls every replica file (`PRAGMA data_version`, "
        f"then `SELECT max(seq)` when it moved; {fmt_num(c['poll_us'])} µs sleep between rounds, "
        "the measured mean round is in the table) and notes when each replica first shows a "
        "higher `seq`. Commit times (right after the `INSERT` returned) and visible times are "
        "both `time.monotonic_ns()` (CLOCK_MONOTONIC, one clock for both processes). *On a "
        "replica* pools every (transaction, replica) pair; *on all* takes the slower replica "
        f"per transaction. The first {fmt_num(c['warmup_s'])} s of each phase are left out of "
        "the percentiles. Visible times are upper bounds by up to one polling round.",
        f"* Maximum rate: closed-loop writer for {fmt_num(c['max_seconds'])} s. *Lag at writer "
        "end* is the primary's `/status` `lag_records` (from the replicas' acks) right after the "
        "last commit, the largest over the replicas; *drain* is the time from the last commit "
        "until every replica file shows it. The peer runs the same writer on a fresh WAL "
        "database with no node running.",
        "* Network: *shipped* is the primary's `bytes_shipped` / transactions / replicas (txlog "
        "records as stored: 16-byte frame, header, zstd level 1 payload, checksum; the "
        "protocol's 5-byte message header and msgpack envelope per batch are not counted). "
        "*Uncompressed* reads the same records back from the primary's txlog after the run: "
        "frame + header + trailer + 4 bytes per page number + page images. *Loopback* is the "
        "`lo` interface's byte counter over the phase (TCP/IP headers, acks, heartbeats, "
        "anything else on this machine's loopback) per transaction and replica.",
        "* CPU: user + system time of each node process (psutil) from before the writer started "
        "until every replica had applied the phase, per 1,000 records applied (replicas) or "
        "captured (primary).",
        f"* Fan-out: the closed-loop writer for {fmt_num(c['fanout_seconds'])} s on clusters "
        f"of {', '.join(str(n) for n in res.fanout_counts)} replicas ({res.fanout_setup.label}); "
        "0 replicas is the primary node alone. All processes share the machine's cores.",
        *_wide_method(res, rates),
        "",
    ]


def _wide_method(res: Results, rates: str) -> list[str]:
    if not res.wide:
        return []
    c = res.config
    return [
        f"* Many replicas: commit-to-visible as above at {rates} tx/s for "
        f"{fmt_num(c['wide_seconds'])} s each on a cluster of {c['wide_replicas']} replicas "
        f"({res.fanout_setup.label}), in {c['wide_repeats']} of the repeats; the reader polls "
        "every replica file in turn, so its round, and with it the resolution of the visible "
        "times, grows with the number of replicas. Every replica process, the primary, the "
        "writer and the reader share the machine's cores."
    ]


def _lag_pct(i: int) -> Callable[[LagRun], float]:
    return lambda r: r.lag_each_ms[i]


LAG_HEAD = (
    "p50 (ms)",
    "p99 (ms)",
    "p99.9 (ms)",
    "max (ms)",
    "On all: p50 (ms)",
    "On all: p99 (ms)",
)


def _lag_cells(runs: Sequence[LagRun]) -> tuple[str, ...]:
    """The distribution cells under :data:`LAG_HEAD`."""
    each = (_fmt(runs, _lag_pct(i)) for i in range(4))
    return (*each, _fmt(runs, lambda r: r.lag_all_ms[0]), _fmt(runs, lambda r: r.lag_all_ms[1]))


def _lag(res: Results) -> list[str]:
    rows = []
    for s in res.setups:
        for rate in res.config["rates"]:
            runs = _lag_runs(res, s.key, rate)
            if not runs:
                continue
            rows.append(
                (
                    s.label,
                    fmt_num(rate),
                    _fmt(runs, lambda r: r.achieved_tps),
                    _fmt(runs, lambda r: r.writer_ms[1]),
                    *_lag_cells(runs),
                    _fmt(runs, lambda r: r.phase.max_end_lag),
                    _fmt(runs, lambda r: 100 * r.early, 2),
                    _fmt(runs, lambda r: 100 * r.phase.machine_busy),
                    _fmt(runs, lambda r: r.poll_us),
                    _fmt(runs, lambda r: float(r.unseen)),
                )
            )
    head = (
        "Configuration",
        "Offered (tx/s)",
        "Achieved (tx/s)",
        "Writer txn p99 (ms)",
        *LAG_HEAD,
        "Lag at writer end (records)",
        "Visible before the INSERT returned (%)",
        "Machine CPU busy (%)",
        "Reader round (µs)",
        "Never seen",
    )
    return table_section(
        res,
        f"Commit-to-visible on a replica ({res.config['replicas']} replicas)",
        "p50\N{EN DASH}max are over every (transaction, replica) pair; "
        "*on all* is the time until the slower replica showed the transaction. A negative "
        "lag (counted in *visible before the INSERT returned*) is real: capture reads the WAL, "
        "so with `synchronous=FULL` a replica can show a transaction while the writer still "
        "waits for its WAL fsync.",
        head,
        rows,
    )


def _wide(res: Results) -> list[str]:
    if not res.wide:
        return []
    rows = []
    for rate in res.config["rates"]:
        for replicas, runs in (
            (res.config["replicas"], _lag_runs(res, res.fanout_setup.key, rate)),
            (res.config["wide_replicas"], [r for r in res.wide if r.rate == rate]),
        ):
            if not runs:
                continue
            rows.append(
                (
                    str(replicas),
                    fmt_num(rate),
                    _fmt(runs, lambda r: r.achieved_tps),
                    *_lag_cells(runs),
                    _fmt(runs, lambda r: 100 * r.phase.machine_busy),
                    _fmt(runs, lambda r: r.poll_us),
                    _fmt(runs, lambda r: float(r.unseen)),
                )
            )
    head = (
        "Replicas",
        "Offered (tx/s)",
        "Achieved (tx/s)",
        *LAG_HEAD,
        "Machine CPU busy (%)",
        "Reader round (µs)",
        "Never seen",
    )
    return table_section(
        res,
        f"Commit-to-visible with {res.config['replicas']} and {res.config['wide_replicas']} "
        f"replicas ({res.fanout_setup.label})",
        f"The {res.config['replicas']}-replica rows are the runs of the table above; columns as "
        "there.",
        head,
        rows,
    )


def _max_rate(res: Results) -> list[str]:
    rows = []
    for s in res.setups:
        lc = _max_runs(res, s.key)
        peer = res.plain.get(s.writer_sync, [])
        if lc:
            rows.append(
                (
                    f"litecluster, {res.config['replicas']} replicas, {s.label}",
                    _fmt(lc, lambda r: r.commit_tps),
                    fmt_ratio(_tps_ratio(lc, peer)),
                    _fmt(lc, lambda r: r.replicated_tps),
                    _fmt(lc, lambda r: r.phase.max_end_lag),
                    _fmt(lc, lambda r: r.phase.max_end_lag_ms),
                    _fmt(lc, lambda r: r.drain_s),
                    _fmt(lc, lambda r: r.writer_ms[1]),
                    _fmt(lc, lambda r: r.writer_ms[2]),
                    _fmt(lc, lambda r: 100 * r.writer_slow),
                    _fmt(lc, lambda r: r.writer_cpu_us),
                    _fmt(lc, lambda r: 100 * r.phase.machine_busy),
                )
            )
        if peer:
            rows.append(
                (
                    f"plain SQLite, WAL, synchronous={s.writer_sync} (peer)",
                    _fmt(peer, lambda r: r.commit_tps),
                    "1.00\N{MULTIPLICATION SIGN}",
                    "n/a",
                    "n/a",
                    "n/a",
                    "n/a",
                    _fmt(peer, lambda r: r.writer_ms[1]),
                    _fmt(peer, lambda r: r.writer_ms[2]),
                    _fmt(peer, lambda r: 100 * r.writer_slow),
                    _fmt(peer, lambda r: r.writer_cpu_us),
                    "n/a",
                )
            )
    head = (
        "Configuration",
        "Commits/s at the primary",
        "vs plain SQLite",
        "Replicated (tx/s)",
        "Lag at writer end (records)",
        "Lag at writer end (ms)",
        "Drain (s)",
        "Writer txn p99 (ms)",
        "Writer txn max (ms)",
        "Writer time in txns > 1 ms (%)",
        "Writer CPU per txn (µs)",
        "Machine CPU busy (%)",
    )
    return table_section(
        res,
        "Maximum sustained write rate (closed-loop writer)",
        "*Replicated* counts from the first commit until the last one "
        "was visible in every replica file. The ratio is against plain SQLite with the same "
        "`synchronous`, run by the same writer in the same repeat. *Writer time in txns > 1 "
        "ms* is the share of the phase the writer spent in transactions that took over 1 ms "
        "(waiting for the write lock in SQLite's busy handler, or for a fsync).",
        head,
        rows,
    )


def _per_record(attr: str) -> Callable[[SetupRun], float | None]:
    def get(r: SetupRun) -> float | None:
        return float(getattr(r.sizes, attr)) / r.sizes.records if r.sizes else None

    return get


def _shipped(r: SetupRun) -> float | None:
    return r.bytes_shipped / r.records_shipped if r.records_shipped else None


def _uncompressed_vs_shipped(r: SetupRun) -> float | None:
    unc, shp = _per_record("uncompressed_bytes")(r), _shipped(r)
    return unc / shp if unc and shp else None


def _loopback(r: SetupRun) -> float | None:
    phases = [lag.phase for lag in r.lags]
    n = sum(p.txns * p.replicas for p in phases)
    return sum(p.lo_bytes for p in phases) / n if n else None


def _network(res: Results) -> list[str]:
    rows = []
    for s in res.setups:
        runs = [r for r in res.runs.get(s.key, []) if r.sizes is not None and r.sizes.records]
        if not runs:
            continue
        rows.append(
            (
                s.label,
                fmt_num(res.config["value_bytes"] + 9),
                _fmt(runs, _per_record("pages")),
                _fmt(runs, _per_record("page_bytes")),
                _fmt(runs, _per_record("uncompressed_bytes")),
                _fmt(runs, _per_record("encoded_bytes")),
                _fmt(runs, _shipped),
                fmt_ratio(Spread.of(_uncompressed_vs_shipped(r) for r in runs)),
                _fmt(runs, _loopback),
            )
        )
    head = (
        "Configuration",
        "Row (bytes, about)",
        "Pages per record",
        "Page images per record (bytes)",
        "Uncompressed record (bytes)",
        "Txlog record (bytes)",
        "Shipped per record and replica (bytes)",
        "Uncompressed / shipped",
        "Loopback per txn and replica (bytes)",
    )
    return table_section(
        res,
        "Network cost per small transaction",
        "One transaction is one txlog record (plus a few no-op records "
        "from WAL restarts). Record sizes are over every record of the measured phases; "
        "*loopback* over the paced phases only (the reader's polling adds no network traffic).",
        head,
        rows,
    )


def _cpu_rows(label: str, phases: Sequence[Phase]) -> tuple[str, ...]:
    return (
        label,
        _fmt(phases, lambda p: p.replica_cpu_ms_per_1k),
        _fmt(phases, lambda p: p.primary_cpu_ms_per_1k),
        _fmt(phases, lambda p: 100 * p.node_cpu_share),
        _fmt(phases, lambda p: 100 * p.machine_busy),
        _fmt(phases, lambda p: float(p.reconnects)),
    )


def _cpu(res: Results) -> list[str]:
    rows = []
    for s in res.setups:
        for rate in res.config["rates"]:
            phases = [lag.phase for lag in _lag_runs(res, s.key, rate)]
            if phases:
                rows.append(_cpu_rows(f"{s.label}, {fmt_num(rate)} tx/s", phases))
        phases = [r.phase for r in _max_runs(res, s.key)]
        if phases:
            rows.append(_cpu_rows(f"{s.label}, closed loop", phases))
    for n in res.fanout_counts:
        phases = [r.phase for r in res.fanout.get(n, [])]
        if phases and n:
            rows.append(
                _cpu_rows(f"fan-out, {n} replicas, {res.fanout_setup.label}, closed loop", phases)
            )
    head = (
        "Phase",
        "CPU per replica per 1,000 records applied (ms)",
        "Primary CPU per 1,000 records (ms)",
        "Node processes' CPU (% of the machine)",
        "Machine CPU busy (%)",
        "Reconnects",
    )
    return table_section(
        res,
        "CPU of the node processes",
        "The replica figure is the mean over the replicas of one run. "
        "The primary's includes capture (WAL to txlog, fsync) and streaming to every replica. "
        "*Node processes' CPU* is the primary's and the replicas' CPU over the phase's wall time "
        "and all cores; *machine CPU busy* counts every process on the machine (this "
        "benchmark's writer and reader included, and anything else running).",
        head,
        rows,
    )


def _fanout(res: Results) -> list[str]:
    base = res.fanout.get(1, [])
    rows = []
    for n in res.fanout_counts:
        runs = res.fanout.get(n, [])
        if not runs:
            continue
        rows.append(
            (
                str(n),
                _fmt(runs, lambda r: r.commit_tps),
                fmt_ratio(_tps_ratio(runs, base)),
                _fmt(runs, lambda r: r.replicated_tps),
                _fmt(runs, lambda r: r.phase.max_end_lag),
                _fmt(runs, lambda r: r.drain_s),
                _fmt(runs, lambda r: r.phase.replica_cpu_ms_per_1k),
                _fmt(runs, lambda r: r.phase.primary_cpu_ms_per_1k),
                _fmt(runs, lambda r: 100 * r.writer_slow),
                _fmt(runs, lambda r: 100 * r.phase.node_cpu_share),
                _fmt(runs, lambda r: 100 * r.phase.machine_busy),
            )
        )
    head = (
        "Replicas",
        "Commits/s at the primary",
        "vs 1 replica",
        "Replicated (tx/s)",
        "Lag at writer end (records)",
        "Drain (s)",
        "Replica CPU per 1,000 records (ms)",
        "Primary CPU per 1,000 records (ms)",
        "Writer time in txns > 1 ms (%)",
        "Node processes' CPU (% of the machine)",
        "Machine CPU busy (%)",
    )
    not_converged = sum(not r.converged for runs in res.fanout.values() for r in runs)
    note = f" {not_converged} run(s) did not converge within the drain timeout." * bool(
        not_converged
    )
    return [
        *table_section(
            res,
            f"Fan-out: maximum write rate by number of replicas ({res.fanout_setup.label})",
            "Closed-loop writer; *replicated* and *drain* as above." + note,
            head,
            rows,
        ),
        *_marginal(res),
    ]


def _marginal(res: Results) -> list[str]:
    """The primary's CPU per record for each replica added, from the fan-out medians."""
    lo, hi, _ = _fanout_ratio(res)
    a = spread(res.fanout.get(lo, []), lambda r: r.phase.primary_cpu_ms_per_1k)
    b = spread(res.fanout.get(hi, []), lambda r: r.phase.primary_cpu_ms_per_1k)
    reps = spread(res.fanout.get(hi, []), lambda r: r.phase.replica_cpu_ms_per_1k)
    if a is None or b is None or reps is None or hi <= lo:
        return []
    per = (b.median - a.median) / (hi - lo)
    return [
        f"Each replica added costs the primary about {fmt_num(per)} ms of CPU per 1,000 "
        f"records (median primary CPU per 1,000 records {fmt_num(a.median)} ms with {lo} and "
        f"{fmt_num(b.median)} ms with {hi} replicas), and each replica process "
        f"{fmt_num(reps.median)} ms of its own: with every replica on this machine, {hi} "
        f"replicas need {fmt_num(reps.median * hi + b.median)} ms of CPU per 1,000 records "
        "between them and the primary, on the cores the writer also needs.",
        "",
    ]


def render(res: Results) -> str:
    sections = (
        machine_section,
        _targets,
        errors_section,
        _method,
        _lag,
        _wide,
        _max_rate,
        _network,
        _cpu,
        _fanout,
    )
    return render_section(
        res,
        (START, END),
        "python -m bench.replication",
        "Replication benchmarks over loopback (generated)",
        sections,
    )


def write_report(path: Path, res: Results) -> None:
    """Replace the generated section of ``path`` (appending it, or creating the file)."""
    write_section(path, render(res), (START, END), "# Benchmarks\n", exact_tail=True)

"""The generated SQL section of docs/BENCHMARKS.md: every figure comes from a result.

Only the text between :data:`START` and :data:`END` is (re)written; the markers are appended at
the end of the file when absent, and everything else in the file is kept byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.common.load import KIND_LABELS
from bench.common.reads import Latency
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
from bench.sql.writes import PlainRun, WriteRun, plain_key

START = "<!-- bench:sql:start -->"
END = "<!-- bench:sql:end -->"

# Targets from issue 4 (inputs of the generator, not measurements).
TARGET_READ_P50_US = 5.0
TARGET_REDIS_RATIO = 15.0
TARGET_WRITES = 5000.0

READ_LABELS = {
    "client": "Embedded replica: `c.query(sql, (k,))` (litecluster.connect, replica=DIR)",
    "raw": "Same process, the client's own sqlean connection: `conn.execute(sql, (k,)).fetchall()`",
    "stdlib": "Same process, Python's stdlib `sqlite3` (Debian's SQLite) reading the replica "
    "file: `conn.execute(sql, (k,)).fetchall()` (the floor most programs have)",
    "redis": "redis-py `r.get(k)` against redis-server on 127.0.0.1 (peer; placed by the "
    "scheduler)",
    "redis_same_cpu": "redis-py `r.get(k)`, this thread and redis-server pinned to the same vCPU",
    "redis_other_cpu": "redis-py `r.get(k)`, this thread and redis-server pinned to different "
    "vCPUs",
    "http_get": "HTTP `GET /db/query?q=...` on the primary (httpx.Client, keep-alive)",
    "http_get_raw": "HTTP `GET /db/query?q=...` on the primary, minimal HTTP/1.1 client "
    "(blocking socket, keep-alive)",
    "http_get_replica": "HTTP `GET /db/query?q=...&level=none` on a replica (httpx.Client)",
    "http_client": "Remote client `litecluster.connect(http).query(sql, (k,))` on the primary "
    "(`POST /db/query`)",
    "http_dqlite": "HTTP `GET /KEY` on the Raft leader of a 3-node dqlite-demo cluster (peer; "
    "`SELECT value FROM model WHERE key = ?` through the dqlite driver), minimal HTTP/1.1 "
    "client (blocking socket, keep-alive)",
}
PLAIN_ROWS = (("FULL", 1), ("NORMAL", 1), ("FULL", 32), ("NORMAL", 32))

T = TypeVar("T")


@dataclass(frozen=True)
class ReadRun:
    repeat: int
    lat: dict[str, Latency]
    timer_ns: float
    """p50 of an empty timed call (two clock reads): included in every local figure."""
    machine_busy: float
    """Share of the machine's CPU (all cores) busy during the timed reads, whoever used it."""


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    kinds: tuple[str, ...]
    reads: list[ReadRun] = field(default_factory=list)
    writes: dict[str, list[WriteRun]] = field(default_factory=dict)
    plain: dict[str, list[PlainRun]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---- helpers -------------------------------------------------------------------------------------


def _fmt(runs: Iterable[T], get: Callable[[T], float | None], digits: int = 3) -> str:
    return fmt_spread(spread(runs, get), digits)


def _read_ratio(res: Results, num: str, den: str) -> Spread | None:
    """Per repeat: p50 of path ``num`` / p50 of path ``den``."""
    return ratio_spread(
        (r.lat[num].p50_us, r.lat[den].p50_us) for r in res.reads if num in r.lat and den in r.lat
    )


def _vs_plain(res: Results, runs: list[WriteRun], key: str, replicated: bool = False) -> str:
    """Per repeat: the cluster's writes/s / the plain peer's commits/s of the same repeat."""
    peer = {p.repeat: p.tps for p in res.plain.get(key, [])}
    pairs = ((w.replicated_tps if replicated else w.acked_tps, peer.get(w.repeat)) for w in runs)
    return fmt_ratio(ratio_spread(pairs))


def best_kind(res: Results) -> str | None:
    """The client kind with the highest median of acknowledged writes/s."""
    medians = {k: spread(v, lambda r: r.acked_tps) for k, v in res.writes.items() if v}
    ranked = [(s.median, k) for k, s in medians.items() if s is not None]
    return max(ranked)[1] if ranked else None


def _clients(res: Results) -> int:
    return int(res.config["clients"])


# ---- sections ------------------------------------------------------------------------------------


def _targets(res: Results) -> list[str]:
    client = spread(res.reads, lambda r: r.lat["client"].p50_us if "client" in r.lat else None)
    rows = [
        (
            "Point read by primary key through the embedded replica, p50",
            f"≤ {fmt_num(TARGET_READ_P50_US)} µs",
            f"{fmt_spread(client)} µs",
            verdict(None if client is None else client.median <= TARGET_READ_P50_US),
        ),
    ]
    for kind, where in (
        ("redis", "placed by the scheduler"),
        ("redis_same_cpu", "client and redis-server on one vCPU: redis's best case"),
    ):
        ratio = _read_ratio(res, kind, "client")
        rows.append(
            (
                f"redis-py GET p50 ({where}) / embedded-replica read p50, same keys and values",
                f"≥ {fmt_num(TARGET_REDIS_RATIO)}\N{MULTIPLICATION SIGN}",
                fmt_ratio(ratio),
                verdict(None if ratio is None else ratio.median >= TARGET_REDIS_RATIO),
            )
        )
    best = best_kind(res)
    runs = res.writes.get(best, []) if best else []
    acked = spread(runs, lambda r: r.acked_tps)
    repl = spread(runs, lambda r: r.replicated_tps)
    how = f"{_clients(res)} clients, {KIND_LABELS[best]}" if best else "no run"
    for what, s in (("acknowledged", acked), ("replicated to both replicas", repl)):
        rows.append(
            (
                f"Single-row inserts over HTTP {what}, writes/s ({how}: the fastest load "
                "generator)",
                f"≥ {fmt_num(TARGET_WRITES)} /s",
                f"{fmt_spread(s)} /s",
                verdict(None if s is None else s.median >= TARGET_WRITES),
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
    timer = spread(res.reads, lambda r: r.timer_ns)
    return [
        "### Method",
        "",
        f"* Every scenario ran {c['repeats']} time{'s' if c['repeats'] != 1 else ''}. A repeat starts a primary and 2 replicas "
        "(`litecluster serve` processes on 127.0.0.1, default configuration: txlog fsync on, "
        "`replica_durable=true`), measures the reads, then the write phases (client kinds in "
        "an order that rotates per repeat), kills the nodes and runs the plain-SQLite peers "
        "with no node running. Cells show the median and, in parentheses, the "
        "min\N{EN DASH}max over the repeats; ratios are computed per repeat (against the peer "
        "measured in the same repeat), then summarised the same way.",
        f"* Reads: {fmt_num(c['rows'])} rows `kv(k TEXT PRIMARY KEY, v TEXT)` with "
        f"{c['value_bytes']}-character values, written through the primary's SQL API "
        f"(`executemany`, {c['load_batch']:,} rows a request) by an embedded-replica client, "
        "and the same keys and values `SET` in a redis-server that the benchmark starts "
        "(`--save '' --appendonly no`, a free port). Lookups pick random keys; the local paths "
        f"(embedded client, raw connection, redis) do {fmt_num(c['lookups'])} timed lookups "
        f"each per repeat and the HTTP paths {fmt_num(c['http_lookups'])}, interleaved in "
        f"{c['blocks']} blocks whose order rotates, after {fmt_num(c['warmup'])} untimed ones. "
        "Every lookup is timed alone with `time.perf_counter_ns()` in one thread; the clock "
        f"reads cost {fmt_spread(timer)} ns (p50), included in every figure. Python's garbage "
        f"collector stays on. Redis replies are parsed by {c['redis_parser']}. The embedded "
        "client's follower thread runs (idle) in the same process. On this VM a loopback "
        "round trip costs much more when the two ends sit on different vCPUs (a cross-CPU "
        "wake-up each way) than on one, and the scheduler picks either, so redis is also "
        "measured with the measuring thread and redis-server's main thread pinned "
        "(`sched_setaffinity`) to one vCPU and to two. The machine (all cores, every process) "
        f"was {_fmt(res.reads, lambda r: 100 * r.machine_busy)}% busy during the timed reads.",
        f"* Writes: {_clients(res)} concurrent clients each send `POST /db/execute` with "
        '`[["INSERT INTO t(k, v) VALUES(?, ?)", k, v]]` (a new key each time, '
        f"{c['value_bytes']}-character value) one at a time over a keep-alive connection for "
        f"{fmt_num(c['write_seconds'])} s after an untimed warm-up request each. The load runs "
        "in the benchmark's process and shares the 2 cores with the 3 nodes: its CPU is in the "
        "table. *Acknowledged* counts HTTP 200 answers without an SQL error over the time from "
        "the start to the last answer; *replicated* divides the same count by the time from the "
        "start until the primary's `/status` showed both replicas (`replicas[*].databases.main"
        ".txid`) at its own txid at the end (`databases.main.txid`). Group sizes are the "
        "phase's difference of the primary's `/status` `writers.main.group_sizes`.",
        "* Read peers besides redis: Python's stdlib `sqlite3` module with a read-only "
        "connection to the embedded replica's own file (the same `SELECT`); and "
        + (
            f"dqlite: {c['dqlite']}"
            if c.get("dqlite")
            else "a 3-node `dqlite-demo` cluster (Debian `go-dqlite`) started in the same repeat, "
            "holding the same keys and values in its table `model(key, value)` (inserted "
            "through the `dqlite` shell, 500 rows a statement), read with `GET /KEY` on the "
            "Raft leader's HTTP API by the same minimal client as the `http_get_raw` path, "
            "interleaved with the other HTTP paths."
        )
        + "",
        "* Plain-SQLite peer: the same inserts, one autocommit transaction each, on a fresh WAL "
        f"database (sqlean) with no node running, for {fmt_num(c['plain_seconds'])} s: one "
        "thread, and 32 threads with a connection each (busy timeout 5 s). The litecluster "
        "primary acknowledges a write once its txlog record is fsynced, which compares with "
        "`synchronous=FULL`.",
        "",
    ]


def _reads(res: Results) -> list[str]:
    present = [k for k in READ_LABELS if any(k in r.lat for r in res.reads)]
    rows = []
    for kind in present:
        runs = [r.lat[kind] for r in res.reads if kind in r.lat]
        rows.append(
            (
                READ_LABELS[kind],
                _fmt(runs, lambda x: x.p50_us),
                _fmt(runs, lambda x: x.p99_us),
                _fmt(runs, lambda x: x.mean_us),
                fmt_ratio(_read_ratio(res, kind, "raw")),
                fmt_ratio(_read_ratio(res, "redis", kind)),
            )
        )
    return table_section(
        res,
        "Point reads by primary key (one thread)",
        "",
        (
            "Path",
            "p50 (µs)",
            "p99 (µs)",
            "mean (µs)",
            "p50 vs raw connection",
            "redis GET p50 / this p50",
        ),
        rows,
    )


def _writes(res: Results) -> list[str]:
    rows = []
    full, normal = plain_key("FULL", 1), plain_key("NORMAL", 1)
    for kind in res.kinds:
        runs = res.writes.get(kind, [])
        if not runs:
            continue
        rows.append(
            (
                KIND_LABELS[kind],
                _fmt(runs, lambda r: r.acked_tps),
                _fmt(runs, lambda r: r.replicated_tps),
                _fmt(runs, lambda r: r.drain_s),
                _fmt(runs, lambda r: r.latency_ms[0]),
                _fmt(runs, lambda r: r.latency_ms[1]),
                _fmt(runs, lambda r: r.errors, 1),
                _vs_plain(res, runs, full),
                _vs_plain(res, runs, normal),
                _fmt(runs, lambda r: r.own_cores),
                _fmt(runs, lambda r: r.primary_cores),
                _fmt(runs, lambda r: r.replica_cores),
                _fmt(runs, lambda r: 100 * r.machine_busy),
            )
        )
    return table_section(
        res,
        f"Writes over HTTP: {_clients(res)} concurrent clients, a primary and 2 replicas",
        "Ratios: acknowledged writes/s over the plain-SQLite peer's commits/s (1 thread) of "
        "the same repeat. CPU in cores (1.00 = one core busy) over the phase.",
        (
            "Load generator",
            "Acknowledged (writes/s)",
            "Replicated (writes/s)",
            "Drain after the last answer (s)",
            "Write p50 (ms)",
            "Write p99 (ms)",
            "Errors",
            "vs plain FULL",
            "vs plain NORMAL",
            "Load CPU",
            "Primary CPU",
            "Replicas CPU (both)",
            "Machine busy (%)",
        ),
        rows,
    )


def _groups(res: Results) -> list[str]:
    rows = []
    for kind in res.kinds:
        runs = [r for r in res.writes.get(kind, []) if r.groups is not None]
        if not runs:
            continue
        g = [r.groups for r in runs if r.groups is not None]
        rows.append(
            (
                KIND_LABELS[kind],
                _fmt(g, lambda x: x.groups, 1),
                _fmt(runs, lambda r: r.records, 1),
                _fmt(g, lambda x: x.mean),
                _fmt(g, lambda x: x.p50, 1),
                _fmt(g, lambda x: x.p90, 1),
                _fmt(g, lambda x: x.max, 1),
                _fmt(g, lambda x: x.per_write_mean),
            )
        )
    return table_section(
        res,
        "Group commit: requests per writer transaction",
        "From the primary's `/status` (`writers.main.group_sizes`), per phase; one group is one "
        "SQLite transaction, one txlog record and one fsync.",
        (
            "Load generator",
            "Groups",
            "Primary txids",
            "Mean size",
            "p50 size",
            "p90 size",
            "Max size",
            "Size seen by the average write",
        ),
        rows,
    )


def _plain(res: Results) -> list[str]:
    kind = best_kind(res)
    best = res.writes.get(kind, []) if kind else []
    rows = []
    for sync, threads in PLAIN_ROWS:
        key = plain_key(sync, threads)
        runs = res.plain.get(key, [])
        if not runs:
            continue
        rows.append(
            (
                f"plain SQLite, synchronous={sync}, {threads} thread{'s' if threads > 1 else ''}",
                _fmt(runs, lambda r: r.tps),
                _fmt(runs, lambda r: r.latency_ms[0]),
                _fmt(runs, lambda r: r.latency_ms[1]),
                _fmt(runs, lambda r: r.errors, 1),
                _vs_plain(res, best, key),
                _vs_plain(res, best, key, replicated=True),
            )
        )
    how = KIND_LABELS[kind] if kind else "none"
    return table_section(
        res,
        "Peer: plain SQLite, one insert per transaction",
        f"The last two columns: litecluster's writes/s with the fastest load generator ({how}) "
        "over this row's commits/s, per repeat.",
        (
            "Configuration",
            "Commits/s",
            "Commit p50 (ms)",
            "Commit p99 (ms)",
            "Errors (locked)",
            "litecluster acknowledged / this",
            "litecluster replicated / this",
        ),
        rows,
    )


def render(res: Results) -> str:
    return render_section(
        res,
        (START, END),
        "python -m bench.sql",
        "SQL API and embedded-replica benchmarks (generated)",
        (machine_section, _targets, _method, _reads, _writes, _groups, _plain, errors_section),
    )


def write_report(path: Path, res: Results) -> None:
    """Rewrite the generated section of ``path`` (appended when absent; the rest kept)."""
    write_section(path, render(res), (START, END), "# Benchmarks\n", exact_tail=True)

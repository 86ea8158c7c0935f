"""The generated part of docs/BENCHMARKS.md: every table and figure comes from a result object.

Only the text between :data:`START` and :data:`END` is (re)written; everything else in the file,
such as a hand-written analysis, is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common.report import (
    Spread,
    errors_section,
    fmt_num,
    fmt_ratio,
    fmt_spread,
    machine_section,
    produced_by,
    ratio_spread,
    render_section,
    spread,
    table,
    table_section,
    verdict,
    write_section,
)
from bench.engine.bulk import MB, BulkPrep
from bench.engine.small import SmallResult, lc_label

START = "<!-- bench:engine:start -->"
END = "<!-- bench:engine:end -->"

# Targets from the issue (inputs of the generator, not measurements).
TARGET_TPS = 5000.0
TARGET_P50_MS = 1.0
TARGET_P99_MS = 10.0
TARGET_RSS_MB = 150.0

THREADS = ("writer", "capture", "apply", "reader")

DEFAULT_HEAD = """# Benchmarks

## Analysis

(Hand-written notes go here; `python -m bench.engine` keeps everything outside the generated section.)

"""


@dataclass(frozen=True)
class Variant:
    """One configuration of the small-transaction scenario."""

    key: str
    kind: str  # "litecluster", "capture" (primary side only) or "plain"
    txlog_fsync: bool = True
    replica_durable: bool = True
    rate: float | None = None
    """Offered transactions per second (None: the writer runs flat out)."""
    synchronous: str = "FULL"
    """The plain peer's ``synchronous`` setting."""
    writer_sync: str = "FULL"
    """litecluster's primary writer ``synchronous`` (NORMAL: the txlog is the durability point)."""

    @property
    def label(self) -> str:
        if self.kind == "plain":
            return f"plain SQLite, synchronous={self.synchronous}"
        if self.kind == "capture":
            fsync = "on" if self.txlog_fsync else "off"
            return f"litecluster primary side only: writer + capture, txlog fsync {fsync}"
        label = lc_label(self.txlog_fsync, self.replica_durable)
        if self.writer_sync != "FULL":
            label += f", writer synchronous={self.writer_sync}"
        return label


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    variants: list[Variant]
    small: dict[str, list[SmallResult]] = field(default_factory=dict)
    prep: BulkPrep | None = None
    bulk_lc: list[dict[str, Any]] = field(default_factory=list)
    bulk_plain: list[dict[str, Any]] = field(default_factory=list)
    profile: SmallResult | None = None
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    lock_probe: dict[str, Any] | None = None


# ---- helpers -------------------------------------------------------------------------------------


def _ratio(
    a: Sequence[Any],
    b: Sequence[Any],
    get_a: Callable[[Any], float | None],
    get_b: Callable[[Any], float | None],
) -> Spread | None:
    """Median/range of per-repeat ratios (run i of ``a`` against run i of ``b``)."""
    return ratio_spread((get_a(x), get_b(y)) for x, y in zip(a, b, strict=False))


def _rate(v: Variant) -> str:
    return "unthrottled" if v.rate is None else f"{fmt_num(v.rate)} tx/s"


def _pct(runs: Sequence[SmallResult], idx: int) -> Spread | None:
    return spread(runs, lambda r: r.visible_ms[idx] if r.visible_ms else None)


# ---- sections ------------------------------------------------------------------------------------


def _method(res: Results) -> list[str]:
    c = res.config
    return [
        "### Method",
        "",
        f"* Every measured scenario ran {c['repeats']} times; within each repeat the variants run "
        "back to back in the order of the tables (litecluster and its plain-SQLite peer "
        "alternate), so machine noise hits both. Cells show the median and, in parentheses, "
        "the min\N{EN DASH}max over the repeats. Ratios are computed per repeat (litecluster run *i* "
        "against peer run *i*) and then summarised the same way.",
        f"* Small transactions: {fmt_num(c['txns'])} one-row upserts per unthrottled run "
        f"(paced runs last about {fmt_num(c['paced_seconds'])} s), each "
        f"`INSERT .. ON CONFLICT DO UPDATE` of a {c['value_bytes']}-byte random value on one of "
        f"{fmt_num(c['keys'])} preloaded keys, in its own `BEGIN IMMEDIATE .. COMMIT`. "
        "litecluster: the writer holds `capture.writer_lock` around each transaction and calls "
        "`capture.notify()` after it; the capture follower thread (`Capture.run`), an apply "
        f"thread (batches of up to {fmt_num(c['batch_max'])} records read with "
        "`log.read(position + 1)`) and a reader thread on its own connection to the replica file "
        "run in the same process. Commit-to-visible is measured from the instant the writer's "
        "`COMMIT` returned to the instant the reader's own query saw the row (see "
        "`bench/engine/small.py`). The primary's writer commits with `synchronous=FULL` unless its row says `writer synchronous=NORMAL` (then the txlog's fsync is the durability point and capture rolls the primary forward after a power loss).",
        "* *Primary side only*: the same writer with capture and the txlog but no replica, to "
        "separate what capture costs the writer from what the replica's threads cost it.",
        "* Plain-SQLite peer: the same writer loop on a WAL database with no capture, "
        "`synchronous=FULL` (the durable peer) and `synchronous=NORMAL`.",
        f"* Bulk: a primary of {fmt_num(c['size_mb'])} MB (random blobs plus the key table), a "
        f"replica {fmt_num(c['behind'])} transactions behind it, applied in batches of "
        f"{fmt_num(c['bulk_batch'])} records. Every bulk run is a child process; its peak RSS "
        "is sampled by the parent with psutil, and the child reports its own high-water mark (`VmHWM`). See "
        "`bench/engine/bulk.py`. The files fit in the page cache, so reads come from memory and "
        "fsync is what touches the disk.",
        "",
    ]


def _targets(res: Results) -> list[str]:
    durable = res.small.get("lc_durable", [])
    paced = res.small.get("lc_durable_5k", [])
    tps = spread(durable, lambda r: r.replicated_tps)
    p50 = _pct(paced, 0)
    p99 = _pct(paced, 2)
    achieved = spread(paced, lambda r: r.replicated_tps)
    rss = Spread.of(max(r["peak_rss_mb"], max(r["rss_mb"].values())) for r in res.bulk_lc)
    size = fmt_spread(Spread.of(r["db_bytes"] / MB for r in res.bulk_lc))
    rows = [
        (
            "Replicated small transactions, durable (txlog fsync on, durable replica), "
            "unthrottled writer",
            f"≥ {fmt_num(TARGET_TPS)} tx/s",
            f"{fmt_spread(tps)} tx/s",
            verdict(None if tps is None else tps.median >= TARGET_TPS),
        ),
        (
            f"Commit-to-visible p50, durable, {fmt_num(TARGET_TPS)} tx/s offered "
            f"(achieved: {fmt_spread(achieved)} tx/s)",
            f"< {fmt_num(TARGET_P50_MS)} ms",
            f"{fmt_spread(p50)} ms",
            verdict(None if p50 is None else p50.median < TARGET_P50_MS),
        ),
        (
            f"Commit-to-visible p99, durable, {fmt_num(TARGET_TPS)} tx/s offered",
            f"< {fmt_num(TARGET_P99_MS)} ms",
            f"{fmt_spread(p99)} ms",
            verdict(None if p99 is None else p99.median < TARGET_P99_MS),
        ),
        (
            f"Engine peak RSS: capture, snapshot install and catch-up of the {size} MB database",
            f"< {fmt_num(TARGET_RSS_MB)} MB",
            f"{fmt_spread(rss)} MB",
            verdict(None if rss is None else rss.high < TARGET_RSS_MB),
        ),
    ]
    return table_section(
        res,
        "Targets",
        "The memory verdict uses the worst repeat.",
        ("Target", "Goal", "Measured", "Verdict"),
        rows,
    )


def _small_throughput(res: Results) -> list[str]:
    plain_full = res.small.get("plain_full", [])
    rows = []
    for v in res.variants:
        runs = res.small.get(v.key, [])
        if v.rate is not None or not runs:
            continue
        rows.append(
            (
                v.label,
                fmt_spread(spread(runs, lambda r: r.commit_tps)),
                fmt_spread(spread(runs, lambda r: r.replicated_tps)),
                fmt_ratio(
                    _ratio(
                        runs,
                        plain_full,
                        lambda r: r.replicated_tps or r.commit_tps,
                        lambda r: r.commit_tps,
                    )
                ),
                fmt_spread(spread(runs, lambda r: r.txn_ms[0])),
                fmt_spread(spread(runs, lambda r: r.txn_ms[2])),
                fmt_spread(spread(runs, lambda r: r.cpu_us_per_txn)),
                fmt_ratio(
                    _ratio(runs, plain_full, lambda r: r.cpu_us_per_txn, lambda r: r.cpu_us_per_txn)
                ),
            )
        )
    head = (
        "Configuration",
        "Writer commits (tx/s)",
        "Replicated (tx/s)",
        "Throughput vs plain FULL",
        "Writer txn p50 (ms)",
        "Writer txn p99 (ms)",
        "CPU per txn (µs)",
        "CPU vs plain FULL",
    )
    return table_section(
        res,
        "Small transactions: throughput (unthrottled writer)",
        "*Replicated* counts from the first `BEGIN` to the moment the "
        "last transaction was visible to the replica's reader; for plain SQLite the throughput "
        "ratio uses commits. CPU is the whole process (all threads) per transaction.",
        head,
        rows,
    )


def _thread_cpu(runs: Sequence[SmallResult], thread: str) -> Spread | None:
    return Spread.of(r.thread_cpu_us.get(thread) for r in runs)


def _small_threads(res: Results) -> list[str]:
    rows = []
    for v in res.variants:
        runs = res.small.get(v.key, [])
        if v.kind == "plain" or not runs:
            continue
        cpu = {t: _thread_cpu(runs, t) for t in THREADS}
        rows.append(
            (
                f"{v.label}, {_rate(v)}",
                *(fmt_spread(cpu[t]) for t in THREADS),
                fmt_spread(spread(runs, lambda r: r.records_per_batch)),
                fmt_spread(spread(runs, lambda r: float(r.checkpoints))),
                fmt_spread(spread(runs, lambda r: None if r.resets is None else float(r.resets))),
            )
        )
    head = (
        "Configuration",
        *(f"{t} CPU/txn (µs)" for t in THREADS),
        "Records per apply batch",
        "WAL restarts",
        "Re-snapshots (RESET)",
    )
    return table_section(
        res,
        "Small transactions: where the CPU goes, per thread",
        "`time.thread_time()` of each thread divided by the transactions "
        "of the run. All four threads share one GIL and the machine's cores.",
        head,
        rows,
    )


def _small_latency(res: Results) -> list[str]:
    rows = []
    for v in res.variants:
        runs = res.small.get(v.key, [])
        if v.kind != "litecluster" or not runs:
            continue
        rows.append(
            (
                v.label,
                _rate(v),
                fmt_spread(spread(runs, lambda r: r.replicated_tps)),
                *(fmt_spread(_pct(runs, i)) for i in range(4)),
            )
        )
    head = (
        "Configuration",
        "Offered",
        "Achieved (tx/s)",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        "max (ms)",
    )
    return table_section(
        res,
        "Small transactions: commit-to-visible on the replica",
        "Percentiles over every transaction of a run; an unthrottled "
        "writer keeps the pipeline saturated, a paced writer offers a fixed rate (open loop: a "
        "late transaction is not skipped, the next ones are sent sooner).",
        head,
        rows,
    )


def _mbps(nbytes: float, seconds: float) -> float:
    return nbytes / MB / seconds if seconds > 0 else float("nan")


def _bulk_snapshot(res: Results) -> list[str]:
    lc, pl = res.bulk_lc, res.bulk_plain
    if not lc or res.prep is None:
        return []

    def sec(name: str) -> Callable[[dict[str, Any]], float]:
        return lambda r: float(r["seconds"][name])

    def both(r: dict[str, Any]) -> float:
        return float(r["seconds"]["snapshot_create"] + r["seconds"]["snapshot_install"])

    def row(
        label: str,
        runs: list[dict[str, Any]],
        t: Callable[[dict[str, Any]], float],
        nbytes: Callable[[dict[str, Any]], float],
    ) -> tuple[str, ...]:
        return (
            label,
            fmt_spread(spread(runs, lambda r: _mbps(nbytes(r), t(r)))),
            fmt_spread(spread(runs, t)),
            fmt_ratio(
                _ratio(
                    runs,
                    pl,
                    lambda r: _mbps(nbytes(r), t(r)),
                    lambda r: _mbps(r["db_bytes"], r["seconds"]["backup"]),
                )
            ),
        )

    def db(r: dict[str, Any]) -> float:
        return float(r["db_bytes"])

    rows = [
        row(
            "litecluster: snapshot create (read, zstd, file, fsync)", lc, sec("snapshot_create"), db
        ),
        row(
            "litecluster: snapshot install (verify, write pages, commit)",
            lc,
            sec("snapshot_install"),
            db,
        ),
        row("litecluster: create + install", lc, both, db),
        row("litecluster: capture open (hash every page)", lc, sec("capture_open"), db),
        row("plain SQLite: online backup API (peer)", pl, sec("backup"), db),
        row("file copy + fsync (disk reference)", pl, sec("file_copy"), db),
    ]
    size = fmt_spread(Spread.of(r["db_bytes"] / MB for r in lc))
    snap = fmt_spread(Spread.of(r["snapshot_bytes"] / MB for r in lc))
    return [
        *table_section(
            res,
            f"Bulk: snapshot of a {size} MB database",
            f"Snapshot file size: {snap} MB. MB/s are MB of database "
            "pages per second; the ratio is against SQLite's online backup API copying the same "
            "database in the same repeat.",
            ("Operation", "MB/s", "Seconds", "vs backup API"),
            rows,
        ),
        *_lock_probe(res),
    ]


def _lock_probe(res: Results) -> list[str]:
    p = res.lock_probe
    if p is None:
        return []
    offset = (p["pgno"] - 1) * p["page_size"]
    return [
        f"Lock-byte page probe: writing page {p['pgno']:,} (the page holding byte "
        f"{offset:,}, SQLite's lock byte, at {p['page_size']:,}-byte pages) through "
        f"`sqlite_dbpage`, as `Replica.replace` writes every page of a snapshot: "
        f"`{p['lock_page']}`; page {p['pgno'] + 1:,}: `{p['next']}`. Databases larger than "
        f"{offset:,} bytes contain that page.",
        "",
    ]


def _bulk_catchup(res: Results) -> list[str]:
    lc, pl = res.bulk_lc, res.bulk_plain
    if not lc or res.prep is None:
        return []

    def cu(r: dict[str, Any]) -> float:
        return float(r["seconds"]["catch_up"])

    def rp(r: dict[str, Any]) -> float:
        return float(r["seconds"]["replay"])

    rows = [
        (
            f"litecluster: catch-up from the txlog, batches of {fmt_num(res.config['bulk_batch'])}",
            fmt_spread(spread(lc, lambda r: r["records"] / cu(r))),
            fmt_spread(spread(lc, lambda r: _mbps(r["page_bytes"], cu(r)))),
            fmt_spread(spread(lc, lambda r: _mbps(r["txlog_bytes"], cu(r)))),
            fmt_spread(spread(lc, cu)),
            fmt_ratio(_ratio(lc, pl, lambda r: r["records"] / cu(r), lambda r: r["txns"] / rp(r))),
        ),
        (
            f"plain SQLite: replay the same upserts, {fmt_num(res.config['bulk_batch'])} per "
            "transaction (peer)",
            fmt_spread(spread(pl, lambda r: r["txns"] / rp(r))),
            "n/a",
            "n/a",
            fmt_spread(spread(pl, rp)),
            "1.00\N{MULTIPLICATION SIGN}",
        ),
    ]
    other = [
        ("litecluster: open the replica (hash every page)", lc, "replica_open"),
        ("litecluster: open the txlog read-only (verify every record)", lc, "txlog_open_readonly"),
    ]
    extra = [
        (label, fmt_spread(Spread.of(float(r["seconds"][k]) for r in runs)))
        for label, runs, k in other
    ]
    recs = fmt_spread(Spread.of(float(r["records"]) for r in lc))
    return [
        *table_section(
            res,
            f"Bulk: catch-up of a replica {recs} records behind",
            "Page MB/s counts the pages the records carry (uncompressed); "
            "txlog MB/s counts the compressed records read from the log.",
            ("Operation", "Records/s", "Page MB/s", "Txlog MB/s", "Seconds", "vs plain replay"),
            rows,
        ),
        "Not part of the catch-up time above:",
        "",
        *table(("Step before catching up", "Seconds"), extra),
        "",
    ]


PHASES = (
    ("startup", "after imports"),
    ("txlog_open", "txlog opened (every record verified)"),
    ("capture_open", "capture opened (every page hashed)"),
    ("snapshot_create", "snapshot created"),
    ("snapshot_install", "snapshot installed"),
    ("replica_open", "behind replica opened"),
    ("txlog_open_readonly", "txlog reopened read-only"),
    ("catch_up", "caught up"),
)


def _memory(res: Results) -> list[str]:
    lc, pl = res.bulk_lc, res.bulk_plain
    if not lc:
        return []
    rows = [
        (
            "litecluster: capture + snapshot create/install + catch-up",
            fmt_spread(Spread.of(r["peak_rss_mb"] for r in lc)),
            fmt_spread(Spread.of(max(r["rss_mb"].values()) for r in lc)),
            fmt_spread(Spread.of(r["rss_mb"]["startup"] for r in lc)),
        ),
        (
            "plain SQLite: backup API + file copy + replay (peer)",
            fmt_spread(Spread.of(r["peak_rss_mb"] for r in pl)),
            fmt_spread(Spread.of(max(r["rss_mb"].values()) for r in pl)),
            fmt_spread(Spread.of(r["rss_mb"]["startup"] for r in pl)),
        ),
    ]
    phases = [(label, fmt_spread(Spread.of(r["rss_mb"].get(k) for r in lc))) for k, label in PHASES]
    return [
        *table_section(
            res,
            "Memory: peak RSS of the replicating process",
            "Each figure is a whole child process (Python, numpy, zstd and "
            "SQLite included); *after imports* is that baseline.",
            ("Process", "Peak RSS, psutil (MB)", "VmHWM (MB)", "After imports (MB)"),
            rows,
        ),
        "litecluster child: peak RSS so far (`VmHWM`) at the end of each phase:",
        "",
        *table(("Phase", "VmHWM (MB)"), phases),
        "",
    ]


_WAITS = ("<method 'acquire' of '_thread.lock' objects>",)


def _func_name(key: tuple[str, int, str]) -> str:
    file, line, name = key
    if file == "~":
        return name
    short = re.sub(r"^.*/(litecluster|bench|threading)", r"\1", file)
    short = re.sub(r"^.*/", "", short) if short == file else short
    return f"{short}:{line} {name}"


def _profile(res: Results) -> list[str]:
    prof = res.profile
    if prof is None or not prof.profile:
        return []
    n = prof.txns
    out = [
        "### Profile: durable small transactions (cProfile, one profiler per thread)",
        "",
        produced_by(res) + f" A separate unthrottled durable run of {fmt_num(n)} "
        f"transactions with every thread under cProfile (which slows Python code, so "
        f"absolute times are inflated: {fmt_num(prof.replicated_tps or 0)} tx/s replicated "
        "here). *Own time* is wall time inside the function itself, including time spent "
        "waiting for the GIL after a C call; blocking waits (`lock.acquire`, i.e. idle "
        "`Event.wait`) are listed separately.",
        "",
    ]
    for thread in THREADS:
        stats = prof.profile.get(thread)
        if stats is None:
            continue
        entries: list[tuple[float, int, tuple[str, int, str]]] = []
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        wait = 0.0
        for key, (_cc, nc, tt, _ct, _callers) in raw.items():
            if key[2] in _WAITS:
                wait += tt
                continue
            entries.append((tt, nc, key))
        busy = sum(e[0] for e in entries)
        entries.sort(reverse=True)
        rows = [
            (
                f"`{_func_name(key)}`",
                f"{tt:.3f}",
                f"{100 * tt / busy:.1f}%" if busy else "n/a",
                fmt_num(tt / n * 1e6),
                f"{nc:,}",
            )
            for tt, nc, key in entries[:12]
        ]
        out += [
            f"**{thread}** thread: {busy:.2f} s busy ({fmt_num(busy / n * 1e6)} µs per "
            f"transaction), {wait:.2f} s idle in `lock.acquire`.",
            "",
            *table(("Function", "Own time (s)", "% of busy", "µs per txn", "Calls"), rows),
            "",
        ]
    return out


def render(res: Results) -> str:
    sections = (
        machine_section,
        _targets,
        errors_section,
        _method,
        _small_throughput,
        _small_latency,
        _small_threads,
        _bulk_snapshot,
        _bulk_catchup,
        _memory,
        _profile,
    )
    return render_section(
        res, (START, END), "python -m bench.engine", "Engine benchmarks (generated)", sections
    )


def write_report(path: Path, res: Results) -> None:
    """Replace the generated section of ``path`` (creating the file when needed)."""
    write_section(path, render(res), (START, END), DEFAULT_HEAD)

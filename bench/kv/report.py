"""The generated key/value section of docs/BENCHMARKS.md (``python -m bench.kv``): every figure comes
from a result.

Only the text between :data:`START` and :data:`END` is (re)written; the markers are appended at
the end of the file when absent, and everything else in the file is kept byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
from bench.kv.load import BenchRow, BenchRun, Dist

START = "<!-- bench:kv:start -->"
END = "<!-- bench:kv:end -->"

# Targets from issue 6 (inputs of the generator, not measurements).
TARGET_GET_SHARE = 0.30
TARGET_SET_OPS = 10_000.0
TARGET_READ_P50_US = 5.0
TARGET_REDIS_RATIO = 15.0
TARGET_DURABLE_RATIO = 1.0

READ_LABELS = {
    "kv_get": "Embedded replica: `client.kv.get(k)` (litecluster.connect, replica=DIR)",
    "raw": "Same process, the SELECT `kv.get` runs, on its own sqlean connection "
    "(`conn.execute(...).fetchone()`): the floor",
    "redis": "redis-py `r.get(k)` against redis-server on 127.0.0.1 (peer; placed by the "
    "scheduler)",
    "redis_same_cpu": "redis-py `r.get(k)`, this thread and redis-server pinned to the same vCPU",
    "redis_other_cpu": "redis-py `r.get(k)`, this thread and redis-server pinned to different "
    "vCPUs",
    "resp_replica": "redis-py `r.get(k)` against the litecluster replica's `--resp` port",
    "resp_primary": "redis-py `r.get(k)` against the litecluster primary's `--resp` port",
}
SYSTEM_LABELS = {
    "litecluster": "litecluster, primary `--sync-replicas 1` and 1 replica (acknowledged once "
    "durable on the primary and applied durably by the replica)",
    "redis": "redis-server `appendonly yes`, `appendfsync always`, 1 replica (same settings), "
    "`WAIT 1 0` after each SET",
}

T = TypeVar("T")


@dataclass(frozen=True)
class ReadRun:
    repeat: int
    paths: dict[str, Dist]
    """Latency in µs, by path (keys of :data:`READ_LABELS`)."""
    timer_ns: float


@dataclass(frozen=True)
class WriteRun:
    system: str
    repeat: int
    clients: int
    acked: int
    errors: int
    first_error: str
    wall_s: float
    latency: Dist | None
    """Send to acknowledgement, ms."""
    server_cpu: float
    """CPU of the server processes (primary and replica), cores over the phase."""

    @property
    def tps(self) -> float:
        return self.acked / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    variants: dict[str, list[str]]
    """redis-benchmark arguments of each variant, in report order."""
    bench: list[BenchRun] = field(default_factory=list)
    reads: list[ReadRun] = field(default_factory=list)
    writes: list[WriteRun] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---- helpers -------------------------------------------------------------------------------------


def _fmt(runs: Iterable[T], get: Callable[[T], float | None], digits: int = 3) -> str:
    return fmt_spread(spread(runs, get), digits)


def command_of(res: Results, variant: str) -> str:
    return "redis-benchmark " + " ".join(res.variants[variant])


def _rows(res: Results, system: str, variant: str, test: str) -> dict[int, BenchRow]:
    """The ``test`` row of every repeat's run of ``variant`` on ``system``, by repeat."""
    out = {}
    for run in res.bench:
        if run.system == system and run.variant == variant and (row := run.row(test)):
            out[run.repeat] = row
    return out


def bench_spread(
    res: Results, system: str, variant: str, test: str, get: Callable[[BenchRow], float]
) -> Spread | None:
    return Spread.of(get(r) for r in _rows(res, system, variant, test).values())


def bench_ratio(res: Results, variant: str, test: str) -> Spread | None:
    """litecluster's ops/s over redis-server's, per repeat."""
    lc, rd = _rows(res, "litecluster", variant, test), _rows(res, "redis", variant, test)
    return ratio_spread((lc[k].rps, rd[k].rps if k in rd else None) for k in lc)


def tests_of(res: Results, variant: str) -> list[str]:
    seen: list[str] = []
    for run in res.bench:
        if run.variant == variant:
            seen += [r.test for r in run.rows if r.test not in seen]
    return seen


def read_p50(run: ReadRun, path: str) -> float | None:
    d = run.paths.get(path)
    return d.p50 if d is not None else None


def read_ratio(res: Results, peer: str, path: str) -> Spread | None:
    """``peer``'s p50 over ``path``'s p50, per repeat."""
    return ratio_spread((read_p50(r, peer), read_p50(r, path)) for r in res.reads)


def _writes(res: Results, system: str) -> list[WriteRun]:
    return [w for w in res.writes if w.system == system]


def durable_ratio(res: Results) -> Spread | None:
    rd = {w.repeat: w.tps for w in _writes(res, "redis")}
    return ratio_spread((w.tps, rd.get(w.repeat)) for w in _writes(res, "litecluster"))


def _verdict_at_least(s: Spread | None, goal: float) -> str:
    return verdict(None if s is None else s.median >= goal)


# ---- sections ------------------------------------------------------------------------------------


def _targets(res: Results) -> list[str]:
    x = "\N{MULTIPLICATION SIGN}"
    rows = []
    for variant in ("getset", "getset_p16"):
        if variant not in res.variants:
            continue
        ratio = bench_ratio(res, variant, "GET")
        rows.append(
            (
                f"GET ops/s, litecluster primary / redis-server (`{command_of(res, variant)}`)",
                f"≥ {TARGET_GET_SHARE:.2f}{x}",
                fmt_ratio(ratio),
                _verdict_at_least(ratio, TARGET_GET_SHARE),
            )
        )
    notes = {
        "getset": "one key and the same value every time: after the first SET nothing changes, "
        "so nothing is committed or replicated",
        "getset_p16": "the same, pipelined",
        "set_new": "every SET a new key: each one committed durably and applied by the replica",
    }
    for variant in ("set_new", "getset", "getset_p16"):
        if variant not in res.variants:
            continue
        ops = bench_spread(res, "litecluster", variant, "SET", lambda r: r.rps)
        rows.append(
            (
                f"SET ops/s on the litecluster primary, `--sync-replicas 1` "
                f"(`{command_of(res, variant)}`: {notes[variant]})",
                f"≥ {fmt_num(TARGET_SET_OPS)} /s",
                f"{fmt_spread(ops)} /s",
                _verdict_at_least(ops, TARGET_SET_OPS),
            )
        )
    p50 = spread(res.reads, lambda r: read_p50(r, "kv_get"))
    rows.append(
        (
            "In-process `client.kv.get` from the embedded replica, p50",
            f"≤ {fmt_num(TARGET_READ_P50_US)} µs",
            f"{fmt_spread(p50)} µs",
            verdict(None if p50 is None else p50.median <= TARGET_READ_P50_US),
        )
    )
    ratio = read_ratio(res, "redis", "kv_get")
    rows.append(
        (
            "redis-py GET p50 against redis-server on loopback (placed by the scheduler) / "
            "`client.kv.get` p50",
            f"≥ {fmt_num(TARGET_REDIS_RATIO)}{x}",
            fmt_ratio(ratio),
            _verdict_at_least(ratio, TARGET_REDIS_RATIO),
        )
    )
    ratio = durable_ratio(res)
    clients = res.config["clients"]
    rows.append(
        (
            f"Durable replicated SETs/s with {clients} clients, litecluster `--sync-replicas 1` / "
            "redis-server `appendfsync always` + 1 replica + `WAIT 1 0`",
            f"≥ {TARGET_DURABLE_RATIO:.2f}{x}",
            fmt_ratio(ratio),
            _verdict_at_least(ratio, TARGET_DURABLE_RATIO),
        )
    )
    return table_section(
        res,
        "Targets",
        "Verdicts use the median over the repeats; ratios are computed per repeat, against "
        "redis-server measured in the same repeat.",
        ("Target", "Goal", "Measured", "Verdict"),
        rows,
    )


def _method(res: Results) -> list[str]:
    c = res.config
    timer = spread(res.reads, lambda r: r.timer_ns)
    reps = c["repeats"]
    return [
        "### Method",
        "",
        f"* {reps} repeat{'s' if reps != 1 else ''}. Each starts a litecluster primary "
        "(`litecluster serve --resp H:P --sync-replicas 1`) and one replica (`--resp H:P`) on "
        "127.0.0.1 (default settings otherwise: txlog fsync on, `replica_durable=true`), a "
        "redis-server without persistence (`--save '' --appendonly no`) and a redis-server "
        "pair for durable writes (`appendonly yes`, `appendfsync always`, and a second "
        "redis-server with the same settings and `replicaof` the first). Within a repeat each "
        "measurement runs on litecluster and on redis-server back to back, litecluster first in "
        "odd repeats and second in even ones, so that machine noise hits both. Cells show the "
        "median and, in parentheses, the min\N{EN DASH}max over the repeats.",
        "* redis-benchmark: Redis's own `redis-benchmark` (one process, 50 connections) against "
        "the litecluster primary's `--resp` port (`-a TOKEN`: the cluster token) and against "
        "the redis-server without persistence, with `--csv`; ops/s and latency percentiles "
        "are redis-benchmark's own. Without `-r` every SET writes the same value to the same "
        "key: litecluster then commits nothing after the first, so the `-r 100000000` run "
        "(a new key for nearly every SET) is the one that measures durable replicated SETs. "
        "No embedded replica is connected during these runs or the durable writes (an "
        "embedded replica never counts for `--sync-replicas`, but it would share the "
        "primary's stream and CPU), and the primary's `/status` shows exactly one replica.",
        f"* In-process reads: {fmt_num(c['keys'])} keys with {c['value_bytes']}-byte values, "
        "`MSET` through the primary's `--resp` port and into the redis-server without "
        "persistence; then an embedded-replica client (`litecluster.connect(..., "
        "replica=DIR)`) in this process catches up and its `client.kv.get` is timed against "
        "redis-py (`redis.Redis(...).get`) on the same keys: random keys, "
        f"{fmt_num(c['lookups'])} timed lookups per path and repeat for the in-process and "
        f"redis-server paths and {fmt_num(c['resp_lookups'])} for the litecluster `--resp` "
        f"paths, interleaved in {c['blocks']} blocks whose order rotates, after "
        f"{fmt_num(c['warmup'])} untimed ones. Each lookup is timed alone with "
        f"`time.perf_counter_ns()` (the clock reads cost {fmt_spread(timer)} ns, included). "
        f"redis-py parses replies with {c['redis_parser']}. As in the SQL benchmark, redis is "
        "also measured with this thread and redis-server pinned to one vCPU and to two.",
        f"* Durable writes: {c['clients']} concurrent connections from one asyncio (uvloop) "
        "process, the same code for both systems: each writes `SET KEY VALUE` (a new key each "
        f"time, a {c['value_bytes']}-byte value) and, for redis-server, `WAIT 1 0` in the same "
        "write (one round trip), reads the replies and sends the next. A write counts once "
        "SET answered `+OK` (and WAIT at least 1); latency is from the send to the last reply. "
        f"{fmt_num(c['write_warmup_s'])} s untimed warm-up, then "
        f"{fmt_num(c['write_seconds'])} s measured. Redis's WAIT counts replicas that "
        "received the write, not replicas that fsynced it; litecluster's replica has applied "
        "it durably before the primary answers. *Server CPU* is the primary's and the "
        "replica's user + system CPU over the phase, in cores (1.00 = one core busy).",
        "",
    ]


def _bench_cell(
    res: Results, variant: str, test: str, system: str, get: Callable[[BenchRow], float]
) -> str:
    return fmt_spread(bench_spread(res, system, variant, test, get))


def _latency(runs: list[WriteRun], get: Callable[[Dist], float]) -> str:
    return _fmt(runs, lambda run: get(run.latency) if run.latency is not None else None)


def _bench_section(res: Results) -> list[str]:
    rows = []
    for variant in res.variants:
        for test in tests_of(res, variant):
            cell = functools.partial(_bench_cell, res, variant, test)
            errs = sum(1 for r in res.bench if r.variant == variant and r.errors)
            rows.append(
                (
                    f"`{command_of(res, variant)}`",
                    test,
                    cell("litecluster", lambda r: r.rps),
                    cell("redis", lambda r: r.rps),
                    fmt_ratio(bench_ratio(res, variant, test)),
                    cell("litecluster", lambda r: r.p50_ms),
                    cell("litecluster", lambda r: r.p99_ms),
                    cell("redis", lambda r: r.p50_ms),
                    cell("redis", lambda r: r.p99_ms),
                    str(errs),
                )
            )
    return table_section(
        res,
        "redis-benchmark: litecluster primary against redis-server",
        "litecluster: the primary of a `--sync-replicas 1` cluster with one replica; "
        "redis-server: no persistence. *Runs with errors*: runs in which redis-benchmark "
        "reported an error (listed below the tables).",
        ("Command", "Test", "litecluster ops/s", "redis-server ops/s", "litecluster / redis",
         "litecluster p50 (ms)", "litecluster p99 (ms)", "redis p50 (ms)", "redis p99 (ms)",
         "Runs with errors"),
        rows,
    )  # fmt: skip


def _reads_section(res: Results) -> list[str]:
    rows = []
    for path, label in READ_LABELS.items():
        runs = [r for r in res.reads if path in r.paths]
        if not runs:
            continue
        dists = [r.paths[path] for r in runs]
        rows.append(
            (
                label,
                _fmt(dists, lambda d: d.p50),
                _fmt(dists, lambda d: d.p99),
                _fmt(dists, lambda d: d.mean),
                fmt_ratio(read_ratio(res, "redis", path)),
            )
        )
    return table_section(
        res,
        "In-process reads against redis-py",
        "Microseconds per lookup. The last column: redis-py GET p50 (scheduler's placement) "
        "over this path's p50, per repeat.",
        ("Path", "p50 (µs)", "p99 (µs)", "mean (µs)", "redis-py GET p50 / this p50"),
        rows,
    )


def _writes_section(res: Results) -> list[str]:
    rows = []
    for system, label in SYSTEM_LABELS.items():
        runs = _writes(res, system)
        if not runs:
            continue
        rd = {w.repeat: w.tps for w in _writes(res, "redis")}
        ratio = ratio_spread((w.tps, rd.get(w.repeat)) for w in runs)

        rows.append(
            (
                label,
                str(runs[0].clients),
                _fmt(runs, lambda w: w.tps),
                fmt_ratio(ratio),
                _latency(runs, lambda d: d.p50),
                _latency(runs, lambda d: d.p99),
                _latency(runs, lambda d: d.max),
                _fmt(runs, lambda w: float(w.errors)),
                _fmt(runs, lambda w: w.server_cpu),
            )
        )
    firsts = sorted({f"{w.system}: `{w.first_error}`" for w in res.writes if w.first_error})
    note = "*vs redis*: writes/s over redis-server's in the same repeat." + (
        " First errors: " + "; ".join(firsts) if firsts else ""
    )
    return table_section(
        res,
        "Durable replicated writes",
        note,
        ("System", "Clients", "Writes/s", "vs redis", "p50 (ms)", "p99 (ms)", "max (ms)",
         "Errors", "Server CPU (cores)"),
        rows,
    )  # fmt: skip


def _bench_errors(res: Results) -> list[str]:
    said = [r for r in res.bench if r.errors]
    if not said:
        return []
    lines = ["### What redis-benchmark reported", ""]
    for r in said:
        first = r.errors.splitlines()[0][:300]
        lines.append(f"* {r.system}, `{command_of(res, r.variant)}`, repeat {r.repeat}: `{first}`")
    return [*lines, ""]


def render(res: Results) -> str:
    sections = (
        machine_section,
        _targets,
        _method,
        _bench_section,
        _reads_section,
        _writes_section,
        _bench_errors,
        errors_section,
    )
    return render_section(
        res,
        (START, END),
        "python -m bench.kv",
        "Key/value and the Redis protocol (generated)",
        sections,
    )


def write_report(path: Path, res: Results) -> None:
    """Rewrite the generated section of ``path`` (appended when absent; the rest kept)."""
    write_section(path, render(res), (START, END), "# Benchmarks\n", exact_tail=True)

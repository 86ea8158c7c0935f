"""The generated synchronous-write section of docs/BENCHMARKS.md: every figure comes from a run.

Only the text between :data:`START` and :data:`END` is (re)written; the markers are appended at
the end of the file when absent, and everything else in the file is kept byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common.load import GroupStats
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

START = "<!-- bench:sync:start -->"
END = "<!-- bench:sync:end -->"

# Target from issue 5 (an input of the generator, not a measurement).
TARGET_K1_VS_DQLITE = 2.0


@dataclass(frozen=True)
class Variant:
    label: str
    cluster: str
    """The cluster it runs on: ``async``, ``k1``, ``k2`` (litecluster), ``dqlite``, ``redis``
    (one redis-server setting at a time) or ``sqlite`` (no server)."""
    sync_replicas: int | None = None
    """litecluster's ``--sync-replicas`` (None: dqlite)."""
    retry_locked: bool = False
    """dqlite: a write answered ``database is locked`` is sent again after a pause."""


VARIANTS = {
    "async": Variant(
        "litecluster, asynchronous (acknowledged once durable on the primary)", "async", 0
    ),
    "k1": Variant(
        "litecluster, `--sync-replicas 1` (and once 1 replica applied it durably)", "k1", 1
    ),
    "k2": Variant("litecluster, `--sync-replicas 2` (and once both replicas applied it)", "k2", 2),
    "dqlite": Variant(
        "dqlite, 3 voters (`dqlite-demo`; Raft: once a majority holds it), a locked write "
        "retried after a pause",
        "dqlite",
        retry_locked=True,
    ),
    "dqlite_errors": Variant(
        "dqlite, the same, a locked write counted as an error (the client moves on)", "dqlite"
    ),
    "redis_none": Variant('redis-server, no persistence (`--save "" --appendonly no`)', "redis"),
    "redis_everysec": Variant(
        "redis-server, `appendonly yes`, `appendfsync everysec` (up to a second of writes lost "
        "on a crash)",
        "redis",
    ),
    "redis_always_wait": Variant(
        "redis-server, `appendfsync always` and 1 replica (same settings), `WAIT 1 0` after "
        "each SET",
        "redis",
    ),
    "sqlite": Variant(
        "plain SQLite, one transaction per write (WAL, `synchronous=FULL`, a connection per "
        "client thread, in-process, no replica)",
        "sqlite",
    ),
}
DQLITE = ("dqlite", "dqlite_errors")
"""The dqlite rows: the peer of a repeat is the faster of them at the same concurrency."""
LITECLUSTER = ("async", "k1", "k2")
PEERS = {
    "dqlite": DQLITE,
    "redis no persistence": ("redis_none",),
    "redis AOF everysec": ("redis_everysec",),
    "redis AOF always + WAIT 1": ("redis_always_wait",),
    "plain SQLite": ("sqlite",),
}
"""The peers of the ratio table: column -> the variants whose best row of a repeat counts."""


@dataclass(frozen=True)
class Preset:
    repeats: int
    seconds: float
    warmup_s: float
    clients: tuple[int, ...] = (32, 1)
    """Concurrency levels; the target's is 32 when among them, else the first."""


@dataclass(frozen=True)
class Phase:
    """One variant's measured load at one concurrency in one repeat."""

    variant: str
    repeat: int
    clients: int
    seconds: float
    acked: int
    errors: int
    retries: int
    """dqlite with retries: writes sent again after ``database is locked``."""
    first_error: str
    tps: float
    """Acknowledged writes over the time from the start to the last answer."""
    latency_ms: tuple[float, float, float]
    """p50, p99, max of send-to-answer of the acknowledged writes (from the first send)."""
    node_cores: float | None
    """CPU of the variant's server processes over the phase, in cores (1.00 = one core); None
    for plain SQLite (no server)."""
    load_cores: float
    machine_busy: float
    groups: GroupStats | None = None
    """litecluster: the primary's writer groups (one transaction, one record each)."""

    @property
    def node_ms_per_1000(self) -> float | None:
        if not self.acked or self.node_cores is None:
            return None
        return self.node_cores * self.seconds / self.acked * 1e6


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def of(self, variant: str, clients: int) -> list[Phase]:
        return [p for p in self.phases if p.variant == variant and p.clients == clients]

    def peer(self, variants: tuple[str, ...], clients: int) -> dict[int, float]:
        """By repeat: the highest writes/s among ``variants`` at ``clients``."""
        out: dict[int, float] = {}
        for p in self.phases:
            if p.variant in variants and p.clients == clients:
                out[p.repeat] = max(out.get(p.repeat, 0.0), p.tps)
        return out


def _fmt(runs: Iterable[Phase], get: Callable[[Phase], float | None], digits: int = 3) -> str:
    return fmt_spread(spread(runs, get), digits)


def _ratio(res: Results, num: str, den: tuple[str, ...], clients: int) -> Spread | None:
    """Per repeat: writes/s of ``num`` over the best of ``den`` in the same repeat."""
    peer = res.peer(den, clients)
    return ratio_spread((p.tps, peer.get(p.repeat)) for p in res.of(num, clients))


TARGET_CLIENTS = 32
"""The concurrency of issue 5's target (when measured; else the first level given)."""


def _target_clients(res: Results) -> int:
    levels = [int(c) for c in res.config["clients"]]
    return TARGET_CLIENTS if TARGET_CLIENTS in levels else levels[0]


def _targets(res: Results) -> list[str]:
    n = _target_clients(res)
    ratio = _ratio(res, "k1", DQLITE, n)
    why = res.skipped.get("dqlite", "")
    return table_section(
        res,
        "Targets",
        "Verdicts use the median over the repeats; the ratio is computed per repeat, against "
        "the faster dqlite row of that repeat.",
        ("Target", "Goal", "Measured", "Verdict"),
        [
            (
                f"Write throughput, litecluster `--sync-replicas 1` / dqlite 3-node, {n} "
                "clients each, same run",
                f"≥ {fmt_num(TARGET_K1_VS_DQLITE)}\N{MULTIPLICATION SIGN}",
                fmt_ratio(ratio) if ratio else f"n/a ({why or 'no pair of phases'})",
                verdict(None if ratio is None else ratio.median >= TARGET_K1_VS_DQLITE),
            )
        ],
    )


def _method(res: Results) -> list[str]:
    c = res.config
    n = c["repeats"]
    levels = " and ".join(str(x) for x in c["clients"])
    skipped = [f"{peer}: {why}" for peer, why in res.skipped.items()]
    return [
        "### Method",
        "",
        f"* {n} repeat{'s' if n != 1 else ''}; each starts every cluster once, in an order that "
        "rotates per repeat, measures its variants at each concurrency on it and kills it, so "
        "only the measured system runs beside the load (and etcd). Every cluster is 3 nodes on "
        "127.0.0.1 with fresh data directories. Cells show the median and, in parentheses, the "
        "min\N{EN DASH}max over the repeats; ratios are computed per repeat (against the peer "
        "measured in the same repeat at the same concurrency), then summarised the same way.",
        "* litecluster: 3 `litecluster serve --etcd URL --lease-ttl "
        f"{c['lease_ttl']} [--sync-replicas K]` processes and one real etcd (default settings "
        "otherwise: txlog fsync on, `replica_durable=true`), writes sent to the elected "
        'primary: `POST /db/execute` with `[["INSERT OR REPLACE INTO model(key, value) '
        'VALUES(?, ?)", key, value]]`. dqlite: 3 `dqlite-demo` processes (the second and '
        "third `--join` the first; measured once all three are voters), writes sent to the "
        "Raft leader's HTTP API: `PUT /KEY` with the value as body, which runs the same "
        "statement on dqlite-demo's table `model(key TEXT, value TEXT, UNIQUE(key))` (created "
        "identically on litecluster). dqlite-demo answers `Error: database is locked` when a "
        "write meets another in flight; one dqlite row sends such a write again after "
        f"{fmt_num(1000 * c['retry_pause_s'])} ms (every write ends acknowledged, as with "
        "litecluster), the other counts it as an error and goes on with the next key (its "
        "warm-up write alone is retried, so that every client takes part).",
        f"* Load: {levels} concurrent clients in this process (asyncio on uvloop), each with "
        "one keep-alive HTTP/1.1 connection whose request bytes it writes itself "
        "(`bench.common.load.RawConn`, the least client CPU per request), one write at a time: a new "
        f"key each (`wREPEAT-CLIENT-SEQ`) with the same {c['value_bytes']}-character value. "
        f"{fmt_num(c['warmup_s'])} s of untimed warm-up writes, then {fmt_num(c['seconds'])} s "
        "measured, per variant and concurrency. *Writes/s* counts acknowledged writes (dqlite: "
        "HTTP 200 with `done`; litecluster: HTTP 200 without an SQL error) over the time from "
        "the start to the last answer; latency is from the first send of a write to its "
        "acknowledgement. CPU is in cores (1.00 = one core busy) over the measured phase, "
        "from psutil; *machine busy* counts every process on the machine.",
        "* redis-server (the same repeats, in the rotation): each setting started fresh on "
        "127.0.0.1 and measured at every concurrency level: no persistence; `appendonly yes` "
        "with `appendfsync everysec`; `appendfsync always` with one replica (same settings, "
        "`replicaof`) and `WAIT 1 0` sent after each `SET` in the same write (acknowledged once "
        "the replica received it). The load: the same number of RESP connections in this "
        "process (`bench.common.resp.durable_load`, asyncio on uvloop, request bytes written by hand), "
        "`SET wREPEAT-VARIANT-CLIENTS:CLIENT:SEQ VALUE` with a value of the same size, one at a "
        "time per connection. Without persistence redis-server is faster than this Python load "
        "generator can ask: compare *Load CPU* with one core.",
        "* Plain SQLite (in the rotation, no server, no replica): one thread per client in this "
        "process, each with its own connection (sqlean, the SQLite litecluster uses) to one WAL "
        "database with `synchronous=FULL`, each write the same `INSERT OR REPLACE` of a new key "
        "in its own autocommit transaction; a write still refused with `database is locked` "
        "after the 5 s busy timeout counts as an error. *Nodes CPU* is n/a; *Load CPU* is "
        "SQLite's own work.",
        *(f"* {s}" for s in skipped),
        "",
    ]


def _writes(res: Results) -> list[str]:
    rows = []
    for clients in res.config["clients"]:
        dq = res.peer(DQLITE, clients)
        for name, v in VARIANTS.items():
            runs = res.of(name, clients)
            if not runs:
                continue
            g = [r.groups for r in runs if r.groups is not None]
            rows.append(
                (
                    v.label,
                    str(clients),
                    _fmt(runs, lambda r: r.tps),
                    fmt_ratio(_ratio(res, name, DQLITE, clients)) if dq else "n/a",
                    fmt_ratio(_ratio(res, name, ("async",), clients))
                    if res.of("async", clients)
                    else "n/a",
                    _fmt(runs, lambda r: r.latency_ms[0]),
                    _fmt(runs, lambda r: r.latency_ms[1]),
                    _fmt(runs, lambda r: r.latency_ms[2]),
                    _fmt(runs, lambda r: r.errors, 1),
                    _fmt(runs, lambda r: r.retries, 1),
                    _fmt(runs, lambda r: r.node_cores),
                    _fmt(runs, lambda r: r.node_ms_per_1000),
                    _fmt(runs, lambda r: r.load_cores),
                    _fmt(runs, lambda r: 100 * r.machine_busy),
                    fmt_spread(spread(g, lambda x: x.mean)) if g else "n/a",
                )
            )
    return table_section(
        res,
        "Writes: every system, same key/value writes",
        "*vs dqlite*: writes/s over the faster dqlite row's writes/s in the same repeat at the "
        "same concurrency; *vs asynchronous*: over litecluster's asynchronous mode, likewise.",
        (
            "Variant",
            "Clients",
            "Writes/s",
            "vs dqlite",
            "vs asynchronous",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
            "Errors",
            "Locked, sent again",
            "Nodes CPU (cores, all servers)",
            "Nodes CPU per 1,000 writes (ms)",
            "Load CPU (cores)",
            "Machine busy (%)",
            "Writes per primary transaction (mean)",
        ),
        rows,
    )


def _peer_ratios(res: Results) -> list[str]:
    peers = {name: vs for name, vs in PEERS.items() if any(p.variant in vs for p in res.phases)}
    rows = []
    for clients in res.config["clients"]:
        for name in LITECLUSTER:
            if res.of(name, clients):
                rows.append((VARIANTS[name].label, str(clients), *(
                    fmt_ratio(_ratio(res, name, vs, clients)) for vs in peers.values()
                )))  # fmt: skip
    if not rows or not peers:
        return []
    return table_section(
        res,
        "Writes: litecluster against each peer",
        "Each cell: litecluster's writes/s over the peer's writes/s in the same repeat at the "
        "same concurrency (the faster dqlite row), median and min\N{EN DASH}max over the "
        "repeats; above 1\N{MULTIPLICATION SIGN}, litecluster acknowledged more writes.",
        ("litecluster", "Clients", *(f"vs {p}" for p in peers)),
        rows,
    )


def _first_errors(res: Results) -> list[str]:
    seen: dict[tuple[str, int, str], int] = {}
    for p in res.phases:
        if p.first_error:
            key = (p.variant, p.clients, p.first_error)
            seen[key] = seen.get(key, 0) + 1
    if not seen:
        return []
    return [
        "### First error of the phases with errors",
        "",
        f"Produced by `{res.command}`.",
        "",
        *(
            f"* {VARIANTS[v].label}, {n} clients, {k} phase{'s' if k != 1 else ''}: `{e}`"
            for (v, n, e), k in seen.items()
        ),
        "",
    ]


def render(res: Results) -> str:
    return render_section(
        res,
        (START, END),
        "python -m bench.sync",
        "Writes against concurrency: litecluster, dqlite, redis-server, plain SQLite (generated)",
        (machine_section, _targets, _method, _writes, _peer_ratios, _first_errors, errors_section),
    )


def write_report(path: Path, res: Results) -> None:
    """Rewrite the generated section of ``path`` (appended when absent; the rest kept)."""
    write_section(path, render(res), (START, END), "# Benchmarks\n", exact_tail=True)

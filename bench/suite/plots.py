"""The PNG plots of ``litecluster bench`` (matplotlib), drawn from the JSON results the
scenarios wrote in the same run: latency distributions and throughput against concurrency.

Each ``plot_*`` function takes the loaded JSON of its scenario and a path, draws one figure and
returns its caption; :data:`PLOTS` lists them with the scenario whose results they need.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib import ticker
from matplotlib.axes import Axes

from bench.kv.load import QUANTILES

LC, PEER = "tab:blue", "tab:red"
READ_PATHS = {
    "kv_get": ("litecluster `client.kv.get` (embedded replica)", "tab:blue"),
    "raw": ("its SELECT on the raw SQLite connection (floor)", "tab:cyan"),
    "redis": ("redis-py GET, redis-server (scheduler's placement)", "tab:red"),
    "redis_same_cpu": ("redis-py GET, redis-server on the same vCPU", "tab:orange"),
    "resp_replica": ("redis-py GET, litecluster replica `--resp`", "tab:purple"),
}
SYNC_VARIANTS = {
    "async": ("litecluster asynchronous", "tab:blue", "-"),
    "k1": ("litecluster --sync-replicas 1", "tab:green", "-"),
    "k2": ("litecluster --sync-replicas 2", "tab:olive", "-"),
    "dqlite": ("dqlite 3 voters (locked: retried)", "tab:red", "--"),
    "dqlite_errors": ("dqlite 3 voters (locked: error)", "tab:orange", "--"),
    "redis_none": ("redis-server, no persistence", "tab:purple", ":"),
    "redis_everysec": ("redis-server, AOF everysec", "tab:pink", ":"),
    "redis_always_wait": ("redis-server, AOF always + replica + WAIT 1", "tab:brown", ":"),
    "sqlite": ("plain SQLite, 1 txn per write (FULL)", "tab:gray", "-."),
}


def _plain(axis: Any) -> None:
    """Plain numbers (1, 30, 100) on a log-scale axis instead of powers of ten."""
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.6g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _cdf(ax: Axes, quantiles: list[float], label: str | None, color: str) -> None:
    ax.plot(quantiles, [q / 100 for q in QUANTILES], color=color, label=label, linewidth=1.4)


def _source(data: dict[str, Any]) -> str:
    return f"`{data.get('command', '')}` ({data.get('facts', {}).get('Date', '')})"


def plot_kv_reads(data: dict[str, Any], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, (label, color) in READ_PATHS.items():
        shown = False
        for run in data["reads"]:
            d = run["paths"].get(key)
            if d is not None and len(d["quantiles"]) == len(QUANTILES):
                _cdf(ax, d["quantiles"], None if shown else label, color)
                shown = True
    ax.set_xscale("log")
    _plain(ax.xaxis)
    ax.set_xlabel("latency of one point read (µs, log scale)")
    ax.set_ylabel("fraction of reads")
    ax.set_title("Point reads: in-process kv.get against redis-py GET (one line per repeat)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return "Latency distribution of point reads (kv scenario): " + _source(data)


def plot_kv_writes(data: dict[str, Any], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = {
        "litecluster": ("litecluster SET, --sync-replicas 1", LC),
        "redis": ("redis-server SET + WAIT 1 0, appendfsync always", PEER),
    }
    shown: set[str] = set()
    for w in data["writes"]:
        if w.get("latency") is None or w["system"] not in labels:
            continue
        label, color = labels[w["system"]]
        _cdf(ax, w["latency"]["quantiles"], None if w["system"] in shown else label, color)
        shown.add(w["system"])
    ax.set_xscale("log")
    _plain(ax.xaxis)
    ax.set_xlabel("send to acknowledgement (ms, log scale)")
    ax.set_ylabel("fraction of writes")
    ax.set_title(f"Durable replicated writes, {data['config']['clients']} clients (per repeat)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return "Latency distribution of durable replicated writes (kv scenario): " + _source(data)


def plot_redis_benchmark(data: dict[str, Any], path: Path) -> str:
    rps: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for run in data["bench"]:
        for row in run["rows"]:
            rps[(run["variant"], row["test"], run["system"])].append(row["rps"])
            if (run["variant"], row["test"]) not in order:
                order.append((run["variant"], row["test"]))
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.55 * len(order)))
    h = 0.38
    for i, (variant, test) in enumerate(order):
        for j, (system, color) in enumerate((("litecluster", LC), ("redis", PEER))):
            vals = rps.get((variant, test, system))
            if not vals:
                continue
            med = statistics.median(vals)
            err = [[med - min(vals)], [max(vals) - med]]
            label = (
                ("litecluster primary (--sync-replicas 1)" if system == "litecluster"
                 else "redis-server (no persistence)") if i == 0 else None
            )  # fmt: skip
            ax.barh(i + (j - 0.5) * h, med, h, xerr=err, color=color, label=label)
    args = data.get("variants", {})
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(
        [f"{t}  ({' '.join(a for a in args.get(v, []) if a not in ('-c', '50'))})"
         for v, t in order], fontsize=7,
    )  # fmt: skip
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ops/s (log scale; median, min-max over repeats)")
    ax.set_title("redis-benchmark, 50 connections")
    _plain(ax.xaxis)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    _save(fig, path)
    return "redis-benchmark ops/s, litecluster against redis-server (kv scenario): " + _source(data)


def _tps(phase: dict[str, Any]) -> float:
    return float(phase["tps"])


def _p99_ms(phase: dict[str, Any]) -> float:
    return float(phase["latency_ms"][1])


def plot_write_concurrency(data: dict[str, Any], path: Path) -> str:
    by: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for ph in data["phases"]:
        by[ph["variant"]][int(ph["clients"])].append(ph)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for variant, (label, color, style) in SYNC_VARIANTS.items():
        levels = sorted(by.get(variant, {}))
        if not levels:
            continue
        for ax, get in ((ax1, _tps), (ax2, _p99_ms)):
            meds, lo, hi = [], [], []
            for c in levels:
                vals = [get(p) for p in by[variant][c]]
                med = statistics.median(vals)
                meds.append(med)
                lo.append(med - min(vals))
                hi.append(max(vals) - med)
            ax.errorbar(levels, meds, yerr=[lo, hi], color=color, linestyle=style, marker="o",
                        label=label, capsize=3)  # fmt: skip
    levels = sorted({int(ph["clients"]) for ph in data["phases"]})
    for ax, what in ((ax1, "acknowledged writes/s"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(levels)
        _plain(ax.xaxis)
        _plain(ax.yaxis)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(f"{what} (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_title("Write throughput against concurrency")
    ax2.set_title("Write latency against concurrency")
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=3)  # fmt: skip
    _save(fig, path)
    return "Write throughput and p99 latency against concurrency (sync scenario): " + _source(data)


def plot_failover(data: dict[str, Any], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    by: dict[int, list[float]] = defaultdict(list)
    for run in data["runs"]:
        if run.get("total_s") is not None:
            by[int(run["ttl"])].append(float(run["total_s"]))
    for (ttl, times), color in zip(sorted(by.items()), ("tab:blue", "tab:green", "tab:purple"),
                                   strict=False):  # fmt: skip
        xs = sorted(times)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", color=color, label=f"lease TTL {ttl} s ({len(xs)} runs)")
        ax.axvline(2 * ttl, color=color, linestyle=":", linewidth=1)
    dq = sorted(float(r["total_s"]) for r in data.get("dqlite_runs", []) if r.get("total_s"))
    if dq:
        ax.step(dq, [(i + 1) / len(dq) for i in range(len(dq))], where="post", color="tab:red",
                linestyle="--", label=f"dqlite-demo, 3 voters ({len(dq)} runs)")  # fmt: skip
    ax.set_xlabel("kill -9 of the primary (leader) to the first acknowledged write (s)")
    ax.set_ylabel("fraction of runs")
    ax.set_title("Failover time, litecluster and dqlite (dotted: twice the lease TTL)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return "Distribution of failover times (failover scenario): " + _source(data)


def plot_replication_lag(data: dict[str, Any], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = ["p50", "p99", "p99.9", "max"]
    colors = iter(["tab:blue", "tab:cyan", "tab:red", "tab:orange", "tab:green", "tab:olive"])
    for runs in data["runs"].values():
        for rate in data["config"]["rates"]:
            lags = [lag for run in runs for lag in run["lags"] if lag["rate"] == rate]
            if not lags:
                continue
            color = next(colors, "tab:gray")
            setup = runs[0]["setup"]
            label = (f"{rate:,.0f} tx/s, writer synchronous={setup['writer_sync']}, "
                     f"replica_durable={str(setup['replica_durable']).lower()}")  # fmt: skip
            for i, lag in enumerate(lags):
                ax.plot(names, lag["lag_each_ms"], marker="o", color=color,
                        label=None if i else label, linewidth=1)  # fmt: skip
    ax.set_yscale("log")
    _plain(ax.yaxis)
    ax.set_xlabel("percentile over every (transaction, replica) pair")
    ax.set_ylabel("commit to visible on a replica (ms, log scale)")
    ax.set_title(f"Replication lag, {data['config']['replicas']} replicas (one line per repeat)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return "Replication lag distribution at fixed write rates (replication scenario): " + _source(
        data
    )


PLOTS: list[tuple[str, str, Callable[[dict[str, Any], Path], str]]] = [
    ("kv", "kv-read-latency.png", plot_kv_reads),
    ("kv", "redis-benchmark.png", plot_redis_benchmark),
    ("kv", "kv-durable-write-latency.png", plot_kv_writes),
    ("sync", "write-throughput-vs-concurrency.png", plot_write_concurrency),
    ("replication", "replication-lag.png", plot_replication_lag),
    ("failover", "failover-times.png", plot_failover),
]
"""(scenario whose JSON it needs, file name, function)."""

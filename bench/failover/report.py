"""The generated failover section of docs/BENCHMARKS.md: every figure comes from a run.

Only the text between :data:`START` and :data:`END` is (re)written; the markers are appended at
the end of the file when absent, and everything else in the file is kept byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common.report import (
    errors_section,
    fmt_num,
    machine_section,
    render_section,
    table_section,
    verdict,
    write_section,
)
from bench.failover.dqlite import DqliteFailover

START = "<!-- bench:failover:start -->"
END = "<!-- bench:failover:end -->"

# Targets (inputs of the generator, not measurements): issue 5's benchmark target, and its
# fault-suite acceptance bound (recovery under twice the lease TTL).
TARGET_P50_S = 3.0
TARGET_P50_TTL = 2
TARGET_MAX_TTLS = 2.0


@dataclass(frozen=True)
class FailoverRun:
    ttl: int
    run: int
    killed: str
    new_primary: str
    total_s: float | None
    """Kill to the first write acknowledged by another node (None: none within the timeout)."""
    detection_s: float | None
    """Kill to the deletion of the leader key (the dead primary's lease expired in etcd)."""
    election_s: float | None
    """Deletion to the creation of the new leader key."""
    promotion_s: float | None
    """New leader key to the new primary's ``node.role role=primary`` log line."""
    first_write_s: float | None
    """That log line to the first acknowledged write."""
    via: str
    """The node that answered the first acknowledged write (itself or a forwarding replica)."""
    refused: int
    """Writes refused or failed between the kill and the first acknowledged one."""
    acked_before: int
    """Writes acknowledged by the old primary in the load before the kill."""
    lost: int | None
    """Of those, missing on the new primary once the cluster settled again."""


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    runs: list[FailoverRun] = field(default_factory=list)
    dqlite_runs: list[DqliteFailover] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Peer -> why it was not measured."""
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def _vals(runs: list[FailoverRun], get: Callable[[FailoverRun], float | None]) -> list[float]:
    return [v for r in runs if (v := get(r)) is not None]


def _pct(values: list[float], p: float) -> float | None:
    return float(np.percentile(values, p)) if values else None


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _s3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ms(x: float | None, scale: float = 1.0) -> str:
    """Seconds as milliseconds (or a count, with ``scale`` 1000), 3 significant digits."""
    return "n/a" if x is None else fmt_num(x * 1000 / scale)


def _by_ttl(res: Results) -> dict[int, list[FailoverRun]]:
    out: dict[int, list[FailoverRun]] = {int(t): [] for t in res.config["ttls"]}
    for r in res.runs:
        out.setdefault(r.ttl, []).append(r)
    return out


def _totals(runs: list[FailoverRun]) -> list[float]:
    return _vals(runs, lambda r: r.total_s)


def _targets(res: Results) -> list[str]:
    rows = []
    by_ttl = _by_ttl(res)
    runs = by_ttl.get(TARGET_P50_TTL, [])
    p50 = _pct(_totals(runs), 50)
    rows.append(
        (
            f"Failover p50 (kill -9 of the primary to the first acknowledged write), lease TTL "
            f"{TARGET_P50_TTL} s",
            f"< {fmt_num(TARGET_P50_S)} s",
            f"{_s(p50)} s over {len(_totals(runs))} runs",
            verdict(None if p50 is None else p50 < TARGET_P50_S),
        )
    )
    for ttl, runs in by_ttl.items():
        totals = _totals(runs)
        worst = max(totals) if totals else None
        failed = len(runs) - len(totals)
        ok = None if worst is None else worst < TARGET_MAX_TTLS * ttl and failed == 0
        rows.append(
            (
                f"Failover max, lease TTL {ttl} s (fault-suite bound: twice the TTL)",
                f"< {fmt_num(TARGET_MAX_TTLS * ttl)} s",
                f"{_s(worst)} s over {len(totals)} runs"
                + (f", {failed} without a new primary" if failed else ""),
                verdict(ok),
            )
        )
    return table_section(
        res,
        "Targets",
        "",
        ("Target", "Goal", "Measured", "Verdict"),
        rows,
    )


def _method(res: Results) -> list[str]:
    c = res.config
    ttls = " and ".join(f"{t} s" for t in c["ttls"])
    k = int(c.get("sync_replicas", 0))
    mode = f"`--sync-replicas {k}`" if k else "asynchronous mode"
    return [
        "### Method",
        "",
        f"* For each lease TTL ({ttls}): a real etcd and 3 `litecluster serve --etcd URL "
        f"--lease-ttl TTL` processes on 127.0.0.1 ({mode}, default settings otherwise), "
        f"started once and reused for {c['runs']} failover{'s' if c['runs'] != 1 else ''}. "
        "Before each run the cluster is settled (one primary; both replicas streaming from it "
        f"and caught up); {c['load_clients']} clients then write to the primary for "
        f"{fmt_num(c['load_seconds'])} s plus a random part of one renewal round (a third of the "
        "TTL), so the kill falls anywhere in the lease cycle.",
        "* The primary's process group gets SIGKILL; from that instant one client per survivor "
        "sends single-row inserts (`POST /db/execute`, a new key each, a lean HTTP/1.1 client "
        f"with a {fmt_num(1000 * c['retry_pause_s'])} ms pause after a refusal). The failover "
        "time ends at the first answer acknowledging a write by a node other than the killed "
        "one (`position.node`), sent directly or forwarded by a replica. The killed node is "
        "then restarted and rejoins as a replica before the next run.",
        "* Components: *detection* is the kill to the deletion of the leader key (the dead "
        "primary's lease expiring in etcd), *election* that deletion to the new leader key, "
        "both as an etcd watch on the key delivered them to the benchmark; *promotion* the new "
        "key to the new primary's log line `node.role role=primary` (log timestamps have "
        "millisecond resolution); *first write* that line to the acknowledged write.",
        "* *Lost* counts the writes the old primary acknowledged in the load before the kill "
        "that the new primary lacks once the cluster settled again (in asynchronous mode: "
        "acknowledged but not yet streamed; in synchronous mode it must be 0).",
        *_dqlite_method(res),
        "",
    ]


def _dqlite_method(res: Results) -> list[str]:
    c = res.config
    if "dqlite" in res.skipped:
        return [f"* dqlite: {res.skipped['dqlite']}."]
    n = int(c.get("dqlite_runs", 0))
    return [
        "* dqlite, in the same run (after the litecluster runs): 3 `dqlite-demo` processes "
        "(Debian `go-dqlite`; the second and third `--join` the first), started once and "
        f"reused for {n} failover{'s' if n != 1 else ''}. Before each run every node answers a "
        f"write and is a voter; {c['load_clients']} clients write to the Raft leader's API "
        f"(`PUT /KEY`) for {fmt_num(c['load_seconds'])} s plus a random part of a second; "
        "the leader (the node `dqlite -s ... .leader` names) gets SIGKILL on its process "
        "group. From that instant each survivor's API gets a new `PUT /KEY` every 20 ms, each "
        "on its own connection and none abandoned (a write can wait in the demo's driver while "
        "it looks for the new leader): the failover time ends at the first `done`. The killed "
        "node is restarted on its data directory and rejoins before the next run. dqlite's "
        "own timeouts (go-dqlite's defaults) play the part of the lease TTL.",
    ]


def _dqlite(res: Results) -> list[str]:
    if not res.dqlite_runs:
        return []
    dq = _vals_dq(res.dqlite_runs)
    dq50 = _pct(dq, 50)
    rows = [(
        "dqlite-demo, 3 voters (Raft)", f"{len(dq)} of {len(res.dqlite_runs)}",
        _s(dq50), _s(_pct(dq, 90)), _s(max(dq) if dq else None), _s(min(dq) if dq else None),
        "1.00\N{MULTIPLICATION SIGN}" if dq50 else "n/a",
    )]  # fmt: skip
    for ttl, runs in _by_ttl(res).items():
        totals = _totals(runs)
        p50 = _pct(totals, 50)
        rows.append((
            f"litecluster, lease TTL {ttl} s", f"{len(totals)} of {len(runs)}", _s(p50),
            _s(_pct(totals, 90)), _s(max(totals) if totals else None),
            _s(min(totals) if totals else None),
            f"{p50 / dq50:.2f}\N{MULTIPLICATION SIGN}" if p50 is not None and dq50 else "n/a",
        ))  # fmt: skip
    return table_section(
        res,
        "Against dqlite: the same kill -9 of the leader",
        "Seconds from the kill to the first acknowledged write. *p50 vs dqlite*: the p50 over "
        "dqlite's p50 (below 1\N{MULTIPLICATION SIGN}, litecluster recovers sooner); runs are "
        "not paired, so the ratio is of the medians.",
        ("System", "Runs with an acknowledged write", "p50", "p90", "max", "min", "p50 vs dqlite"),
        rows,
    )


def _vals_dq(runs: list[DqliteFailover]) -> list[float]:
    return [r.total_s for r in runs if r.total_s is not None]


def _summary(res: Results) -> list[str]:
    rows = []
    for ttl, runs in _by_ttl(res).items():
        totals = _totals(runs)
        parts = [_vals(runs, g) for g in (
            lambda r: r.detection_s, lambda r: r.election_s, lambda r: r.promotion_s,
            lambda r: r.first_write_s,
        )]  # fmt: skip
        lost = _vals(runs, lambda r: None if r.lost is None else float(r.lost))
        acked = sum(r.acked_before for r in runs if r.lost is not None)
        rows.append(
            (
                f"{ttl} s",
                f"{len(totals)} of {len(runs)}",
                _s(_pct(totals, 50)),
                _s(_pct(totals, 90)),
                _s(max(totals) if totals else None),
                _s(min(totals) if totals else None),
                _s(_pct(parts[0], 50)),
                _s(_pct(parts[1], 50)),
                _ms(_pct(parts[2], 50)),
                _ms(_pct(parts[3], 50)),
                _ms(_pct(_vals(runs, lambda r: float(r.refused)), 50), 1000),
                f"{fmt_num(sum(lost), 1)} of {fmt_num(acked, 1)}" if lost else "n/a",
            )
        )
    return table_section(
        res,
        "Failover time by lease TTL",
        "Seconds unless stated. Components are medians of each component over the runs (they "
        "need not add up to the median total).",
        (
            "Lease TTL",
            "Runs with a new primary",
            "p50",
            "p90",
            "max",
            "min",
            "Detection p50",
            "Election p50",
            "Promotion p50 (ms)",
            "First write p50 (ms)",
            "Refused writes p50",
            "Acknowledged writes lost (all runs)",
        ),
        rows,
    )


def _runs(res: Results) -> list[str]:
    lines = ["### Every run", "", f"Produced by `{res.command}`. Kill to first acknowledged write, "
             "seconds, in the order of the runs (detection + election + promotion + first write "
             "in parentheses).", ""]  # fmt: skip
    for ttl, runs in _by_ttl(res).items():
        cells = [
            f"{_s(r.total_s)} ({_s3(r.detection_s)} + {_s3(r.election_s)} + "
            f"{_s3(r.promotion_s)} + {_s3(r.first_write_s)})"
            for r in runs
        ]
        lines.append(f"* TTL {ttl} s: " + ("; ".join(cells) if cells else "no run"))
    if res.dqlite_runs:
        lines.append("* dqlite: " + "; ".join(_s(r.total_s) for r in res.dqlite_runs))
    return [*lines, ""]


def render(res: Results) -> str:
    return render_section(
        res,
        (START, END),
        "python -m bench.failover",
        "Failover benchmarks (generated)",
        (machine_section, _targets, _method, _summary, _dqlite, _runs, errors_section),
    )


def write_report(path: Path, res: Results) -> None:
    """Rewrite the generated section of ``path`` (appended when absent; the rest kept)."""
    write_section(path, render(res), (START, END), "# Benchmarks\n", exact_tail=True)

"""Bootstrap benchmark (issue 7): how fast a new replica gets a database, how fast a stopped one
catches up, and how much memory a node and an embedded replica use, at 100 MB and 1 GB.

Usage::

    python -m bench.bootstrap [--quick | --smoke] [--repeats N] [--out docs/BENCHMARKS.md]
                              [--json FILE] [--workdir DIR]

For each database size (full run: 100 MB and 1 GB; ``--quick``: 100 MB; ``--smoke``: 20 MB),
each repeat:

1. builds the database (``bench.common.report.create_big_db``: the ``kv`` table and random blobs) in
   the data directory of a primary and starts it (``litecluster serve``, default settings);
2. *peer*: copies the file with ``shutil.copyfile`` and fsyncs the copy (the floor of moving the
   bytes on this disk), timed in the same repeat;
3. starts a replica node with an empty data directory and times it until it reports the
   primary's position (snapshot transfer, verification and install);
4. starts an embedded replica in a child process (``litecluster.connect(..., replica=DIR)``),
   times it until its local copy holds every row, runs random point reads, and reports its RSS;
5. stops the replica node (SIGTERM), writes transactions into the primary's file (one 1 KB
   upsert each, an application writing directly), restarts the replica and times its catch-up
   from the log;
6. reads the RSS (current and peak) of the primary and the replica node.

The section between ``<!-- bench:bootstrap:start -->`` and ``<!-- bench:bootstrap:end -->`` of
``--out`` is rewritten (appended when absent; the rest of the file is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from bench.common.cluster import attempt, logger, on_sigterm, write_json
from bench.common.nodes import Cluster, Setup
from bench.common.report import (
    FSYNC_FACT,
    REPO,
    Spread,
    command_line,
    errors_section,
    finish_run,
    fmt_num,
    fmt_ratio,
    fmt_spread,
    fsync_fact,
    machine_section,
    ratio_spread,
    render_section,
    spread,
    start_facts,
    table_section,
    verdict,
    write_section,
)
from bench.common.workload import UPSERT, Workload, create_big_db
from litecluster.cli.localcluster import LocalNode
from litecluster.engine.sqlite import connect

START = "<!-- bench:bootstrap:start -->"
END = "<!-- bench:bootstrap:end -->"
TARGET_MBPS = 100.0
"""Snapshot install of 1 GB (issue 3's engine target, here through real node processes)."""
TARGET_SIZE_MB = 1000
SETUP = Setup("bootstrap", writer_sync="NORMAL", replica_durable=True)
log = logger("bootstrap")


@dataclass(frozen=True)
class Preset:
    sizes: tuple[int, ...]
    catch_up_txns: int
    reads: int
    repeats: int


PRESETS = {
    "full": Preset(sizes=(100, 1000), catch_up_txns=20_000, reads=20_000, repeats=2),
    "quick": Preset(sizes=(100,), catch_up_txns=5_000, reads=5_000, repeats=1),
    "smoke": Preset(sizes=(20,), catch_up_txns=500, reads=500, repeats=1),
}


@dataclass
class BootRun:
    size_mb: int
    repeat: int
    db_bytes: int
    copy_s: float | None = None
    node_install_s: float | None = None
    embedded_install_s: float | None = None
    catch_up_txns: int = 0
    catch_up_s: float | None = None
    catch_up_bytes: int = 0
    node_start_s: list[float] = field(default_factory=list)
    """Replica node process start to ready (listening), before each timed phase."""
    """Bytes of log records the primary shipped during the catch-up."""
    rss_mb: dict[str, float] = field(default_factory=dict)
    """Current RSS after the run: ``primary``, ``replica``, ``embedded``."""
    peak_mb: dict[str, float] = field(default_factory=dict)
    read_p50_us: float | None = None

    def mbps(self, seconds: float | None) -> float | None:
        return self.db_bytes / 1e6 / seconds if seconds else None


@dataclass
class Results:
    command: str
    facts: dict[str, str]
    config: dict[str, Any]
    runs: list[BootRun] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---- the embedded replica, in a child process --------------------------------------------------


def embedded_child(http: str, listen: str, token_file: str, directory: str, rows: int,
                   keys: int, reads: int) -> int:  # fmt: skip
    """Bootstrap an embedded replica, read from it, print one JSON line of figures."""
    import resource

    import litecluster

    t0 = time.perf_counter()
    c = litecluster.connect(http, replica=directory, primary=listen, token_file=token_file)
    deadline = time.monotonic() + 600
    while True:
        try:
            if c.query("SELECT count(*) FROM blobs").rows[0][0] >= rows:
                break
        except Exception:  # the local copy has no table yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the embedded replica did not catch up in 600 s")
        time.sleep(0.01)
    boot = time.perf_counter() - t0
    rng, times = random.Random(1), []
    for _ in range(reads):
        k = rng.randrange(keys)
        t = time.perf_counter_ns()
        c.query("SELECT v FROM kv WHERE k = ?", (k,))
        times.append(time.perf_counter_ns() - t)
    times.sort()
    rss = psutil.Process().memory_info().rss / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux
    print(json.dumps({"boot_s": boot, "rss_mb": rss, "peak_mb": peak,
                      "read_p50_us": times[len(times) // 2] / 1e3}))  # fmt: skip
    c.close()
    return 0


def run_embedded(cl: Cluster, directory: Path, rows: int, wl: Workload, reads: int) -> Any:
    assert cl.primary is not None
    cmd = [sys.executable, "-m", "bench.bootstrap", "--embedded", cl.primary.http, cl.primary.listen,
           str(cl.token_file), str(directory), str(rows), str(wl.keys), str(reads)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"embedded replica child failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- one repeat ----------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB (KiB) to MB
    return float("nan")


def write_primary(path: Path, txns: int, seed: int) -> None:
    """``txns`` one-row upserts of 1 KB values into the primary's file, one transaction each."""
    wl = Workload(txns=txns, value_bytes=1000, seed=seed)
    keys, values = wl.generate()
    conn = connect(path)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA synchronous=NORMAL")
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            conn.execute(UPSERT, (k, v, i))
    finally:
        conn.close()


def start_and_converge(cl: Cluster, node: LocalNode, run: BootRun) -> float:
    """Start the replica node; seconds from its being ready (the process started and
    listening, recorded apart) until it reports the primary's position and checksum."""
    t0 = time.perf_counter()
    node.start(timeout=60)
    t1 = time.perf_counter()
    run.node_start_s.append(t1 - t0)
    if not cl.wait_converged(900):
        raise RuntimeError(f"the replica did not catch up: {cl.log_tails()}")
    return time.perf_counter() - t1


def run_one(res: Results, p: Preset, work: Path, size_mb: int, rep: int) -> None:
    root = work / f"{size_mb}mb-{rep}"
    shutil.rmtree(root, ignore_errors=True)
    wl = Workload(txns=0, seed=rep)
    db = root / "lc" / "primary" / "db" / "main.db"
    db.parent.mkdir(parents=True)
    size = create_big_db(db, size_mb, wl)
    conn = connect(db)
    rows = int(conn.execute("SELECT count(*) FROM blobs").fetchall()[0][0])
    conn.close()
    run = BootRun(size_mb, rep, size)
    res.runs.append(run)
    tag = f"{size_mb} MB repeat {rep}"
    try:
        with Cluster(root / "lc", SETUP) as cl:
            cl.start(0)
            assert cl.primary is not None
            t0 = time.perf_counter()
            copy = root / "copy.db"
            shutil.copyfile(db, copy)
            with open(copy, "rb+") as f:
                os.fsync(f.fileno())
            run.copy_s = time.perf_counter() - t0
            copy.unlink()
            node = LocalNode(root / "lc" / "replica1", "replica1", cl.token_file,
                             primary=cl.primary.listen, env=cl.env)  # fmt: skip
            cl.replicas.append(node)
            run.node_install_s = start_and_converge(cl, node, run)
            log(f"{tag}: replica node bootstrapped at {run.mbps(run.node_install_s):.0f} MB/s, "
                f"file copy {run.mbps(run.copy_s):.0f} MB/s")  # fmt: skip
            with attempt(res, f"embedded replica {tag}", log):
                got = run_embedded(cl, root / "embedded", rows, wl, p.reads)
                run.embedded_install_s = got["boot_s"]
                run.rss_mb["embedded"], run.peak_mb["embedded"] = got["rss_mb"], got["peak_mb"]
                run.read_p50_us = got["read_p50_us"]
                log(f"{tag}: embedded replica at {run.mbps(run.embedded_install_s):.0f} MB/s, "
                    f"RSS {got['rss_mb']:.0f} MB")  # fmt: skip
            with attempt(res, f"catch-up {tag}", log):
                node.stop()
                write_primary(db, p.catch_up_txns, seed=rep)
                shipped0 = int(cl.primary_status()["stats"]["bytes_shipped"])
                run.catch_up_s = start_and_converge(cl, node, run)
                run.catch_up_txns = p.catch_up_txns
                run.catch_up_bytes = int(cl.primary_status()["stats"]["bytes_shipped"]) - shipped0
                log(f"{tag}: caught up {p.catch_up_txns:,} records in {run.catch_up_s:.2f} s")
            for name, n in (("primary", cl.primary), ("replica", node)):
                if n.proc is not None and n.running:
                    run.rss_mb[name] = psutil.Process(n.proc.pid).memory_info().rss / 1e6
                    run.peak_mb[name] = peak_rss_mb(n.proc.pid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- the report ----------------------------------------------------------------------------------


Seconds = Callable[[BootRun], float | None]
"""How long one step of a run took (seconds; None when it did not run)."""


def _runs(res: Results, size: int) -> list[BootRun]:
    return [r for r in res.runs if r.size_mb == size]


def _targets(res: Results) -> list[str]:
    rows = []
    installs: tuple[tuple[str, Seconds], ...] = (
        ("a new replica node", lambda r: r.node_install_s),
        ("a new embedded replica", lambda r: r.embedded_install_s),
    )
    for what, get in installs:
        s = Spread.of(r.mbps(get(r)) for r in _runs(res, TARGET_SIZE_MB))
        rows.append((
            f"Snapshot install of a {fmt_num(TARGET_SIZE_MB)} MB database on {what} (ready to "
            "caught up: transfer, verification, install)",
            f"≥ {fmt_num(TARGET_MBPS)} MB/s",
            f"{fmt_spread(s)} MB/s" if s else "not measured (no 1 GB database in this run)",
            verdict(None if s is None else s.median >= TARGET_MBPS),
        ))  # fmt: skip
    return table_section(res, "Targets", "Verdicts use the median over the repeats.",
                         ("Target", "Goal", "Measured", "Verdict"), rows)  # fmt: skip


def _method(res: Results) -> list[str]:
    c = res.config
    return [
        "### Method",
        "",
        f"* Sizes {', '.join(f'{s:,} MB' for s in c['sizes'])} (10^6 bytes), {c['repeats']} "
        "repeat(s) each. The database (a `kv` table and random 256 KiB blobs) is built in the "
        "primary's data directory before `litecluster serve` starts (default settings: txlog "
        "fsync on, `replica_durable=true`); everything runs on 127.0.0.1.",
        "* *Replica node*: a `litecluster serve --primary` with an empty data directory, timed "
        "from the moment it is ready (process started and listening: "
        f"{fmt_spread(Spread.of(x for r in res.runs for x in r.node_start_s))} s, not "
        "counted) until `/status` shows the primary's position and checksum (the primary sends "
        "a snapshot; the replica verifies and installs it). *Embedded replica*: a "
        "child process calling `litecluster.connect(..., replica=DIR)`, timed until its local "
        f"copy holds every row, then {fmt_num(c['reads'])} random point reads "
        "(`SELECT v FROM kv WHERE k = ?`) before its RSS is read. MB/s is the database size "
        "over that time. *Peer*: `shutil.copyfile` of the same file plus `fsync`, in the "
        "same repeat (the disk's floor for moving the bytes once).",
        f"* *Catch-up*: the replica node is stopped, {fmt_num(c['catch_up_txns'])} one-row "
        "upserts with 1 KB values are written into the primary's file by an application "
        "(one transaction each), and the restarted replica is timed from ready until it reports "
        "the primary's position; MB/s counts the log records the primary shipped meanwhile.",
        "* *RSS*: resident memory (psutil) after the run, and the peak (`VmHWM`; "
        "`ru_maxrss` for the embedded child, whose figure includes the Python interpreter "
        "and the client).",
        "",
    ]


def _records_per_s(r: BootRun) -> float | None:
    return r.catch_up_txns / r.catch_up_s if r.catch_up_s else None


def _speed(res: Results) -> list[str]:
    rows = []
    for size in res.config["sizes"]:
        runs = _runs(res, size)
        copy = [(r.mbps(r.copy_s)) for r in runs]
        steps: tuple[tuple[str, Seconds], ...] = (
            ("replica node: snapshot install", lambda r: r.node_install_s),
            ("embedded replica: snapshot install", lambda r: r.embedded_install_s),
            ("file copy + fsync (peer)", lambda r: r.copy_s),
        )
        for what, get in steps:
            mbps = [r.mbps(get(r)) for r in runs]
            rows.append((f"{fmt_num(size)} MB", what,
                         fmt_spread(spread(runs, get)), fmt_spread(Spread.of(mbps)),
                         fmt_ratio(ratio_spread(zip(mbps, copy, strict=True)))))  # fmt: skip
        cu = [r for r in runs if r.catch_up_s]
        rows.append((
            f"{fmt_num(size)} MB",
            f"replica node: catch-up of {fmt_num(res.config['catch_up_txns'])} records",
            fmt_spread(spread(cu, lambda r: r.catch_up_s)),
            fmt_spread(spread(cu, lambda r: r.catch_up_bytes / 1e6 / r.catch_up_s
                              if r.catch_up_s else None)),
            f"{fmt_spread(spread(cu, _records_per_s))} records/s",
        ))  # fmt: skip
    return table_section(res, "Snapshot install and catch-up through node processes",
                         "*vs file copy*: MB/s over the file copy's MB/s in the same repeat "
                         "(for catch-up: records per second instead).",
                         ("Database", "What", "Seconds", "MB/s", "vs file copy"), rows)  # fmt: skip


def _memory(res: Results) -> list[str]:
    rows = []
    for size in res.config["sizes"]:
        runs = _runs(res, size)
        for who, label in (("primary", "primary node"), ("replica", "replica node"),
                           ("embedded", "embedded replica (whole application process)")):  # fmt: skip
            rows.append((f"{fmt_num(size)} MB", label,
                         fmt_spread(Spread.of(r.rss_mb.get(who) for r in runs)),
                         fmt_spread(Spread.of(r.peak_mb.get(who) for r in runs))))  # fmt: skip
        rows.append((f"{fmt_num(size)} MB", "embedded replica: point read p50 (µs)",
                     fmt_spread(spread(runs, lambda r: r.read_p50_us)), ""))  # fmt: skip
    return table_section(res, "Memory of a node and of an embedded replica", "",
                         ("Database", "Process", "RSS (MB)", "Peak RSS (MB)"), rows)  # fmt: skip


def write_report(path: Path, res: Results) -> None:
    body = render_section(res, (START, END), "python -m bench.bootstrap",
                          "Bootstrap, catch-up and memory through node processes (generated)",
                          (machine_section, _targets, _method, _speed, _memory,
                           errors_section))  # fmt: skip
    write_section(path, body, (START, END), "# Benchmarks\n", exact_tail=True)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--embedded":
        a = sys.argv[2:]
        return embedded_child(a[0], a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="100 MB only (under a minute)")
    mode.add_argument("--smoke", action="store_true", help="20 MB (seconds; for tests)")
    ap.add_argument("--repeats", type=int, help="repeats of every size")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temp dir)")
    args = ap.parse_args(argv)

    on_sigterm()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeats:
        preset = replace(preset, repeats=args.repeats)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcboot-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(command_line(), start_facts(work), dict(preset.__dict__))
    log(f"work dir {work}; {res.command}; fdatasync {res.facts[FSYNC_FACT]}")
    try:
        for rep in range(1, preset.repeats + 1):
            for size in preset.sizes:  # sizes alternate within each repeat
                with attempt(res, f"{size} MB repeat {rep}", log):
                    run_one(res, preset, work, size, rep)
        res.facts[FSYNC_FACT] += "; " + fsync_fact(work, "end")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    def write(out: Path, r: Results) -> None:
        write_report(out, r)
        if args.json is not None:
            write_json(args.json, r)

    finish_run(res, t_start, write, args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engine benchmarks: small replicated transactions, snapshots, catch-up and memory.

Usage::

    python -m bench.engine [--quick | --smoke] [--size-mb N] [--out docs/BENCHMARKS.md]

Runs every scenario (see ``bench.engine.small`` and ``bench.engine.bulk``), repeating each measured one
``--repeats`` times with litecluster and its plain-SQLite peer alternating, and rewrites the
generated section of the report (between ``<!-- bench:engine:start -->`` and
``<!-- bench:engine:end -->``), keeping the rest of the file. The default is the full run (about
ten minutes on a 2-core VM, with a 1 GB database and a replica 100,000 records behind);
``--quick`` takes about a minute at smaller sizes and ``--smoke`` a few seconds (for tests).
Scratch files go to a temporary directory (``--workdir`` to choose; the full run needs about
8 GB free there).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common.report import (
    FSYNC_FACT,
    REPO,
    command_line,
    finish_run,
    fmt_num,
    fsync_fact,
    start_facts,
)
from bench.common.workload import Workload
from bench.engine.bulk import child_main, lock_page_probe, prepare, run_child
from bench.engine.report import TARGET_TPS, Results, Variant, write_report
from bench.engine.small import SmallResult, run_litecluster, run_plain


@dataclass(frozen=True)
class Preset:
    txns: int
    paced_seconds: float
    size_mb: int
    behind: int
    repeats: int
    profile_txns: int


PRESETS = {
    "full": Preset(
        txns=40_000, paced_seconds=8.0, size_mb=1000, behind=100_000, repeats=3, profile_txns=20_000
    ),
    "quick": Preset(
        txns=4_000, paced_seconds=1.0, size_mb=64, behind=10_000, repeats=3, profile_txns=3_000
    ),
    "smoke": Preset(
        txns=300, paced_seconds=0.1, size_mb=4, behind=300, repeats=1, profile_txns=300
    ),
}

VARIANTS = [
    Variant("lc_durable", "litecluster", txlog_fsync=True, replica_durable=True),
    Variant("plain_full", "plain", synchronous="FULL"),
    Variant("lc_capture", "capture", txlog_fsync=True),
    Variant("lc_fast", "litecluster", txlog_fsync=False, replica_durable=False),
    Variant(
        "lc_logdur", "litecluster", txlog_fsync=True, replica_durable=False, writer_sync="NORMAL"
    ),
    Variant("plain_normal", "plain", synchronous="NORMAL"),
    Variant(
        "lc_durable_5k", "litecluster", txlog_fsync=True, replica_durable=True, rate=TARGET_TPS
    ),
    Variant("lc_fast_5k", "litecluster", txlog_fsync=False, replica_durable=False, rate=TARGET_TPS),
    Variant(
        "lc_logdur_5k",
        "litecluster",
        txlog_fsync=True,
        replica_durable=False,
        writer_sync="NORMAL",
        rate=TARGET_TPS,
    ),
    Variant("lc_durable_1k", "litecluster", txlog_fsync=True, replica_durable=True, rate=1000.0),
    Variant("lc_txlog_1k", "litecluster", txlog_fsync=True, replica_durable=False, rate=1000.0),
    Variant("lc_fast_1k", "litecluster", txlog_fsync=False, replica_durable=False, rate=1000.0),
]
"""Run in this order within each repeat, so each litecluster run sits next to its peers."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_small_variant(v: Variant, root: Path, wl: Workload, paced_seconds: float) -> SmallResult:
    shutil.rmtree(root, ignore_errors=True)
    try:
        if v.kind == "plain":
            return run_plain(root, wl, v.synchronous)
        if v.rate is not None:
            txns = max(100, int(v.rate * paced_seconds))
            wl = Workload(txns, wl.keys, wl.value_bytes, wl.seed)
        return run_litecluster(
            root,
            wl,
            txlog_fsync=v.txlog_fsync,
            replica_durable=v.replica_durable,
            replica=v.kind == "litecluster",
            rate=v.rate,
            writer_sync=v.writer_sync,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_bulk(res: Results, work: Path, size_mb: int, behind: int, batch: int, repeats: int) -> None:
    """Prepare the bulk files, then alternate litecluster and plain children ``repeats`` times."""
    (work / "bulk").mkdir(parents=True, exist_ok=True)
    res.lock_probe = lock_page_probe(work / "bulk")
    t0 = time.perf_counter()
    res.prep = prepare(work / "bulk", size_mb, behind, batch)
    log(
        f"bulk prepared in {time.perf_counter() - t0:.0f} s "
        f"({res.prep.db_bytes / 1e6:.0f} MB, {res.prep.records_behind} records behind)"
    )
    for rep in range(repeats):
        for kind, runs in (("litecluster", res.bulk_lc), ("plain", res.bulk_plain)):
            r = run_child(kind, res.prep.params)
            runs.append(r)
            secs = ", ".join(f"{k} {v:.2f}s" for k, v in r["seconds"].items())
            log(f"bulk {rep + 1}/{repeats} {kind}: {secs}; peak rss {r['peak_rss_mb']:.0f} MB")


def _summary(r: SmallResult) -> str:
    s = f"commit {fmt_num(r.commit_tps)} tx/s"
    if r.replicated_tps is not None and r.visible_ms is not None:
        s += (
            f", replicated {fmt_num(r.replicated_tps)} tx/s, visible p50 "
            f"{r.visible_ms[0]:.2f} ms p99 {r.visible_ms[2]:.2f} ms"
        )
    return s + f", cpu {fmt_num(r.cpu_us_per_txn)} µs/txn"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes (seconds; for tests)")
    ap.add_argument("--size-mb", type=int, help="size of the bulk database in MB (10**6 bytes)")
    ap.add_argument("--behind", type=int, help="transactions the catch-up replica is behind")
    ap.add_argument("--txns", type=int, help="transactions per unthrottled small-txn run")
    ap.add_argument("--repeats", type=int, help="repeats of every measured scenario")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--only", choices=("small", "bulk"), help="run only one group")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "PARAMS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        child_main(*args.child)
        return 0

    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    txns = args.txns or preset.txns
    size_mb = args.size_mb or preset.size_mb
    behind = args.behind or preset.behind
    repeats = args.repeats or preset.repeats
    bulk_batch = 1000
    wl = Workload(txns)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcbench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(
        command=command_line(),
        facts=start_facts(work),
        config={
            "txns": txns,
            "paced_seconds": preset.paced_seconds,
            "keys": wl.keys,
            "value_bytes": wl.value_bytes,
            "batch_max": 1000,
            "size_mb": size_mb,
            "behind": behind,
            "bulk_batch": bulk_batch,
            "repeats": repeats,
        },
        variants=VARIANTS,
    )
    log(f"work dir {work}; {res.command}; fdatasync {res.facts[FSYNC_FACT]}")
    try:
        if args.only in (None, "small"):
            for rep in range(repeats):
                for v in VARIANTS:
                    try:
                        r = run_small_variant(v, work / "small", wl, preset.paced_seconds)
                    except Exception as exc:
                        res.errors.append(f"small {v.key} repeat {rep + 1}: {exc!r}")
                        log(f"small {rep + 1}/{repeats} {v.key} FAILED: {exc!r}")
                        continue
                    res.small.setdefault(v.key, []).append(r)
                    log(f"small {rep + 1}/{repeats} {v.key}: {_summary(r)}")
            if not args.no_profile:
                pwl = Workload(preset.profile_txns)
                root = work / "profile"
                shutil.rmtree(root, ignore_errors=True)
                try:
                    res.profile = run_litecluster(
                        root, pwl, txlog_fsync=True, replica_durable=True, profile=True
                    )
                    log(f"profile: {_summary(res.profile)}")
                except Exception as exc:
                    res.errors.append(f"profile run: {exc!r}")
                    log(f"profile FAILED: {exc!r}")
                shutil.rmtree(root, ignore_errors=True)
        if args.only in (None, "bulk"):
            try:
                run_bulk(res, work, size_mb, behind, bulk_batch, repeats)
            except Exception as exc:
                res.errors.append(f"bulk: {exc!r}")
                log(f"bulk FAILED: {exc!r}")
            shutil.rmtree(work / "bulk", ignore_errors=True)
        res.facts[FSYNC_FACT] += "; " + fsync_fact(work, "end")
    finally:
        shutil.rmtree(work / "bulk", ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    note = " (the bulk children import the engine when they start)"
    finish_run(res, t_start, write_report, args.out, log, code_note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())

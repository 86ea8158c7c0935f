"""Replication benchmark over loopback: real node processes, an application writing the primary.

Usage::

    python -m bench.replication [--quick | --smoke] [--repeats N] [--out docs/BENCHMARKS.md]

Starts ``litecluster serve`` processes on 127.0.0.1 (a primary and 2 replicas per
configuration) and measures, with the primary's database written directly by this process:

1. commit-to-visible on the replicas (p50/p99/p99.9) at 1,000 and 5,000 offered tx/s, read
   from the replica files by a separate reader process (``bench.replication.load``);
2. the maximum sustained write rate (closed-loop writer) and whether the replicas keep up,
   against plain SQLite with the same writer and no node running;
3. the bytes shipped per small transaction (compressed records) and their uncompressed size;
4. the CPU of each replica per 1,000 records, and the primary's maximum write rate with 1 and
   with 10 replicas (fan-out);
5. commit-to-visible at the same fixed rates with 10 replicas (in the first ``wide_repeats``
   repeats: ten replica processes make it the slowest scenario).

Each configuration runs ``--repeats`` times and the report section between
``<!-- bench:replication:start -->`` and ``<!-- bench:replication:end -->`` of ``--out`` is
rewritten (the markers are appended when absent; the rest of the file is kept). The default is
the full run (under ten minutes on a 2-core VM); ``--quick`` takes one to two minutes and
``--smoke`` a few seconds (tiny sizes, for tests); ``--json FILE`` also writes every figure.
Scratch files go to a temporary directory (``--workdir`` to choose and keep it); every node
process is killed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.common.cluster import fine_timers, write_json
from bench.common.nodes import Setup
from bench.common.report import FSYNC_FACT, REPO, command_line, finish_run, fsync_fact, start_facts
from bench.replication.load import reader_main
from bench.replication.report import Results, write_report
from bench.replication.scenarios import (
    Params,
    max_summary,
    run_fanout,
    run_plain,
    run_setup,
    run_wide_lag,
)

RATES = (1000.0, 5000.0)


@dataclass(frozen=True)
class Preset:
    paced_seconds: float
    max_seconds: float
    fanout_seconds: float
    warmup_s: float
    repeats: int
    fanout: tuple[int, ...]
    wide_replicas: int
    wide_seconds: float
    """Each fixed rate's phase on the wide cluster."""
    wide_repeats: int


PRESETS = {
    "full": Preset(
        paced_seconds=10.0,
        max_seconds=8.0,
        fanout_seconds=8.0,
        warmup_s=0.5,
        repeats=3,
        fanout=(0, 1, 10),
        wide_replicas=10,
        wide_seconds=4.0,
        wide_repeats=2,
    ),
    "quick": Preset(
        paced_seconds=3.0,
        max_seconds=3.0,
        fanout_seconds=3.0,
        warmup_s=0.3,
        repeats=2,
        fanout=(0, 1, 10),
        wide_replicas=10,
        wide_seconds=2.0,
        wide_repeats=1,
    ),
    "smoke": Preset(
        paced_seconds=0.3,
        max_seconds=0.3,
        fanout_seconds=0.3,
        warmup_s=0.0,
        repeats=1,
        fanout=(0, 1, 2),
        wide_replicas=3,
        wide_seconds=0.3,
        wide_repeats=1,
    ),
}

SETUPS = [
    Setup("normal", writer_sync="NORMAL", replica_durable=False),
    Setup("full", writer_sync="FULL", replica_durable=True),
]
"""Run in this order within each repeat, each followed by its plain-SQLite peer."""

FANOUT_SETUP = SETUPS[0]


def log(msg: str) -> None:
    print(f"[replication {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: nodes are killed


@contextlib.contextmanager
def _scenario(
    res: Results, root: Path, name: str, *, log_name: str | None = None, use_repr: bool = False
) -> Iterator[None]:
    """Run the body as one scenario in ``root``, removed afterwards whatever happened.

    An error does not stop the benchmark: it is listed in the report as ``name: <the first line
    of the message>`` (``use_repr``: the repr of the exception) and logged as
    ``log_name FAILED: <the message or repr>`` (``log_name`` defaults to ``name``).
    """
    try:
        yield
    except Exception as exc:
        text = repr(exc) if use_repr else (str(exc).strip() or repr(exc))
        res.errors.append(f"{name}: {text if use_repr else text.splitlines()[0]}")
        log(f"{log_name or name} FAILED: {text}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_all(res: Results, preset: Preset, params: Params, work: Path, setups: list[Setup]) -> None:
    for rep in range(preset.repeats):
        tag = f"repeat {rep + 1}/{preset.repeats}"
        for setup in setups:
            root = work / f"{setup.key}-{rep + 1}"
            with _scenario(res, root, f"{setup.key} {tag}"):
                run = run_setup(setup, root, params, log)
                res.runs.setdefault(setup.key, []).append(run)
            sync = setup.writer_sync
            with _scenario(res, work / "plain", f"plain {sync} {tag}", use_repr=True):
                plain = run_plain(work / "plain", sync, params.max_seconds, params.value_bytes)
                res.plain.setdefault(sync, []).append(plain)
                log(f"plain {sync}: {plain.commit_tps:,.0f} commits/s")
        counts = list(preset.fanout) if rep % 2 == 0 else list(reversed(preset.fanout))
        for n in counts:
            root = work / f"fanout{n}-{rep + 1}"
            with _scenario(res, root, f"fan-out {n} replicas {tag}", log_name=f"fan-out {n} {tag}"):
                r = run_fanout(FANOUT_SETUP, n, root, params, preset.fanout_seconds)
                res.fanout.setdefault(n, []).append(r)
                log(f"fan-out {tag}: {max_summary(r)}")
        if rep < preset.wide_repeats:
            n = preset.wide_replicas
            wide = dataclasses.replace(params, paced_seconds=preset.wide_seconds)
            with _scenario(res, work / f"wide-{rep + 1}", f"{n} replicas at fixed rates {tag}"):
                for lag in run_wide_lag(FANOUT_SETUP, n, work / f"wide-{rep + 1}", wide):
                    res.wide.append(lag)
                    log(
                        f"{n} replicas {lag.rate:,.0f}/s: achieved {lag.achieved_tps:,.0f} tx/s, "
                        f"lag p50 {lag.lag_each_ms[0]:.2f} p99 {lag.lag_each_ms[1]:.2f} ms, on "
                        f"all p50 {lag.lag_all_ms[0]:.2f} ms (poll {lag.poll_us:.0f} µs)"
                    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter phases (one to two minutes)")
    mode.add_argument("--smoke", action="store_true", help="tiny phases (seconds; for tests)")
    ap.add_argument("--repeats", type=int, help="repeats of every scenario")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--reader", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.reader:
        out, start, poll_us, timeout, *paths = args.reader
        return reader_main(out, int(start), float(poll_us), float(timeout), paths)

    signal.signal(signal.SIGTERM, _terminate)
    fine_timers()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeats:
        preset = Preset(**{**preset.__dict__, "repeats": args.repeats})
    params = Params(
        rates=RATES,
        paced_seconds=preset.paced_seconds,
        max_seconds=preset.max_seconds,
        warmup_s=preset.warmup_s,
        drain_timeout=30.0 if args.smoke else 120.0,
    )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcrepl-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(
        command=command_line(),
        facts=start_facts(work),
        config={
            "rates": params.rates,
            "paced_seconds": params.paced_seconds,
            "max_seconds": params.max_seconds,
            "fanout_seconds": preset.fanout_seconds,
            "warmup_s": params.warmup_s,
            "replicas": params.replicas,
            "value_bytes": params.value_bytes,
            "poll_us": params.poll_us,
            "repeats": preset.repeats,
            "wide_replicas": preset.wide_replicas,
            "wide_seconds": preset.wide_seconds,
            "wide_repeats": min(preset.wide_repeats, preset.repeats),
        },
        setups=SETUPS,
        fanout_setup=FANOUT_SETUP,
        fanout_counts=preset.fanout,
    )
    log(f"work dir {work}; {res.command}; fdatasync {res.facts[FSYNC_FACT]}")
    try:
        run_all(res, preset, params, work, SETUPS)
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

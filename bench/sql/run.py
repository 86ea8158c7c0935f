"""SQL API and embedded-replica benchmark (issue 4): point reads and concurrent HTTP writes.

Usage::

    python -m bench.sql [--quick | --smoke] [--repeats N] [--out docs/BENCHMARKS.md]

Each repeat starts ``litecluster serve`` processes on 127.0.0.1 (a primary and 2 replicas) and
a ``redis-server`` (the peer; ``apt-get install redis-server``), and measures:

1. point reads by primary key through an embedded replica in this process
   (``litecluster.connect(..., replica=DIR)``, ``c.query``), through the raw sqlean connection
   that client reads with and through the stdlib ``sqlite3`` module on the same file, with
   redis-py ``GET`` on the same keys and values, over HTTP (``GET /db/query`` on the primary
   and on a replica, and the remote client), and over HTTP from a 3-node dqlite-demo cluster
   holding the same rows (``bench.sql.dqlite``; skipped, and said so, without ``go-dqlite``):
   p50/p99 in µs;
2. single-row inserts over HTTP by 32 concurrent clients (``POST /db/execute``), with each of
   the load generators of ``bench.common.load``: writes/s acknowledged, writes/s replicated to both
   replicas, and the primary's group-commit sizes;

then, with the nodes gone, the plain-SQLite peer: the same inserts, one transaction each,
``synchronous`` FULL and NORMAL, 1 and 32 threads.

The report section between ``<!-- bench:sql:start -->`` and ``<!-- bench:sql:end -->`` of
``--out`` is rewritten (appended when absent; the rest of the file is kept byte for byte). The
default is the full run (about five minutes on a 2-core VM); ``--quick`` takes one to two
minutes and ``--smoke`` a few seconds (tiny sizes, for tests). Scratch files go to a temporary
directory (``--workdir`` to choose and keep it); every node and redis process is killed at the
end, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import litecluster
from bench.common.cluster import DQLITE_HINT, fine_timers
from bench.common.load import KINDS
from bench.common.nodes import Cluster, Setup, machine_cpu
from bench.common.reads import (
    LOAD_BATCH,
    ReadPaths,
    RedisMissing,
    RedisServer,
    check_redis,
    load_redis,
    load_rows,
    make_rows,
    measure_reads,
    redis_parser,
    timer_overhead_ns,
    verify,
)
from bench.common.report import FSYNC_FACT, REPO, command_line, finish_run, fsync_fact, start_facts
from bench.sql.dqlite import add_stdlib, dqlite_reads
from bench.sql.report import PLAIN_ROWS, ReadRun, Results, write_report
from bench.sql.writes import plain_phase, prepare_table, write_phase, write_summary

REPLICAS = 2
VALUE_BYTES = 100
SETUP = Setup("sql", writer_sync="NORMAL", replica_durable=True)
"""The nodes' default configuration (``writer_sync`` is not used here: the node's writer runs)."""


@dataclass(frozen=True)
class Preset:
    rows: int
    lookups: int
    http_lookups: int
    blocks: int
    warmup: int
    write_seconds: float
    plain_seconds: float
    repeats: int
    clients: int = 32


PRESETS = {
    "full": Preset(
        rows=10_000, lookups=20_000, http_lookups=2_000, blocks=10, warmup=1_000,
        write_seconds=5.0, plain_seconds=4.0, repeats=5,
    ),
    "quick": Preset(
        rows=10_000, lookups=10_000, http_lookups=1_000, blocks=5, warmup=500,
        write_seconds=2.5, plain_seconds=1.5, repeats=2,
    ),
    "smoke": Preset(
        rows=1_000, lookups=1_000, http_lookups=100, blocks=2, warmup=50,
        write_seconds=0.3, plain_seconds=0.2, repeats=1,
    ),
}  # fmt: skip


def log(msg: str) -> None:
    print(f"[sql {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: processes are killed


@contextlib.contextmanager
def _attempt(res: Results, name: str) -> Iterator[None]:
    """An error in the body is listed in the report (first line) and logged; the run goes on."""
    try:
        yield
    except Exception as exc:
        text = str(exc).strip() or repr(exc)
        res.errors.append(f"{name}: {type(exc).__name__}: {text.splitlines()[0][:300]}")
        log(f"{name} FAILED: {text[:2000]}")


def run_reads(
    res: Results, cl: Cluster, redis: RedisServer, root: Path, p: Preset, rep: int
) -> None:
    assert cl.primary is not None
    rows = make_rows(p.rows, VALUE_BYTES)
    c = litecluster.connect(
        cl.primary.http, replica=root / "embedded", primary=cl.primary.listen,
        token_file=cl.token_file,
    )  # fmt: skip
    remote = litecluster.connect(cl.primary.http)
    r = redis.client()
    paths: ReadPaths | None = None
    stack = contextlib.ExitStack()
    try:
        t0 = time.perf_counter()
        load_rows(c, rows)
        load_redis(r, rows)
        if not cl.wait_converged(60.0):
            raise RuntimeError("the replicas did not catch up with the loaded rows")
        log(f"loaded {len(rows):,} rows in {time.perf_counter() - t0:.1f} s")
        assert redis.proc is not None
        paths = ReadPaths.build(c, r, redis.proc.pid, cl.primary.http, cl.replicas[0].http, remote)
        assert c._embedded is not None
        replica_file = c._embedded._conns[c.db].execute("PRAGMA database_list").fetchall()[0][2]
        stack.callback(add_stdlib(paths, replica_file).close)
        if not res.config.get("dqlite"):
            with _attempt(res, f"dqlite cluster repeat {rep}"):
                stack.enter_context(dqlite_reads(root / "dqlite", rows, paths, log))
        verify(paths, rows, sample=min(200, len(rows)))
        busy0 = machine_cpu()
        lat = measure_reads(
            paths, [k for k, _ in rows], lookups=p.lookups, http_lookups=p.http_lookups,
            blocks=p.blocks, warmup=p.warmup, seed=rep,
        )  # fmt: skip
        busy1 = machine_cpu()
        busy = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1])
        res.reads.append(ReadRun(rep, lat, timer_overhead_ns(), busy))
        log(
            "reads p50/p99 µs: "
            + ", ".join(f"{k} {v.p50_us:.2f}/{v.p99_us:.2f}" for k, v in lat.items())
        )
    finally:
        if paths is not None:
            paths.close()
        stack.close()
        r.close()
        remote.close()
        c.close()


def run_repeat(res: Results, p: Preset, work: Path, rep: int) -> None:
    tag = f"repeat {rep}/{p.repeats}"
    root = work / f"cluster-{rep}"
    value = "v" * VALUE_BYTES
    try:
        with _attempt(res, f"cluster {tag}"), Cluster(root, SETUP) as cl:
            with RedisServer(root / "redis") as redis:
                cl.start(REPLICAS)
                redis.start()
                with _attempt(res, f"reads {tag}"):
                    run_reads(res, cl, redis, root, p, rep)
            prepare_table(cl)
            shift = (rep - 1) % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                with _attempt(res, f"writes {kind} {tag}"):
                    cl.check_alive()
                    w = write_phase(cl, rep, kind, p.clients, p.write_seconds, value, 120.0)
                    res.writes.setdefault(kind, []).append(w)
                    log(f"writes {kind} {tag}: {write_summary(w)}")
                    if w.errors:
                        log(f"  first error: {w.first_error}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for sync, threads in PLAIN_ROWS:
        with _attempt(res, f"plain {sync} {threads} threads {tag}"):
            pr = plain_phase(work / "plain", rep, sync, threads, p.plain_seconds, value)
            res.plain.setdefault(pr.key, []).append(pr)
            log(f"plain {sync} {threads} threads {tag}: {pr.tps:,.0f} commits/s")
    shutil.rmtree(work / "plain", ignore_errors=True)


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
    ap.add_argument("--no-dqlite", action="store_true", help="skip the dqlite read peer")
    args = ap.parse_args(argv)

    try:
        check_redis()
    except RedisMissing as exc:
        print(f"python -m bench.sql: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    fine_timers()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeats:
        preset = replace(preset, repeats=args.repeats)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcsql-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(
        command=command_line(),
        facts=start_facts(work),
        config={
            "rows": preset.rows,
            "value_bytes": VALUE_BYTES,
            "load_batch": LOAD_BATCH,
            "lookups": preset.lookups,
            "http_lookups": preset.http_lookups,
            "blocks": preset.blocks,
            "warmup": preset.warmup,
            "write_seconds": preset.write_seconds,
            "plain_seconds": preset.plain_seconds,
            "clients": preset.clients,
            "repeats": preset.repeats,
            "redis_parser": redis_parser(),
            "dqlite": "not measured (--no-dqlite)"
            if args.no_dqlite
            else ""
            if shutil.which("dqlite-demo") and shutil.which("dqlite")
            else f"not measured: dqlite-demo or the dqlite shell not on PATH ({DQLITE_HINT})",
        },
        kinds=KINDS,
    )
    log(f"work dir {work}; {res.command}; fdatasync {res.facts[FSYNC_FACT]}")
    try:
        for rep in range(1, preset.repeats + 1):
            run_repeat(res, preset, work, rep)
        res.facts[FSYNC_FACT] += "; " + fsync_fact(work, "end")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    finish_run(res, t_start, write_report, args.out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

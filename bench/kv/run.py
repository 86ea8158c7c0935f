"""Key/value benchmark (issue 6): the Redis protocol against redis-server, in-process reads from
an embedded replica against redis-py, and durable replicated writes.

Usage::

    python -m bench.kv [--quick | --smoke] [--repeats N] [--out docs/BENCHMARKS.md]
                       [--json FILE] [--workdir DIR]

Each repeat starts a litecluster primary (``--resp``, ``--sync-replicas 1``) and one replica
(``--resp``) on 127.0.0.1, a redis-server without persistence and a redis-server pair with
``appendfsync always`` (a primary and its replica), then measures, litecluster and redis-server
back to back (their order alternating per repeat):

1. ``redis-benchmark -t get,set -c 50 -n 200000`` (and with ``-P 16``) against the litecluster
   primary and the redis-server without persistence; the same with ``-r 100000000`` (a new key
   for nearly every SET, so that every SET commits and replicates); and
   ``-t incr,lpush,hset``;
2. durable replicated writes with 50 clients: litecluster SET in synchronous mode against
   redis-server with ``appendfsync always``, one replica and ``WAIT 1 0`` after each SET, with
   the same lean RESP load generator (``bench.kv.load.durable_load``);
3. in-process ``client.kv.get`` from an embedded replica against redis-py GET on loopback.

The section between ``<!-- bench:kv:start -->`` and ``<!-- bench:kv:end -->`` of ``--out`` is
rewritten (appended when absent; the rest of the file is kept); ``--json`` writes every figure,
latency distributions included (for ``litecluster bench``'s plots). The default is the full run
(about five minutes on a 2-core VM); ``--quick`` takes about a minute and ``--smoke`` a few
seconds (tiny sizes, for tests). Every process started is killed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import litecluster
from bench.common.cluster import attempt, cpu_seconds, fine_timers, logger, on_sigterm, write_json
from bench.common.nodes import Cluster, Setup
from bench.common.reads import (
    RedisMissing,
    RedisServer,
    _pinned,
    _timed_lookup,
    check_redis,
    redis_parser,
    sample_reads,
    timer_overhead_ns,
)
from bench.common.report import FSYNC_FACT, REPO, command_line, finish_run, fsync_fact, start_facts
from bench.common.resp import AOF_ALWAYS, durable_load, redis_pair
from bench.kv.load import (
    BenchRun,
    Dist,
    Missing,
    need_redis_benchmark,
    redis_benchmark,
    tool_version,
)
from bench.kv.report import ReadRun, Results, WriteRun, write_report
from litecluster.cli.localcluster import free_port
from litecluster.engine.sqlite import connect as sqlite_connect
from litecluster.kv.db import key_hash

_RAW_GET = "SELECT type, expire_at, value FROM kv_keys WHERE db=? AND h=? AND key=?"
VALUE_BYTES = 100
CLIENTS = 50
SETUP = Setup("kv", writer_sync="NORMAL", replica_durable=True)
log = logger("kv")


@dataclass(frozen=True)
class Preset:
    n: int
    """``-n`` of the redis-benchmark runs given by the issue."""
    n_other: int
    """``-n`` of the runs added here (new keys; INCR, LPUSH, HSET)."""
    keys: int
    lookups: int
    resp_lookups: int
    blocks: int
    warmup: int
    write_seconds: float
    write_warmup_s: float
    repeats: int


PRESETS = {
    "full": Preset(
        n=200_000, n_other=30_000, keys=10_000, lookups=20_000, resp_lookups=2_000, blocks=10,
        warmup=1_000, write_seconds=5.0, write_warmup_s=1.0, repeats=3,
    ),
    "quick": Preset(
        n=20_000, n_other=10_000, keys=5_000, lookups=10_000, resp_lookups=1_000, blocks=5,
        warmup=500, write_seconds=2.0, write_warmup_s=0.5, repeats=2,
    ),
    "smoke": Preset(
        n=2_000, n_other=1_000, keys=500, lookups=1_000, resp_lookups=100, blocks=2,
        warmup=50, write_seconds=0.3, write_warmup_s=0.1, repeats=1,
    ),
}  # fmt: skip


def variants(p: Preset) -> dict[str, list[str]]:
    """redis-benchmark arguments of each run (without host, port and password)."""
    base = ["-c", str(CLIENTS)]
    return {
        "getset": ["-t", "get,set", *base, "-n", str(p.n)],
        "getset_p16": ["-t", "get,set", *base, "-n", str(p.n), "-P", "16"],
        "set_new": ["-t", "set", *base, "-n", str(p.n_other), "-r", "100000000"],
        "others": ["-t", "incr,lpush,hset", *base, "-n", str(p.n_other)],
    }


class Systems:
    """What one repeat runs: the litecluster nodes and the redis-servers."""

    def __init__(self, cl: Cluster, token: str, resp: tuple[int, int], plain: RedisServer,
                 aof: tuple[RedisServer, RedisServer]) -> None:  # fmt: skip
        self.cl, self.token, self.resp, self.plain, self.aof = cl, token, resp, plain, aof

    def lc_pids(self) -> list[int]:
        return [n.proc.pid for n in self.cl.nodes if n.proc is not None]

    def aof_pids(self) -> list[int]:
        return [r.proc.pid for r in self.aof if r.proc is not None]

    def check_one_replica(self) -> None:
        """Synchronous mode counts every connected replica: exactly the replica node must be."""
        got = [r["node_id"] for r in self.cl.primary_status()["replicas"]]
        if got != ["replica1"]:
            raise RuntimeError(f"the primary streams to {got}, not to the replica node alone")


def start_litecluster(cl: Cluster) -> tuple[int, int]:
    """Start the primary (synchronous mode, K=1) and its replica, both with ``--resp``; return
    their RESP ports once a write is acknowledged."""
    import redis

    pport, rport = free_port(), free_port()
    cl.start(
        1,
        primary_args=["--resp", f"127.0.0.1:{pport}", "--sync-replicas", "1"],
        replica_args=lambda i: ["--resp", f"127.0.0.1:{rport}"],
    )
    token = cl.token_file.read_text()
    deadline = time.monotonic() + 60
    with redis.Redis(port=pport, password=token, socket_timeout=30) as r:
        while True:  # acknowledged once the replica holds it: the cluster is ready
            try:
                r.set("ready", "1")
                break
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no write acknowledged by the cluster: {exc}") from exc
                time.sleep(0.1)
    return pport, rport


def run_bench(res: Results, s: Systems, p: Preset, rep: int, lc_first: bool) -> None:
    for variant, args in res.variants.items():
        targets: list[tuple[str, int, str | None]] = [
            ("litecluster", s.resp[0], s.token), ("redis", s.plain.port, None)
        ]  # fmt: skip
        for system, port, password in targets if lc_first else targets[::-1]:
            with attempt(res, f"redis-benchmark {variant} {system} repeat {rep}", log):
                if system == "litecluster":
                    s.cl.check_alive()
                    s.check_one_replica()
                rows, said, wall = redis_benchmark(port, password, args, timeout=900)
                if not rows:
                    raise RuntimeError(f"redis-benchmark printed no result: {said}")
                res.bench.append(BenchRun(system, variant, rep, rows, wall, said))
                log(f"{variant} {system}: " + ", ".join(f"{r.test} {r.rps:,.0f}/s" for r in rows))


def run_writes(res: Results, s: Systems, p: Preset, rep: int, lc_first: bool) -> None:
    value = b"v" * VALUE_BYTES
    order = ["litecluster", "redis"] if lc_first else ["redis", "litecluster"]
    for system in order:
        with attempt(res, f"durable writes {system} repeat {rep}", log):
            if system == "litecluster":
                s.cl.check_alive()
                s.check_one_replica()
                port, password, wait, pids = s.resp[0], s.token, 0, s.lc_pids()
            else:
                port, password, wait, pids = s.aof[0].port, None, 1, s.aof_pids()
            cpu0 = [0.0, 0.0]

            def go(pids: list[int] = pids, cpu0: list[float] = cpu0) -> None:
                cpu0[:] = [cpu_seconds(pids), time.monotonic()]

            run = durable_load(system, port, password, CLIENTS, p.write_seconds,
                               p.write_warmup_s, value, f"d{rep}", wait, go)  # fmt: skip
            cores = (cpu_seconds(pids) - cpu0[0]) / max(1e-9, time.monotonic() - cpu0[1])
            w = WriteRun(system, rep, run.clients, run.acked, run.errors, run.first_error,
                         run.wall_s, Dist.of(run.latency_ns, 1e6), cores)  # fmt: skip
            res.writes.append(w)
            lat = w.latency
            log(f"durable {system}: {w.tps:,.0f} writes/s, p50 {lat.p50 if lat else 0:.2f} ms, "
                f"{w.errors} errors, server {cores:.2f} cores")  # fmt: skip


def load_keys(s: Systems, p: Preset) -> list[tuple[bytes, bytes]]:
    """The same keys and values in litecluster (through the primary) and the plain redis."""
    import redis

    rows = [(f"key{i:08d}".encode(), (f"{i:08d}" * 13)[:VALUE_BYTES].encode())
            for i in range(p.keys)]  # fmt: skip
    with (
        redis.Redis(port=s.resp[0], password=s.token, socket_timeout=60) as lc,
        s.plain.client() as rd,
    ):
        for i in range(0, len(rows), 500):
            chunk = dict(rows[i : i + 500])
            lc.mset(chunk)
            rd.mset(chunk)
    return rows


def run_reads(res: Results, s: Systems, p: Preset, rep: int, root: Path) -> None:
    import os

    import redis

    rows = load_keys(s, p)
    assert s.cl.primary is not None
    client = litecluster.connect(
        s.cl.primary.http, replica=root / "embedded", primary=s.cl.primary.listen,
        token_file=s.cl.token_file,
    )  # fmt: skip
    rd = s.plain.client()
    on_replica = redis.Redis(port=s.resp[1], password=s.token, socket_timeout=30)
    on_primary = redis.Redis(port=s.resp[0], password=s.token, socket_timeout=30)
    try:
        kv = client.kv
        deadline = time.monotonic() + 60
        while kv.get(rows[-1][0]) != rows[-1][1].decode():  # the embedded replica caught up
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded replica did not catch up with the keys")
            time.sleep(0.02)
        while on_replica.get(rows[-1][0]) != rows[-1][1]:
            if time.monotonic() > deadline:
                raise RuntimeError("the replica node did not catch up with the keys")
            time.sleep(0.02)
        # The floor under kv.get: the same indexed SELECT on a connection of its own.
        conn = sqlite_connect(root / "embedded" / "db" / "kv.db", readonly=True)
        fns: dict[str, Any] = {
            "kv_get": kv.get,
            "raw": lambda k: conn.execute(_RAW_GET, (0, key_hash(k), k)).fetchone()[2],
            "redis": rd.get,
            "resp_replica": on_replica.get,
            "resp_primary": on_primary.get,
        }
        for k, v in rows[:: max(1, len(rows) // 100)]:
            for name, fn in fns.items():
                got = fn(k)
                if (got.encode() if isinstance(got, str) else got) != v:
                    raise AssertionError(f"{name} returned {got!r} for {k!r}, expected {v!r}")
        timed = {name: _timed_lookup(fn) for name, fn in fns.items()}
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        assert s.plain.proc is not None
        if len(cpus) >= 2:
            a, b = {cpus[0]}, {cpus[1]}
            timed["redis_same_cpu"] = _pinned(timed["redis"], s.plain.proc.pid, a, a)
            timed["redis_other_cpu"] = _pinned(timed["redis"], s.plain.proc.pid, a, b)
        groups = (
            (("kv_get", "raw", "redis", "redis_same_cpu", "redis_other_cpu"), p.lookups),
            (("resp_replica", "resp_primary"), p.resp_lookups),
        )
        keys: list[Any] = [k for k, _ in rows]
        ns = sample_reads(timed, keys, groups=groups, blocks=p.blocks, warmup=p.warmup, seed=rep)
        paths = {name: d for name, v in ns.items() if (d := Dist.of(v, 1e3)) is not None}
        res.reads.append(ReadRun(rep, paths, timer_overhead_ns()))
        conn.close()
        log("reads p50/p99 µs: " + ", ".join(f"{k} {d.p50:.2f}/{d.p99:.2f}"
                                             for k, d in paths.items()))  # fmt: skip
    finally:
        on_primary.close()
        on_replica.close()
        rd.close()
        client.close()


def run_repeat(res: Results, p: Preset, work: Path, rep: int) -> None:
    root = work / f"repeat-{rep}"
    lc_first = rep % 2 == 1
    try:
        with attempt(res, f"repeat {rep}", log), RedisServer(root / "redis") as plain:
            plain.start()
            with Cluster(root / "lc", SETUP) as cl, redis_pair(root, AOF_ALWAYS) as aof:
                resp = start_litecluster(cl)
                s = Systems(cl, cl.token_file.read_text(), resp, plain, aof)
                run_bench(res, s, p, rep, lc_first)
                run_writes(res, s, p, rep, lc_first)
                with attempt(res, f"reads repeat {rep}", log):
                    run_reads(res, s, p, rep, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    mode.add_argument("--smoke", action="store_true", help="tiny runs (seconds; for tests)")
    ap.add_argument("--repeats", type=int, help="repeats of every measurement")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temp dir)")
    args = ap.parse_args(argv)

    try:
        check_redis()
        need_redis_benchmark()
    except (RedisMissing, Missing) as exc:
        print(f"python -m bench.kv: {exc}", file=sys.stderr)
        return 2
    on_sigterm()
    fine_timers()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeats:
        preset = replace(preset, repeats=args.repeats)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lckv-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    facts = start_facts(work)
    facts["redis"] = tool_version("redis-server")
    res = Results(
        command=command_line(),
        facts=facts,
        config={
            **preset.__dict__,
            "clients": CLIENTS,
            "value_bytes": VALUE_BYTES,
            "redis_parser": redis_parser(),
        },
        variants=variants(preset),
    )
    log(f"work dir {work}; {res.command}; fdatasync {res.facts[FSYNC_FACT]}")
    try:
        for rep in range(1, preset.repeats + 1):
            run_repeat(res, preset, work, rep)
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

"""Write throughput and latency against concurrency (issues 5 and 7): litecluster K=1, K=2 and
asynchronous against a 3-node dqlite cluster, redis-server (no persistence, AOF everysec, AOF
always with a replica and ``WAIT 1 0``) and plain SQLite (one transaction per write), the same
key/value writes at the same concurrency.

Usage::

    python -m bench.sync [--quick | --smoke] [--repeats N] [--seconds S] [--clients 32,1]
                               [--no-dqlite] [--no-redis] [--no-sqlite]
                               [--out docs/BENCHMARKS.md] [--json FILE]
                               [--workdir DIR]

Each repeat starts each cluster in turn, in an order that rotates per repeat so that machine
noise hits them all, measures its variants at every concurrency level, and kills it (only the
measured system runs beside the load): litecluster in asynchronous mode, with
``--sync-replicas 1`` and with ``--sync-replicas 2`` (3 ``litecluster serve --etcd`` processes
and a real etcd), and dqlite (3 ``dqlite-demo`` processes, Debian ``go-dqlite``), whose demo
answers ``database is locked`` when a write meets another in flight: one dqlite variant sends
such a write again after a millisecond, the other counts it as an error. The peers without a
cluster of nodes run in the same rotation (``bench.sync.peers``): each redis-server setting
started fresh, and plain SQLite written by one thread per client.

The load: ``--clients`` concurrent clients, each with one keep-alive connection, one write at a
time, a warm-up and then the measured seconds. Every write inserts a new key with a 100-byte
value: ``PUT /KEY`` with the value as body on the dqlite leader's API (the demo runs
``INSERT OR REPLACE INTO model(key, value) VALUES(?, ?)``), and ``POST /db/execute`` with the
same statement on the litecluster primary. The load generator writes the HTTP/1.1 bytes itself
(``bench.common.load.RawConn``): on 2 cores its CPU is taken from the nodes.

The section between ``<!-- bench:sync:start -->`` and ``<!-- bench:sync:end -->`` of ``--out``
is rewritten (the rest of the file is kept); ``--json`` writes every phase's figures. Without
``dqlite-demo`` its rows are skipped and the report says why (``apt-get install go-dqlite``).
``--smoke`` takes a few seconds per cluster (for tests).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common.cluster import (
    DB,
    DQLITE_HINT,
    ETCD_HINT,
    DqliteCluster,
    Etcd,
    HaCluster,
    HaSetup,
    Missing,
    attempt,
    logger,
    need,
    on_sigterm,
    tool_versions,
    write_json,
)
from bench.common.load import GroupStats, LoadRun, Retry, check_answer, hist_delta, raw_load
from bench.common.reads import REDIS_HINT
from bench.common.report import FSYNC_FACT, REPO, command_line, finish_run, fsync_fact, start_facts
from bench.sync.peers import REDIS, Sampler, redis_variants, sqlite_variant
from bench.sync.report import DQLITE, VARIANTS, Phase, Preset, Results, write_report

SCHEMA = "CREATE TABLE IF NOT EXISTS model (key TEXT, value TEXT, UNIQUE(key))"
"""dqlite-demo's own table, created the same way on the litecluster primary."""
UPSERT = "INSERT OR REPLACE INTO model(key, value) VALUES(?, ?)"
VALUE_BYTES = 100
LEASE_TTL = 5
RETRY_PAUSE = 0.001
"""dqlite: the pause before a write answered ``database is locked`` is sent again."""
CLUSTERS = ("async", "k1", "k2", "dqlite", "redis", "sqlite")
log = logger("sync")

PRESETS = {
    "full": Preset(repeats=5, seconds=5.0, warmup_s=1.0),
    "quick": Preset(repeats=2, seconds=2.0, warmup_s=0.5),
    "smoke": Preset(repeats=1, seconds=0.3, warmup_s=0.1, clients=(8, 1)),
}


# ---- the load ----------------------------------------------------------------------------------


def _value(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=VALUE_BYTES))


Request = Callable[[str, int, int], tuple[str, str, bytes]]


def _litecluster_request(value: str) -> Request:
    def request(tag: str, i: int, seq: int) -> tuple[str, str, bytes]:
        return "POST", "/db/execute", json.dumps([[UPSERT, f"{tag}-{i}-{seq}", value]]).encode()

    return request


def _litecluster_check(status: int, answer: bytes) -> str:
    try:
        return check_answer(status, json.loads(answer))
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"


def _dqlite_request(value: str) -> Request:
    data = value.encode()

    def request(tag: str, i: int, seq: int) -> tuple[str, str, bytes]:
        return "PUT", f"/{tag}-{i}-{seq}", data

    return request


def _dqlite_check(status: int, answer: bytes) -> str:
    # The demo answers 200 in every case, with "done" or "Error: ...".
    if status == 200 and answer == b"done\n":
        return ""
    return f"HTTP {status}: {answer[:200]!r}"


@dataclass(frozen=True)
class Target:
    """Where and how one variant's writes go."""

    http: str
    request: Callable[[str, int, int], tuple[str, str, bytes]]
    """``request(tag, client, seq)``."""
    check: Callable[[int, bytes], str]
    pids: Callable[[], list[int]]
    retry: Retry | None = None
    status: Callable[[], dict[str, Any]] | None = None
    """litecluster: the primary's ``/status`` (group sizes before and after)."""


def measure(variant: str, repeat: int, clients: int, t: Target, p: Preset) -> Phase:
    """Warm-up writes, then the measured load of ``clients`` clients, on a running cluster."""
    import uvloop

    tag = f"w{repeat}-{variant}-{clients}"

    def warm_request(i: int, seq: int) -> tuple[str, str, bytes]:
        return t.request(f"{tag}-warm", i, seq)

    def request(i: int, seq: int) -> tuple[str, str, bytes]:
        return t.request(tag, i, seq)

    warm = raw_load("warm-up", t.http, clients, p.warmup_s, warm_request, t.check, lambda: None,
                    retry=t.retry)  # fmt: skip
    uvloop.run(warm)
    sampler = Sampler(t.pids)
    marks: dict[str, Any] = {}

    def go() -> None:
        if t.status is not None:
            marks["writers"] = t.status()["writers"].get(DB, {})
        sampler.begin()

    load: LoadRun = uvloop.run(
        raw_load(variant, t.http, clients, p.seconds, request, t.check, go, retry=t.retry)
    )
    node_cores, load_cores, busy = sampler.end()
    groups = None
    if t.status is not None:
        after = t.status()["writers"].get(DB, {})
        groups = GroupStats.of(hist_delta(marks["writers"], after))
    lat = np.percentile(load.latency_ns, (50, 99, 100)) / 1e6 if load.acked else [np.nan] * 3
    return Phase(
        variant=variant, repeat=repeat, clients=clients, seconds=load.wall_s, acked=load.acked,
        errors=load.errors, retries=load.retries, first_error=load.first_error,
        tps=load.acked_tps, latency_ms=(float(lat[0]), float(lat[1]), float(lat[2])),
        node_cores=node_cores, load_cores=load_cores, machine_busy=busy, groups=groups,
    )  # fmt: skip


def _loads(cluster: str, p: Preset, variants: tuple[str, ...]) -> list[tuple[str, int]]:
    """The (variant, clients) measured on ``cluster``, in order."""
    out = []
    for clients in p.clients:
        for v in variants:
            if VARIANTS[v].cluster != cluster:
                continue
            if not VARIANTS[v].retry_locked and v in DQLITE and clients == 1:
                continue  # one client meets no other write: the same as the retrying row
            out.append((v, clients))
    return out


def _measure_all(
    res: Results, cluster: str, rep: int, p: Preset, variants: tuple[str, ...],
    targets: dict[str, Target],
) -> None:  # fmt: skip
    for variant, clients in _loads(cluster, p, variants):
        with attempt(res, f"{variant} {clients} clients repeat {rep}/{p.repeats}", log):
            phase = measure(variant, rep, clients, targets[variant], p)
            res.phases.append(phase)
            log(f"{variant} {clients} clients repeat {rep}/{p.repeats}: {summary(phase)}")
            if phase.errors:
                log(f"  first error: {phase.first_error}")


def litecluster_cluster(
    res: Results, cluster: str, rep: int, p: Preset, root: Path, etcd_url: str, value: str,
    variants: tuple[str, ...],
) -> None:  # fmt: skip
    k = VARIANTS[cluster].sync_replicas or 0
    with HaCluster(root, etcd_url, HaSetup(f"{cluster}-{rep}", LEASE_TTL, k)) as cl:
        primary = cl.start()
        resp = httpx.post(f"http://{primary.http}/db/execute", json=[SCHEMA], timeout=30)
        resp.raise_for_status()
        if "error" in resp.json()["results"][0]:
            raise RuntimeError(f"creating the table failed: {resp.text}")
        target = Target(primary.http, _litecluster_request(value), _litecluster_check, cl.pids,
                        status=primary.status)  # fmt: skip
        _measure_all(res, cluster, rep, p, variants, {cluster: target})
        cl.check_alive()


def dqlite_cluster(
    res: Results, rep: int, p: Preset, root: Path, value: str, variants: tuple[str, ...]
) -> None:
    with DqliteCluster(root) as dq:
        dq.start()
        api = dq.leader().api
        request = _dqlite_request(value)

        def retry(err: str, _seq: int) -> float | None:
            return RETRY_PAUSE if "database is locked" in err else None

        def retry_warmup(err: str, seq: int) -> float | None:
            return retry(err, seq) if seq < 0 else None  # else the client would drop out

        targets = {
            "dqlite": Target(api, request, _dqlite_check, dq.pids, retry=retry),
            "dqlite_errors": Target(api, request, _dqlite_check, dq.pids, retry=retry_warmup),
        }
        _measure_all(res, "dqlite", rep, p, variants, targets)


def run(p: Preset, work: Path, res: Results, variants: tuple[str, ...]) -> None:
    """``p.repeats`` repeats of every cluster, the order rotating per repeat."""
    value = _value(1)
    clusters = [c for c in CLUSTERS if any(VARIANTS[v].cluster == c for v in variants)]
    with Etcd(work / "etcd") as etcd:
        for rep in range(1, p.repeats + 1):
            shift = (rep - 1) % len(clusters)
            for cluster in clusters[shift:] + clusters[:shift]:
                root = work / f"{cluster}-{rep}"
                with attempt(res, f"{cluster} cluster, repeat {rep}/{p.repeats}", log):
                    try:
                        if cluster == "dqlite":
                            dqlite_cluster(res, rep, p, root, value, variants)
                        elif cluster == "redis":
                            redis_variants(res, rep, p, root, variants, value.encode(), summary,
                                           log)  # fmt: skip
                        elif cluster == "sqlite":
                            sqlite_variant(res, rep, p, root, value, summary, log)
                        else:
                            litecluster_cluster(res, cluster, rep, p, root, etcd.url, value,
                                                variants)  # fmt: skip
                    finally:
                        shutil.rmtree(root, ignore_errors=True)


def summary(ph: Phase) -> str:
    g = "" if ph.groups is None else f", group mean {ph.groups.mean:.1f}"
    nodes = "" if ph.node_cores is None else f", nodes {ph.node_cores:.2f} cores"
    return (
        f"{ph.tps:,.0f} writes/s, p50 {ph.latency_ms[0]:.1f} ms, p99 {ph.latency_ms[1]:.1f} ms, "
        f"{ph.errors} errors{nodes}, load {ph.load_cores:.2f} cores{g}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 repeats of 2 s (about a minute)")
    mode.add_argument("--smoke", action="store_true", help="tiny phases (seconds; for tests)")
    ap.add_argument("--repeats", type=int, help="repeats of every variant")
    ap.add_argument("--seconds", type=float, help="measured seconds of each phase")
    ap.add_argument("--clients", help="concurrency levels, comma separated (default 32,1)")
    ap.add_argument("--no-dqlite", action="store_true", help="skip the dqlite peer")
    ap.add_argument("--no-redis", action="store_true", help="skip the redis-server peers")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the plain SQLite peer")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="write every phase's figures to this file")
    ap.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temp dir)")
    args = ap.parse_args(argv)
    try:
        need("etcd", ETCD_HINT)
    except Missing as exc:
        print(f"python -m bench.sync: {exc}", file=sys.stderr)
        return 2
    on_sigterm()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    for name in ("repeats", "seconds"):
        if getattr(args, name):
            preset = replace(preset, **{name: getattr(args, name)})
    if args.clients:
        preset = replace(preset, clients=tuple(int(x) for x in args.clients.split(",")))
    skipped = {}
    if args.no_dqlite:
        skipped["dqlite"] = "not measured (--no-dqlite)"
    elif shutil.which("dqlite-demo") is None:
        skipped["dqlite"] = f"not measured: dqlite-demo not found on PATH ({DQLITE_HINT})"
    if args.no_redis:
        skipped["redis"] = "not measured (--no-redis)"
    elif shutil.which("redis-server") is None:
        skipped["redis"] = f"not measured: redis-server not found on PATH ({REDIS_HINT})"
    if args.no_sqlite:
        skipped["sqlite"] = "not measured (--no-sqlite)"
    variants = tuple(v for v in VARIANTS if VARIANTS[v].cluster not in skipped)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcsync-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(
        command=command_line(),
        facts={**start_facts(work), **tool_versions("etcd", "dqlite")},
        config={
            "repeats": preset.repeats,
            "seconds": preset.seconds,
            "warmup_s": preset.warmup_s,
            "clients": list(preset.clients),
            "retry_pause_s": RETRY_PAUSE,
            "value_bytes": VALUE_BYTES,
            "lease_ttl": LEASE_TTL,
            "variants": list(variants),
            "redis": {
                v: {"args": list(REDIS[v].args), "wait": REDIS[v].wait, "replica": REDIS[v].replica}
                for v in variants
                if v in REDIS
            },
        },
        skipped=skipped,
    )
    log(f"work dir {work}; {res.command}")
    for peer, why in skipped.items():
        log(f"{peer} {why}")
    try:
        run(preset, work, res, variants)
        res.facts[FSYNC_FACT] += "; " + fsync_fact(work, "end")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    finish_run(res, t_start, write_report, args.out, log)
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

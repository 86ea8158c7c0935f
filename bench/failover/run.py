"""Failover benchmark (issues 5 and 7): kill -9 of the primary to the first acknowledged write,
for litecluster and for dqlite's cluster under the same kill.

Usage::

    python -m bench.failover [--quick | --smoke] [--runs N] [--ttl 2,5] [--sync-replicas K]
                             [--dqlite-runs N | --no-dqlite]
                             [--out docs/BENCHMARKS.md] [--json FILE] [--workdir DIR]

For each lease TTL, a real etcd (``etcd-server``) and 3 ``litecluster serve --etcd`` processes
on 127.0.0.1 (asynchronous mode unless ``--sync-replicas``). Each of the ``--runs`` runs:

1. waits until the cluster is settled (one primary, both replicas streaming from it and caught
   up), then writes to the primary with a few clients for about a second (plus a random part
   of a renewal round, so that the kill falls anywhere in the primary's lease cycle);
2. ``kill -9`` the primary's process group, and from that instant sends writes to both
   survivors (one client each, back to back, 10 ms pause after a refusal) until one is
   acknowledged by a node other than the killed one (``position.node`` of the answer): the
   failover time is from the kill to that answer;
3. restarts the killed node (it rejoins as a replica) and counts the writes acknowledged before
   the kill that the new primary lacks (asynchronous mode: what the old primary had not sent).

Its components come from an etcd watch on the leader key (*detection*: kill to the key's
deletion when the dead primary's lease expired; *election*: deletion to the new key) and the
new primary's log (*promotion*: new key to ``node.role role=primary``; *first write*: that line
to the acknowledged write). The section between ``<!-- bench:failover:start -->`` and
``<!-- bench:failover:end -->`` of ``--out`` is rewritten (the rest of the file is kept);
``--json`` writes every run's figures. ``--smoke`` runs one failover at TTL 2 s (for tests).
Then the same kill for a 3-node ``dqlite-demo`` cluster, ``--dqlite-runs`` times (default: as
many as ``--runs``; see ``bench.failover.dqlite``); without ``dqlite-demo`` the report says why.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from bench.common.cluster import (
    DQLITE_HINT,
    ETCD_HINT,
    Etcd,
    HaCluster,
    HaSetup,
    Missing,
    attempt,
    log_events,
    logger,
    need,
    on_sigterm,
    tool_versions,
    write_json,
)
from bench.common.load import RAW_ERRORS, RawConn
from bench.common.report import FSYNC_FACT, REPO, command_line, finish_run, fsync_fact, start_facts
from bench.failover.dqlite import run_dqlite
from bench.failover.report import FailoverRun, Results, write_report

SCHEMA = "CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY)"
INSERT = "INSERT INTO t(k) VALUES(?)"
RETRY_PAUSE = 0.01
log = logger("failover")


@dataclass(frozen=True)
class Preset:
    runs: int
    ttls: tuple[int, ...]
    load_seconds: float
    """Writes to the primary before each kill (plus a random part of a renewal round)."""
    load_clients: int = 4
    sync_replicas: int = 0


PRESETS = {
    "full": Preset(runs=20, ttls=(2, 5), load_seconds=1.0),
    "quick": Preset(runs=4, ttls=(2, 5), load_seconds=0.5),
    "smoke": Preset(runs=1, ttls=(2,), load_seconds=0.2),
}


# ---- the etcd watch ----------------------------------------------------------------------------


class LeaderWatch(threading.Thread):
    """Every change of the cluster's leader key, with the Unix time this process got it
    (etcd's JSON gateway streams a watch as one JSON object per line)."""

    def __init__(self, etcd_url: str, cluster: str) -> None:
        super().__init__(daemon=True, name="leader-watch")
        self.url = etcd_url
        self.key = base64.b64encode(f"/litecluster/{cluster}/leader".encode()).decode()
        self.events: list[tuple[float, str, str]] = []
        """(time, "PUT" or "DELETE", node id of the new leader or "")."""
        self.ready = threading.Event()
        self.error = ""

    def run(self) -> None:
        body = {"create_request": {"key": self.key}}
        try:
            with httpx.stream("POST", f"{self.url}/v3/watch", json=body, timeout=None) as resp:
                for line in resp.iter_lines():
                    now = time.time()
                    result = json.loads(line).get("result", {})
                    if result.get("created"):
                        self.ready.set()
                    for ev in result.get("events", []):
                        kind = ev.get("type", "PUT")
                        value = base64.b64decode(ev.get("kv", {}).get("value", ""))
                        who = json.loads(value).get("node_id", "") if value else ""
                        self.events.append((now, kind, who))
        except Exception as exc:  # etcd stopped at the end, or the watch broke: logged once
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()

    def after(self, t: float, kind: str) -> tuple[float, str] | None:
        return next(((at, who) for at, kind_, who in self.events if at >= t and kind_ == kind),
                    None)  # fmt: skip


# ---- one failover ------------------------------------------------------------------------------


@dataclass
class Probe:
    kill_wall: float = 0.0
    kill_mono: float = 0.0
    ack_wall: float = 0.0
    ack_mono: float = 0.0
    acked_node: str = ""
    via: str = ""
    refused: int = 0
    acked_before: list[str] = field(default_factory=list)


def _acked_by(status: int, answer: bytes) -> str:
    """The node that acknowledged a write ('' when it was not acknowledged)."""
    if status != 200:
        return ""
    try:
        data = json.loads(answer)
        if "error" in data["results"][0]:
            return ""
        return str(data.get("position", {}).get("node", "?"))
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _write(key: str) -> bytes:
    return json.dumps([[INSERT, key]]).encode()


async def _probe(
    cl: HaCluster, primary_id: str, tag: str, load_s: float, clients: int, timeout: float
) -> Probe:
    primary = cl.node(primary_id)
    survivors = [n for n in cl.nodes if n.node_id != primary_id]
    p = Probe()
    killed = asyncio.Event()

    async def before(i: int) -> None:
        conn, seq = RawConn(primary.http, timeout=2.0), 0
        try:
            while not killed.is_set():
                key = f"{tag}-b{i}-{seq}"
                seq += 1
                try:
                    status, answer = await conn.request("POST", "/db/execute", _write(key))
                except RAW_ERRORS:
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                if _acked_by(status, answer) == primary_id:
                    p.acked_before.append(key)
        finally:
            conn.close()

    done = asyncio.Event()

    async def after(j: int) -> None:
        node = survivors[j]
        conn, seq = RawConn(node.http, timeout=2.0), 0
        try:
            while not done.is_set():
                seq += 1
                try:
                    status, answer = await conn.request(
                        "POST", "/db/execute", _write(f"{tag}-a{j}-{seq}")
                    )
                except RAW_ERRORS:
                    status, answer = 0, b""
                now_mono, now_wall = time.monotonic(), time.time()
                by = _acked_by(status, answer)
                if by and by != primary_id:
                    if not done.is_set():
                        p.ack_mono, p.ack_wall, p.acked_node, p.via = (
                            now_mono, now_wall, by, node.node_id
                        )  # fmt: skip
                        done.set()
                    return
                p.refused += 1
                await asyncio.sleep(RETRY_PAUSE)
        finally:
            conn.close()

    writers = [asyncio.create_task(before(i)) for i in range(clients)]
    await asyncio.sleep(load_s)
    p.kill_wall, p.kill_mono = time.time(), time.monotonic()
    primary.signal(signal.SIGKILL)
    killed.set()
    probes = [asyncio.create_task(after(j)) for j in range(len(survivors))]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    done.set()
    await asyncio.gather(*writers, *probes)
    return p


def _missing(node_http: str, keys: list[str]) -> int:
    """How many of ``keys`` the node's database lacks (a local read on that node)."""
    if not keys:
        return 0
    resp = httpx.get(f"http://{node_http}/db/query", params={"q": "SELECT k FROM t", "level": "none"},
                     timeout=30)  # fmt: skip
    resp.raise_for_status()
    have = {row[0] for row in resp.json()["results"][0].get("values", [])}
    return sum(1 for k in keys if k not in have)


def one_failover(
    cl: HaCluster, watch: LeaderWatch, ttl: int, run: int, p: Preset, rng: random.Random
) -> FailoverRun:
    primary = cl.wait_settled(60.0)
    load_s = p.load_seconds + rng.uniform(0.0, ttl / 3)
    import uvloop

    probe: Probe = uvloop.run(
        _probe(cl, primary.node_id, f"r{ttl}-{run}", load_s, p.load_clients, 10.0 * ttl + 30.0)
    )
    primary.kill()  # reap it (it is dead already)
    new = probe.acked_node
    total = probe.ack_mono - probe.kill_mono if new else None
    deleted = watch.after(probe.kill_wall, "DELETE")
    created = watch.after(deleted[0], "PUT") if deleted else None
    promoted: float | None = None
    if new and new in {n.node_id for n in cl.nodes}:
        lines = log_events(cl.node(new).log_text, "node.role")
        promoted = next(
            (t for t, line in lines if t >= probe.kill_wall - 0.001 and "role=primary" in line),
            None,
        )
        if created is None:  # no watch: the new primary's own log says when it won
            won = log_events(cl.node(new).log_text, "leadership.acquired")
            created = next(((t, new) for t, _ in won if t >= probe.kill_wall), None)

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    ack_wall = probe.ack_wall if new else None
    primary.start(wait=True, timeout=60.0)  # the killed node rejoins as a replica
    lost = None
    if new:
        settled = cl.wait_settled(60.0 + 3 * ttl)
        lost = _missing(settled.http, probe.acked_before)
    return FailoverRun(
        ttl=ttl,
        run=run,
        killed=primary.node_id,
        new_primary=new,
        total_s=total,
        detection_s=span(probe.kill_wall, deleted[0] if deleted else None),
        election_s=span(deleted[0] if deleted else None, created[0] if created else None),
        promotion_s=span(created[0] if created else None, promoted),
        first_write_s=span(promoted, ack_wall),
        via=probe.via,
        refused=probe.refused,
        acked_before=len(probe.acked_before),
        lost=lost,
    )


def run_ttl(res: Results, p: Preset, work: Path, ttl: int, rng: random.Random) -> None:
    root = work / f"ttl{ttl}"
    try:
        with (
            Etcd(root) as etcd,
            HaCluster(root, etcd.url, HaSetup(f"fo{ttl}", ttl, p.sync_replicas)) as cl,
        ):
            watch = LeaderWatch(etcd.url, f"fo{ttl}")
            watch.start()
            watch.ready.wait(10)
            first = cl.start()
            resp = httpx.post(f"http://{first.http}/db/execute", json=[SCHEMA], timeout=30)
            resp.raise_for_status()
            log(f"TTL {ttl} s: etcd and 3 nodes up, {first.node_id} primary")
            for run in range(1, p.runs + 1):
                with attempt(res, f"TTL {ttl} s run {run}", log):
                    r = one_failover(cl, watch, ttl, run, p, rng)
                    res.runs.append(r)
                    log(f"TTL {ttl} s run {run}/{p.runs}: {summary(r)}")
            if watch.error and "etcd" not in watch.error:
                log(f"the leader watch ended: {watch.error}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def summary(r: FailoverRun) -> str:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    return (
        f"{r.killed} killed, {r.new_primary or 'nobody'} acknowledged after {f(r.total_s)} s "
        f"(detection {f(r.detection_s)}, election {f(r.election_s)}, promotion "
        f"{f(r.promotion_s)}, first write {f(r.first_write_s)}); {r.refused} refused, "
        f"{r.lost} of {r.acked_before} acknowledged writes lost"
    )


def run(p: Preset, work: Path, res: Results, dqlite_runs: int, seed: int = 1) -> None:
    """Every TTL of the preset, in order, then dqlite (``res`` collects the runs and the
    failures)."""
    rng = random.Random(seed)
    for ttl in p.ttls:
        with attempt(res, f"TTL {ttl} s", log):
            run_ttl(res, p, work, ttl, rng)
    if dqlite_runs:
        run_dqlite(res, work / "dqlite", dqlite_runs, p.load_seconds, p.load_clients, rng, log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="4 runs per TTL (about a minute)")
    mode.add_argument("--smoke", action="store_true", help="one run at TTL 2 s (for tests)")
    ap.add_argument("--runs", type=int, help="failovers per TTL")
    ap.add_argument("--ttl", help="lease TTLs in seconds, comma separated (default 2,5)")
    ap.add_argument("--sync-replicas", type=int, default=0, help="K (default 0: asynchronous)")
    ap.add_argument("--dqlite-runs", type=int, help="failovers of dqlite (default: --runs)")
    ap.add_argument("--no-dqlite", action="store_true", help="skip the dqlite peer")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="write every run's figures to this file")
    ap.add_argument("--workdir", type=Path, help="scratch directory, kept (default: a temp dir)")
    args = ap.parse_args(argv)
    try:
        need("etcd", ETCD_HINT)
    except Missing as exc:
        print(f"python -m bench.failover: {exc}", file=sys.stderr)
        return 2
    on_sigterm()
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.runs:
        preset = replace(preset, runs=args.runs)
    if args.sync_replicas:
        preset = replace(preset, sync_replicas=args.sync_replicas)
    if args.ttl:
        preset = replace(preset, ttls=tuple(int(x) for x in args.ttl.split(",")))
    dqlite_runs = preset.runs if args.dqlite_runs is None else args.dqlite_runs
    skipped = {}
    if args.no_dqlite or dqlite_runs == 0:
        skipped["dqlite"] = "not measured (--no-dqlite)"
    elif shutil.which("dqlite-demo") is None:
        skipped["dqlite"] = f"not measured: dqlite-demo not found on PATH ({DQLITE_HINT})"
    if skipped:
        dqlite_runs = 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lcfailover-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = Results(
        command=command_line(),
        facts={**start_facts(work), **tool_versions("etcd", "dqlite")},
        config={
            "runs": preset.runs,
            "ttls": list(preset.ttls),
            "load_seconds": preset.load_seconds,
            "load_clients": preset.load_clients,
            "sync_replicas": preset.sync_replicas,
            "retry_pause_s": RETRY_PAUSE,
            "dqlite_runs": dqlite_runs,
        },
        skipped=skipped,
    )
    log(f"work dir {work}; {res.command}")
    try:
        run(preset, work, res, dqlite_runs)
        res.facts[FSYNC_FACT] += "; " + fsync_fact(work, "end")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    finish_run(res, t_start, write_report, args.out, log)
    if args.json:
        write_json(args.json, res)
    for ttl in preset.ttls:
        totals = [r.total_s for r in res.runs if r.ttl == ttl and r.total_s is not None]
        if totals:
            log(f"TTL {ttl} s: p50 {statistics.median(totals):.2f} s, max {max(totals):.2f} s "
                f"over {len(totals)} runs")  # fmt: skip
    dq = [r.total_s for r in res.dqlite_runs if r.total_s is not None]
    if dq:
        log(f"dqlite: p50 {statistics.median(dq):.2f} s, max {max(dq):.2f} s over {len(dq)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

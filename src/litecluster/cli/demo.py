"""``litecluster demo``: a 3-node cluster on this machine doing real work.

It starts real ``litecluster serve`` processes on 127.0.0.1 (one primary, two replicas by
default) in a temporary directory. A writer thread runs an application-shaped workload
(sessions with expiry, feature flags, configuration rows) on the primary's database file, as
an application on the primary's host may. Progress shows throughput and each replica's lag as
the primary reports it. Midway one replica is killed with SIGKILL and restarted, to show it
catching up from the primary's transaction log. At the end every replica file is compared with
the primary's (checksums of the files themselves), then the cluster is stopped and removed, or
left running with ``--keep``.
"""

from __future__ import annotations

import random
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litecluster.cli.localcluster import LocalNode, wait_until
from litecluster.engine.checksum import format_checksum
from litecluster.engine.sqlite import Connection, connect
from litecluster.engine.verify import database_checksum
from litecluster.errors import LiteclusterError

Echo = Callable[[str], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, data BLOB NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS feature_flags(
    name TEXT PRIMARY KEY, enabled INTEGER NOT NULL, rollout_pct INTEGER NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS config(key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class DemoConfig:
    seconds: float = 10.0
    replicas: int = 2
    directory: Path | None = None
    keep: bool = False
    seed: int = 1


@dataclass
class DemoResult:
    transactions: int = 0
    seconds: float = 0.0
    records: int = 0
    caught_up: int = 0
    catch_up_ms: float = 0.0
    read_us_p50: float = 0.0
    lag_ms_samples: list[float] = field(default_factory=list)
    verified: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.verified) and all(ok for _, ok, _ in self.verified)


class _Workload:
    """Application-shaped writes: log-ins create sessions, requests refresh them, some expire."""

    def __init__(self, conn: Connection, seed: int) -> None:
        self.conn = conn
        self.rng = random.Random(seed)
        self.sessions: list[str] = []
        self.count = 0

    def setup(self) -> None:
        self.conn.executescript(SCHEMA)
        now = time.time()
        self.conn.execute("BEGIN")
        for i in range(40):
            self.conn.execute(
                "INSERT OR REPLACE INTO feature_flags VALUES (?, ?, ?, ?)",
                (f"flag-{i}", i % 2, 10 * (i % 11), now),
            )
        for i in range(100):
            self.conn.execute(
                "INSERT OR REPLACE INTO config VALUES (?, ?, ?)",
                (f"service.setting.{i}", str(i), now),
            )
        self.conn.execute("COMMIT")

    def step(self) -> None:
        r = self.rng.random()
        now = time.time()
        c = self.conn
        c.execute("BEGIN")
        if r < 0.55 or not self.sessions:
            sid = f"s{self.rng.getrandbits(48):012x}"
            c.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)",
                (
                    sid,
                    self.rng.randrange(10_000),
                    self.rng.randbytes(self.rng.randrange(64, 400)),
                    now + 30,
                ),
            )
            self.sessions.append(sid)
        elif r < 0.85:
            sid = self.rng.choice(self.sessions)
            c.execute("UPDATE sessions SET expires_at = ? WHERE id = ?", (now + 30, sid))
        elif r < 0.95:
            c.execute(
                "UPDATE feature_flags SET enabled = 1 - enabled, rollout_pct = ?, updated_at = ? WHERE name = ?",
                (self.rng.randrange(101), now, f"flag-{self.rng.randrange(40)}"),
            )
        else:
            c.execute(
                "UPDATE config SET value = ?, updated_at = ? WHERE key = ?",
                (str(self.rng.random()), now, f"service.setting.{self.rng.randrange(100)}"),
            )
            if len(self.sessions) > 2000:  # expire the oldest sessions, as a sweeper would
                old, self.sessions = self.sessions[:500], self.sessions[500:]
                c.executemany("DELETE FROM sessions WHERE id = ?", [(s,) for s in old])
        c.execute("COMMIT")
        self.count += 1


def _read_latency_us(path: Path, rounds: int = 2000) -> float:
    """Median time of a point lookup on a replica file, from a reader connection."""
    conn = connect(path)
    try:
        times = []
        for i in range(rounds):
            t0 = time.perf_counter_ns()
            conn.execute(
                "SELECT value FROM config WHERE key = ?", (f"service.setting.{i % 100}",)
            ).fetchall()
            times.append((time.perf_counter_ns() - t0) / 1000)
        return statistics.median(times)
    finally:
        conn.close()


class _Cluster:
    """The demo's node processes, and what the primary says about them."""

    def __init__(self, root: Path, replicas: int) -> None:
        token = root / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.primary = LocalNode(root / "n1", "n1", token, log_path=root / "n1.log")
        self.primary.start()
        self.replicas = [
            LocalNode(
                root / f"n{i + 2}",
                f"n{i + 2}",
                token,
                primary=self.primary.listen,
                log_path=root / f"n{i + 2}.log",
            )
            for i in range(replicas)
        ]
        for r in self.replicas:
            r.start(wait=False)
        for r in self.replicas:
            r.wait_ready()

    @property
    def nodes(self) -> list[LocalNode]:
        return [self.primary, *self.replicas]

    def view(self) -> tuple[int, str, dict[str, dict[str, Any]]]:
        """The primary's head txid and checksum, and each replica's row of its status."""
        st = self.primary.status()
        main = st["databases"]["main"]
        reps = {
            r["node_id"]: {**r["databases"].get("main", {}), "state": r["state"]}
            for r in st["replicas"]
        }
        return main["txid"], main["checksum"], reps

    def converged(self, expected: int) -> bool:
        """The primary captured its file up to ``expected`` (its checksum once writes stopped)
        and every replica applied all of it."""
        head, checksum, reps = self.view()
        return int(checksum, 16) == expected and all(
            reps.get(r.node_id, {}).get("txid") == head
            and reps[r.node_id].get("checksum") == checksum
            for r in self.replicas
        )

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def run_demo(cfg: DemoConfig, echo: Echo = print) -> DemoResult:
    root = cfg.directory or Path(tempfile.mkdtemp(prefix="litecluster-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    echo(f"litecluster demo: 1 primary + {cfg.replicas} replicas (node processes) in {root}")
    cluster = _Cluster(root, cfg.replicas)
    keep_running = False
    try:
        for n in cluster.nodes:
            role = "primary" if n is cluster.primary else "replica"
            echo(
                f"  {n.node_id} {role:<7} replication {n.listen}  http {n.http}  pid {n.proc.pid if n.proc else '-'}"
            )
        _run(cfg, cluster, result, echo)
        keep_running = cfg.keep
    finally:
        if keep_running:
            echo("")
            echo("  the cluster keeps running:")
            echo(
                f"    litecluster status --token-file {cluster.primary.token_file} "
                f"--http {cluster.primary.http}"
            )
            echo(f"    read a replica: sqlite3 {cluster.replicas[0].data_dir / 'db' / 'main.db'}")
            echo(f"    write on the primary: sqlite3 {cluster.primary.data_dir / 'db' / 'main.db'}")
            pids = " ".join(str(n.proc.pid) for n in cluster.nodes if n.proc)
            echo(f"    stop it: kill {pids}; rm -r {root}")
        else:
            cluster.stop()
            if cfg.directory is None:
                shutil.rmtree(root, ignore_errors=True)
    return result


def _run(cfg: DemoConfig, cluster: _Cluster, result: DemoResult, echo: Echo) -> None:
    primary_db = cluster.primary.data_dir / "db" / "main.db"
    conn = connect(primary_db)
    conn.execute("PRAGMA synchronous=NORMAL")
    work = _Workload(conn, cfg.seed)
    work.setup()
    stop = threading.Event()
    errors: list[BaseException] = []

    def write_loop() -> None:
        try:
            while not stop.is_set():
                work.step()
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer_thread = threading.Thread(target=write_loop, name="demo-writer", daemon=True)
    t0 = time.monotonic()
    writer_thread.start()
    victim = cluster.replicas[-1] if len(cluster.replicas) >= 2 else None
    killed_at: float | None = None
    restarted_at: float | None = None
    behind_at_restart = 0
    last_count, last_t = 0, t0
    try:
        while (elapsed := time.monotonic() - t0) < cfg.seconds:
            time.sleep(min(1.0, max(0.05, cfg.seconds - elapsed)))
            if errors:
                raise errors[0]
            now = time.monotonic()
            head, _, reps = cluster.view()
            parts = []
            for r in cluster.replicas:
                row = reps.get(r.node_id, {})
                if r is victim and killed_at is not None and restarted_at is None:
                    parts.append(f"{r.node_id} killed")
                    continue
                lag_ms = float(row.get("lag_ms", 0.0))
                result.lag_ms_samples.append(lag_ms)
                parts.append(
                    f"{r.node_id} lag {row.get('lag_records', '?'):>5} tx {lag_ms:>6.1f} ms"
                )
            rate = (work.count - last_count) / max(now - last_t, 1e-9)
            last_count, last_t = work.count, now
            echo(
                f"  t={now - t0:5.1f}s  {rate:>7,.0f} tx/s  primary txid {head:>7}  "
                + "  ".join(parts)
            )
            if victim is not None and killed_at is None and now - t0 >= cfg.seconds / 3:
                victim.kill()
                killed_at = now
                echo(f"  >> kill -9 {victim.node_id} (writes continue)")
            elif (
                victim is not None
                and killed_at is not None
                and restarted_at is None
                and now - killed_at >= cfg.seconds / 4
            ):
                behind_at_restart = head - int(reps.get(victim.node_id, {}).get("txid", 0))
                victim.start()
                restarted_at = time.monotonic()
                echo(f"  >> restarted {victim.node_id}, {behind_at_restart} records behind")
    finally:
        stop.set()
        writer_thread.join()
    result.seconds = time.monotonic() - t0
    result.transactions = work.count
    conn.close()
    if errors:
        raise errors[0]
    primary_sum = database_checksum(str(primary_db)).checksum
    if not wait_until(lambda: cluster.converged(primary_sum), 30.0):
        raise LiteclusterError(
            "replicas did not catch up within 30 s", hint="see the node logs in the demo directory"
        )
    if victim is not None and restarted_at is not None:
        result.caught_up = behind_at_restart
        result.catch_up_ms = (time.monotonic() - restarted_at) * 1000
        stats = victim.status()["stats"]
        echo(
            f"  >> {victim.node_id} caught up from the log: {stats['records_applied']:,} records applied since its restart, {stats['snapshots_installed']} snapshots"
        )
    head, checksum, _ = cluster.view()
    result.records = head
    result.read_us_p50 = _read_latency_us(cluster.replicas[0].data_dir / "db" / "main.db")
    for r in cluster.replicas:
        s = database_checksum(str(r.data_dir / "db" / "main.db")).checksum
        ok = s == primary_sum and format_checksum(s) == format_checksum(int(checksum, 16))
        result.verified.append((r.node_id, ok, f"txid {head}, checksum {format_checksum(s)}"))
    echo("")
    echo(
        f"  wrote {result.transactions:,} transactions in {result.seconds:.1f}s ({result.transactions / result.seconds:,.0f} tx/s)"
    )
    if result.lag_ms_samples:
        echo(
            f"  replica lag while writing: median {statistics.median(result.lag_ms_samples):.1f} ms, max {max(result.lag_ms_samples):.1f} ms (sampled once a second)"
        )
    echo(f"  point read on a replica file: {result.read_us_p50:.1f} us (median)")
    echo(
        f"  primary {cluster.primary.node_id}: txid {head}, checksum {format_checksum(primary_sum)}"
    )
    for name, ok, detail in result.verified:
        echo(f"  {name}: {'identical to the primary' if ok else 'MISMATCH'} ({detail})")

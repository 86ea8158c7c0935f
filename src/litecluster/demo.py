"""``litecluster demo``: a primary and replicas on this machine doing real work.

Until the node daemon exists, the demo runs the replication engine in one process: a writer
thread runs an application-shaped workload (sessions with expiry, feature flags, configuration
rows) on the primary, capture turns commits into a durable transaction log, and replicas follow
the log. Midway it stops one replica, keeps writing, and restarts it to show catch-up from the
log; at the end it checks that every replica file is identical to the primary's.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .apply import Replica, ReplicaConfig
from .capture import Capture, CaptureConfig
from .checksum import format_checksum
from .errors import LiteclusterError
from .follow import LocalFollower
from .snapshot import create_snapshot, install_snapshot
from .sqlite import Connection, connect
from .txlog import TxLog, TxlogConfig
from .verify import verify_replica

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
    checkpoints: int = 0
    caught_up: int = 0
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


def _lag_ms(log: TxLog, applied: int, head: int) -> float:
    """Age of the oldest record a replica has not applied yet (0 when it is current)."""
    if applied >= head:
        return 0.0
    try:
        return max(0.0, (time.time_ns() - log.get(applied + 1).timestamp_ns) / 1e6)
    except LiteclusterError:
        return float("nan")


def run_demo(cfg: DemoConfig, echo: Echo = print) -> DemoResult:
    root = cfg.directory or Path(tempfile.mkdtemp(prefix="litecluster-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    echo(f"litecluster demo: primary + {cfg.replicas} replicas in {root}")
    log = TxLog(root / "primary.txlog", TxlogConfig())
    capture = Capture(root / "primary.db", log, CaptureConfig())
    writer = capture.connect_writer()
    work = _Workload(writer, cfg.seed)
    work.setup()
    capture.poll()
    echo(f"  primary ready at position {capture.position}")

    replicas: list[Replica] = []
    followers: list[LocalFollower] = []
    snap = root / "bootstrap.snap"
    for i in range(cfg.replicas):
        header = create_snapshot(capture, snap)
        rep = Replica(root / f"replica-{i + 1}.db", ReplicaConfig())
        install_snapshot(rep, snap)
        echo(
            f"  replica-{i + 1}: installed snapshot at txid {header.position.txid} ({header.size_bytes / 1024:.0f} KiB)"
        )
        replicas.append(rep)
        followers.append(LocalFollower(rep, log))
    snap.unlink(missing_ok=True)
    capture.start()
    for f in followers:
        f.start()

    stop = threading.Event()

    def write_loop() -> None:
        while not stop.is_set():
            with capture.writer_lock:
                work.step()
            capture.notify()

    writer_thread = threading.Thread(target=write_loop, name="demo-writer", daemon=True)
    t0 = time.monotonic()
    writer_thread.start()
    restarted = cfg.replicas < 2
    stopped_at: float | None = None
    last_count, last_t = 0, t0
    try:
        while (elapsed := time.monotonic() - t0) < cfg.seconds:
            time.sleep(min(1.0, max(0.05, cfg.seconds - elapsed)))
            now = time.monotonic()
            head = log.durable_txid
            parts = []
            for i, rep in enumerate(replicas):
                if i == len(replicas) - 1 and stopped_at is not None and not restarted:
                    parts.append(f"replica-{i + 1} stopped          ")
                    continue
                behind = max(0, head - rep.position.txid)
                lag_ms = _lag_ms(log, rep.position.txid, head)
                result.lag_ms_samples.append(lag_ms)
                parts.append(f"replica-{i + 1} lag {behind:>4} tx {lag_ms:>6.1f} ms")
            rate = (work.count - last_count) / max(now - last_t, 1e-9)
            last_count, last_t = work.count, now
            lag_txt = "  ".join(parts)
            echo(f"  t={now - t0:5.1f}s  {rate:>7,.0f} tx/s  log txid {head:>7}  {lag_txt}")
            if capture.error or any(f.error for f in followers):
                raise LiteclusterError(
                    f"replication stopped: {capture.error or next(f.error for f in followers if f.error)}"
                )
            if not restarted and stopped_at is None and now - t0 >= cfg.seconds / 3:
                followers[-1].stop()
                replicas[-1].close()
                stopped_at = now
                echo(f"  >> stopped replica-{len(replicas)} (writes continue)")
            elif not restarted and stopped_at is not None and now - stopped_at >= cfg.seconds / 4:
                rep = Replica(root / f"replica-{len(replicas)}.db", ReplicaConfig())
                behind = log.durable_txid - rep.position.txid
                fol = LocalFollower(rep, log)
                t_catch = time.monotonic()
                result.caught_up = fol.catch_up()
                dt = time.monotonic() - t_catch
                echo(
                    f"  >> restarted replica-{len(replicas)}: it was {behind} records behind, "
                    f"applied {result.caught_up} from the log in {dt * 1000:.0f} ms"
                )
                replicas[-1], followers[-1] = rep, fol
                fol.start()
                restarted = True
    finally:
        stop.set()
        writer_thread.join()
    result.seconds = time.monotonic() - t0
    result.transactions = work.count
    capture.stop()
    capture.poll()
    for f in followers:
        f.stop()
        f.catch_up()
    result.records = log.last_txid
    result.checkpoints = capture.checkpoints
    result.read_us_p50 = _read_latency_us(replicas[0].db_path)
    for i, rep in enumerate(replicas):
        rep.checkpoint()
        v = verify_replica(root / "primary.db", rep.db_path)
        ok = v.equal and rep.position == capture.position
        result.verified.append(
            (
                f"replica-{i + 1}",
                ok,
                f"txid {rep.position.txid}, checksum {format_checksum(v.replica.checksum)}",
            )
        )
    echo("")
    echo(
        f"  wrote {result.transactions:,} transactions in {result.seconds:.1f}s ({result.transactions / result.seconds:,.0f} tx/s)"
    )
    echo(f"  transaction log: {result.records:,} records, WAL restarted {result.checkpoints} times")
    echo(f"  point read on a replica file: {result.read_us_p50:.1f} us (median)")
    echo(
        f"  primary: txid {capture.position.txid}, checksum {format_checksum(capture.position.checksum)}"
    )
    for name, ok, detail in result.verified:
        echo(f"  {name}: {'identical to the primary' if ok else 'MISMATCH'} ({detail})")
    for rep in replicas:
        rep.close()
    writer.close()
    capture.close()
    log.close()
    if cfg.keep:
        echo(f"  files kept in {root}: open replica-1.db with any SQLite library to read it")
    elif cfg.directory is None:
        shutil.rmtree(root, ignore_errors=True)
    return result

"""The application side of the replication benchmark: a writer and a reader of replica files.

* :class:`Writer` is an ordinary application writing the primary's database file directly
  (sqlean, WAL mode, its own ``synchronous`` setting, default autocheckpoint): each transaction
  is one autocommit ``INSERT`` of one small row ``(seq, v)``, ``seq`` counting up from 1. It
  runs open loop (:meth:`Writer.paced`: transaction ``i`` is due at ``start + i / rate``; a late
  one is not skipped, the next ones go sooner) or closed loop (:meth:`Writer.closed`), and
  records ``time.monotonic_ns()`` right after each ``INSERT`` returned (the commit time).
* The **reader** is a separate process (:func:`reader_main`, started by :class:`ReaderProc`), so
  that it shares no GIL with the writer. It polls every replica file in turn, ``PRAGMA
  data_version`` first and ``SELECT max(seq)`` when it moved, sleeping ``poll_us`` between
  rounds, and notes ``time.monotonic_ns()`` each time a replica shows a higher ``seq``. Both
  processes read CLOCK_MONOTONIC, so commit and visible times compare directly. Transaction
  ``s`` is visible on a replica from the first observation of a ``seq >= s`` there (replicas
  apply in commit order), so :func:`visible_lag_ns` needs only those observations.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common.cluster import fine_timers
from bench.common.nodes import TABLE
from litecluster.engine.sqlite import Connection, OperationalError, connect

INSERT = f"INSERT INTO {TABLE}(seq, v) VALUES (?, ?)"
VALUES_POOL = 1024


@dataclass
class WriteRun:
    """What one writer phase did: transaction ``first_seq + i`` began at ``begin_ns[i]``."""

    first_seq: int
    begin_ns: np.ndarray
    commit_ns: np.ndarray
    cpu_s: float
    """CPU time of the writing process (user + system) during the phase."""

    @property
    def txns(self) -> int:
        return int(self.commit_ns.size)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.txns - 1

    @property
    def seconds(self) -> float:
        return float(self.commit_ns[-1] - self.begin_ns[0]) / 1e9 if self.txns else 0.0

    def slow_share(self, threshold_ms: float = 1.0) -> float:
        """Share of the phase's time spent in transactions longer than ``threshold_ms``."""
        d = self.commit_ns - self.begin_ns
        s = self.seconds
        return float(d[d > threshold_ms * 1e6].sum()) / 1e9 / s if s > 0 else float("nan")

    @property
    def tps(self) -> float:
        s = self.seconds
        return self.txns / s if s > 0 else float("nan")


class Writer:
    """One application connection to a WAL database; see the module docstring."""

    def __init__(self, db: Path, synchronous: str, value_bytes: int, seed: int = 1) -> None:
        self.db = db
        self.conn: Connection = connect(db)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        rng = random.Random(seed)
        self.values = [rng.randbytes(value_bytes) for _ in range(VALUES_POOL)]
        self.next_seq = 1

    def create_schema(self) -> int:
        """The benchmark table and its row 0; returns 0 (the seq a reader can wait for)."""
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE}(seq INTEGER PRIMARY KEY, v BLOB NOT NULL)"
        )
        self.conn.execute(INSERT, (0, self.values[0]))
        return 0

    def close(self) -> None:
        self.conn.close()

    def paced(self, rate: float, seconds: float, max_wall: float) -> WriteRun:
        """Open loop: ``rate * seconds`` transactions, each due at ``start + i / rate``; stops
        early after ``max_wall`` seconds (a writer that cannot keep up with the rate)."""
        n = max(1, int(rate * seconds))
        period = 1e9 / rate
        begin = [0] * n
        commit = [0] * n
        clock = time.monotonic_ns
        execute = self.conn.execute
        values, pool, seq0 = self.values, len(self.values), self.next_seq
        cpu0 = time.process_time()
        start = clock() + 1_000_000
        stop_at = start + int(max_wall * 1e9)
        done = n
        for i in range(n):
            now = clock()
            due = start + int(i * period)
            if due > now:
                time.sleep((due - now) / 1e9)
            elif now > stop_at:
                done = i
                break
            b = clock()
            execute(INSERT, (seq0 + i, values[i % pool]))
            commit[i] = clock()
            begin[i] = b
        cpu = time.process_time() - cpu0
        self.next_seq += done
        return WriteRun(
            seq0, np.array(begin[:done], np.int64), np.array(commit[:done], np.int64), cpu
        )

    def closed(self, seconds: float) -> WriteRun:
        """Closed loop: commit as fast as possible for ``seconds``."""
        begin: list[int] = []
        commit: list[int] = []
        clock = time.monotonic_ns
        execute = self.conn.execute
        values, pool, seq = self.values, len(self.values), self.next_seq
        cpu0 = time.process_time()
        stop_at = clock() + int(seconds * 1e9)
        i = 0
        while True:
            b = clock()
            execute(INSERT, (seq + i, values[i % pool]))
            c = clock()
            begin.append(b)
            commit.append(c)
            i += 1
            if c >= stop_at:
                break
        cpu = time.process_time() - cpu0
        self.next_seq += i
        return WriteRun(seq, np.array(begin, np.int64), np.array(commit, np.int64), cpu)


def plain_run(root: Path, synchronous: str, seconds: float, value_bytes: int) -> WriteRun:
    """The peer: the same closed-loop writer on a fresh WAL database, no node anywhere."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "plain.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(db) + suffix)
    w = Writer(db, synchronous, value_bytes)
    try:
        w.create_schema()
        return w.closed(seconds)
    finally:
        w.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(str(db) + suffix)


# ---- the reader process ------------------------------------------------------------------------


def _max_seq(conn: Connection) -> int:
    try:
        rows = conn.execute(f"SELECT max(seq) FROM {TABLE}").fetchall()
    except OperationalError:
        return -1
    return -1 if rows[0][0] is None else int(rows[0][0])


def _data_version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchall()[0][0])


def reader_main(out: str, start_seq: int, poll_us: float, timeout: float, paths: list[str]) -> int:
    """The reader child: see the module docstring. Prints ``ready`` once every replica shows
    ``start_seq - 1``; reads ``stop LAST`` from stdin; exits once every replica shows ``LAST``
    (or ``timeout`` seconds after the stop), saving its observations to ``out`` (npz)."""
    fine_timers()
    conns = [connect(p) for p in paths]
    best = [_max_seq(c) for c in conns]
    deadline = time.monotonic() + timeout
    while min(best) < start_seq - 1:
        if time.monotonic() > deadline:
            print(f"replicas never showed seq {start_seq - 1}: {best}", file=sys.stderr)
            return 2
        time.sleep(0.005)
        best = [_max_seq(c) for c in conns]
    versions = [_data_version(c) for c in conns]
    seqs: list[list[int]] = [[] for _ in conns]
    times: list[list[int]] = [[] for _ in conns]
    print("ready", flush=True)
    clock = time.monotonic_ns
    sleep = time.sleep
    poll_s = poll_us / 1e6
    last: int | None = None
    rounds = 0
    t0 = clock()
    stdin = sys.stdin.fileno()
    while True:
        for i, conn in enumerate(conns):
            v = conn.execute("PRAGMA data_version").fetchall()[0][0]
            if v != versions[i]:
                versions[i] = v
                m = conn.execute(f"SELECT max(seq) FROM {TABLE}").fetchall()[0][0]
                now = clock()
                if m is not None and m > best[i]:
                    best[i] = m
                    seqs[i].append(m)
                    times[i].append(now)
        rounds += 1
        if last is None and rounds % 32 == 0 and select.select([stdin], [], [], 0)[0]:
            line = sys.stdin.readline().split()
            if not line:  # the parent is gone
                break
            last = int(line[1])
            deadline = time.monotonic() + timeout
        if last is not None and (
            min(best) >= last or (rounds % 256 == 0 and time.monotonic() > deadline)
        ):
            break
        sleep(poll_s)
    elapsed = clock() - t0
    arrays = {f"seq{i}": np.array(seqs[i], np.int64) for i in range(len(conns))}
    arrays.update({f"ns{i}": np.array(times[i], np.int64) for i in range(len(conns))})
    arrays["rounds"] = np.array([rounds, elapsed], np.int64)
    np.savez(out, **arrays)  # type: ignore[arg-type]
    for c in conns:
        c.close()
    return 0


@dataclass
class ReaderResult:
    seqs: list[np.ndarray]
    times: list[np.ndarray]
    poll_us: float
    """Mean time between two polling rounds (the resolution of the visible times)."""


class ReaderProc:
    """The reader child process, started through ``python -m bench.replication --reader``."""

    def __init__(
        self,
        out: Path,
        paths: list[Path],
        start_seq: int,
        poll_us: float,
        timeout: float,
    ) -> None:
        self.out = out
        self.n = len(paths)
        cmd = [sys.executable, "-m", "bench.replication", "--reader", str(out), str(start_seq), str(poll_us),
               str(timeout), *map(str, paths)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise RuntimeError(f"reader did not start: {line!r} {err[-1000:]}")

    def finish(self, last_seq: int, timeout: float) -> ReaderResult:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"stop {last_seq}\n")
        self.proc.stdin.flush()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"reader did not finish within {timeout:.0f} s") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"reader failed ({self.proc.returncode}): {err[-1000:]}")
        with np.load(self.out) as data:
            seqs = [data[f"seq{i}"] for i in range(self.n)]
            times = [data[f"ns{i}"] for i in range(self.n)]
            rounds, elapsed = (int(x) for x in data["rounds"])
        self.out.unlink(missing_ok=True)
        return ReaderResult(seqs, times, elapsed / max(rounds, 1) / 1e3)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def visible_lag_ns(
    run: WriteRun, seqs: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Commit-to-visible of each transaction of ``run`` on one replica, and which were seen.

    A lag can be negative: capture reads the WAL, so a replica may show a transaction before the
    writer's ``COMMIT`` returned (with ``synchronous=FULL``, while the writer waits for its
    fsync).
    """
    wanted = np.arange(run.first_seq, run.first_seq + run.txns, dtype=np.int64)
    idx = np.searchsorted(seqs, wanted, side="left")
    seen = idx < seqs.size
    lag = np.zeros(run.txns, dtype=np.int64)
    lag[seen] = times[idx[seen]] - run.commit_ns[seen]
    return lag, seen

"""Small transactions: one-row upserts through capture, the txlog and apply, and plain SQLite.

The litecluster pipeline, all in one process, as a node holding a primary and a replica would:

* the **writer** (the calling thread) commits one upsert per transaction on the primary, through
  :meth:`Capture.connect_writer` (``synchronous=FULL`` unless the variant says NORMAL), holding ``Capture.writer_lock`` around
  each transaction as the engine asks of in-process writers, records the instant ``COMMIT``
  returned, and calls :meth:`Capture.notify`;
* the **capture** follower thread (:meth:`Capture.run`) turns WAL transactions into txlog records
  and makes them durable (one fsync per poll when the txlog fsyncs);
* the **apply** thread reads the new durable records (``log.read(position + 1)``) and applies them
  in batches of up to ``batch_max`` records. It is woken by a hook on :meth:`TxLog.sync` (a
  subclass defined here), as a node would wake its appliers, instead of polling;
* the **reader** thread holds its own connection on the replica file (never the applying one)
  and records when each transaction became visible to it. Every row carries the writer's
  sequence number; replicas apply in commit order, so transaction ``s`` is visible exactly when
  the row of its key shows a sequence number ``>= s``. The reader is woken right after each
  batch's SQLite commit on the replica (:class:`WakingReplica`), after ``apply`` returns, and
  every millisecond regardless, and finds the newest visible transaction with a binary search
  inside one read transaction.

The plain-SQLite peer runs the same writer loop on a WAL database with nothing else.
"""

from __future__ import annotations

import contextlib
import cProfile
import itertools
import os
import pstats
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common.report import percentiles_ms
from bench.common.workload import UPSERT, Workload, create_kv_db
from litecluster import (
    Capture,
    CaptureConfig,
    Replica,
    ReplicaConfig,
    SnapshotRequiredError,
    TxLog,
    TxlogConfig,
)
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.engine.sqlite import Connection, connect

LATENCY_PS = (50.0, 90.0, 99.0, 100.0)


@dataclass
class SmallResult:
    """One run of the small-transaction scenario."""

    name: str
    txns: int
    offered_rate: float | None
    commit_tps: float
    """Transactions per second the writer committed (first BEGIN to last COMMIT)."""
    txn_ms: list[float]
    """Writer latency of one transaction (BEGIN IMMEDIATE .. COMMIT returned): p50 p90 p99 max."""
    cpu_us_per_txn: float
    """Process CPU time (all threads) per transaction, in microseconds."""
    replicated_tps: float | None = None
    """Transactions per second from the first BEGIN until the last one was visible on the replica."""
    visible_ms: list[float] | None = None
    """Commit-to-visible on the replica: p50 p90 p99 max, in milliseconds."""
    records: int = 0
    """Records in the txlog (one per WAL transaction, checkpoint restarts included)."""
    applied_records: int = 0
    apply_batches: int = 0
    checkpoints: int = 0
    thread_cpu_us: dict[str, float] = field(default_factory=dict)
    """CPU time of each thread per transaction (``time.thread_time``), in microseconds."""
    resets: int | None = None
    """Snapshots the apply thread had to install because capture appended a RESET record."""
    profile: dict[str, pstats.Stats] = field(default_factory=dict, repr=False)

    @property
    def records_per_batch(self) -> float | None:
        return self.applied_records / self.apply_batches if self.apply_batches else None


def lc_label(txlog_fsync: bool, replica_durable: bool) -> str:
    return (
        f"litecluster, txlog fsync {'on' if txlog_fsync else 'off'}, "
        f"replica durable={replica_durable}"
    )


class NotifyingTxLog(TxLog):
    """A txlog that sets an event after each sync, so the apply thread needs no polling."""

    def __init__(self, directory: Path, config: TxlogConfig) -> None:
        self.synced = threading.Event()
        super().__init__(directory, config)

    def sync(self) -> int:
        txid = super().sync()
        self.synced.set()
        return txid


class WakingReplica(Replica):
    """A replica that sets ``committed`` right after each SQLite commit of an applied batch.

    Rows are visible to readers from that commit on, while :meth:`Replica.apply` returns only
    after the position file has been written (and fsynced when durable). Waking the reader here
    keeps that write out of the measured commit-to-visible time; if the engine renames the
    private method, the reader is still woken when ``apply`` returns.
    """

    def __init__(self, db_path: Path, config: ReplicaConfig) -> None:
        self.committed = threading.Event()
        super().__init__(db_path, config)

    def _write_pages(self, *args: Any, **kwargs: Any) -> None:
        super()._write_pages(*args, **kwargs)
        self.committed.set()


class _WriterState:
    def __init__(self) -> None:
        self.committed = -1  # highest sequence number whose COMMIT has returned


def _instrumented(
    fn: Callable[[], None],
    name: str,
    cpu: dict[str, float],
    sink: dict[str, pstats.Stats] | None,
) -> Callable[[], None]:
    """``fn`` recording its thread's CPU time in ``cpu[name]`` (and a cProfile when asked)."""

    def run() -> None:
        prof = cProfile.Profile() if sink is not None else None
        t0 = time.thread_time()
        if prof is not None:
            prof.enable()
        try:
            fn()
        finally:
            if prof is not None:
                prof.disable()
                assert sink is not None
                sink[name] = pstats.Stats(prof)
            cpu[name] = time.thread_time() - t0

    return run


class _Applier:
    def __init__(
        self, log: NotifyingTxLog, rep: WakingReplica, cap: Capture, batch_max: int, snap: Path
    ) -> None:
        self.log = log
        self.rep = rep
        self.cap = cap
        self.batch_max = batch_max
        self.snap = snap
        self.applied = rep.committed
        self.stop = threading.Event()
        self.batches = 0
        self.records = 0
        self.resets = 0
        self.error: BaseException | None = None

    def _resnapshot(self) -> None:
        """What a node does when the log says so: install a fresh snapshot of the primary."""
        self.resets += 1
        create_snapshot(self.cap, self.snap)
        install_snapshot(self.rep, self.snap)
        os.remove(self.snap)

    def run(self) -> None:
        try:
            while True:
                self.log.synced.clear()
                pos = self.rep.position.txid
                if self.log.durable_txid > pos:
                    recs = list(itertools.islice(self.log.read(pos + 1), self.batch_max))
                    try:
                        self.rep.apply(recs)
                    except SnapshotRequiredError:
                        self._resnapshot()
                    self.batches += 1
                    self.records += len(recs)
                    self.applied.set()
                    continue
                if self.stop.is_set():
                    return
                self.log.synced.wait(0.05)
        except BaseException as exc:
            self.error = exc
            self.applied.set()


class _Reader:
    def __init__(
        self,
        path: Path,
        keys: list[int],
        state: _WriterState,
        applied: threading.Event,
    ) -> None:
        self.path = path
        self.keys = keys
        self.state = state
        self.applied = applied
        self.visible_ns = np.zeros(len(keys), dtype=np.int64)
        self.next = 0
        self.stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def _visible(self, conn: Connection, seq: int) -> bool:
        rows = conn.execute("SELECT seq FROM kv WHERE k = ?", (self.keys[seq],)).fetchall()
        return bool(rows) and int(rows[0][0]) >= seq

    def run(self) -> None:
        n = len(self.keys)
        conn = connect(self.path)
        try:
            while self.next < n and not self.stop.is_set():
                self.applied.wait(0.001)
                self.applied.clear()
                hi = self.state.committed
                if hi < self.next:
                    continue
                conn.execute("BEGIN")
                try:
                    if self._visible(conn, hi):
                        top = hi
                    else:
                        lo = self.next - 1  # known visible (or nothing yet)
                        while hi - lo > 1:
                            mid = (lo + hi) // 2
                            if self._visible(conn, mid):
                                lo = mid
                            else:
                                hi = mid
                        top = lo
                finally:
                    conn.execute("COMMIT")
                if top >= self.next:
                    self.visible_ns[self.next : top + 1] = time.perf_counter_ns()
                    self.next = top + 1
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()
            self.done.set()


def _write_loop(
    conn: Connection,
    keys: list[int],
    values: list[bytes],
    rate: float | None,
    state: _WriterState | None,
    notify: Callable[[], None] | None,
    lock: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(keys)
    begin = [0] * n
    commit = [0] * n
    period_ns = 1e9 / rate if rate else 0.0
    clock = time.perf_counter_ns
    execute = conn.execute
    guard = lock if lock is not None else contextlib.nullcontext()
    t_start = clock()
    for i in range(n):
        if period_ns:
            delay = t_start + int(i * period_ns) - clock()
            if delay > 0:
                time.sleep(delay / 1e9)
        t0 = clock()
        with guard:
            execute("BEGIN IMMEDIATE")
            execute(UPSERT, (keys[i], values[i], i))
            execute("COMMIT")
        t1 = clock()
        begin[i] = t0
        commit[i] = t1
        if state is not None:
            state.committed = i
        if notify is not None:
            notify()
    return np.array(begin, dtype=np.int64), np.array(commit, dtype=np.int64)


def run_plain(root: Path, wl: Workload, synchronous: str) -> SmallResult:
    """The writer loop alone on a WAL database (no capture, default autocheckpoint)."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "plain.db"
    create_kv_db(db, wl)
    keys, values = wl.generate()
    conn = connect(db)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    cpu0 = time.process_time()
    begin, commit = _write_loop(conn, keys, values, None, None, None)
    cpu = time.process_time() - cpu0
    conn.close()
    return SmallResult(
        name=f"plain SQLite, WAL, synchronous={synchronous}",
        txns=wl.txns,
        offered_rate=None,
        commit_tps=wl.txns / ((commit[-1] - begin[0]) / 1e9),
        txn_ms=percentiles_ms(commit - begin, LATENCY_PS),
        cpu_us_per_txn=cpu / wl.txns * 1e6,
    )


def run_litecluster(
    root: Path,
    wl: Workload,
    *,
    txlog_fsync: bool,
    replica_durable: bool = True,
    replica: bool = True,
    rate: float | None = None,
    batch_max: int = 1000,
    profile: bool = False,
    timeout: float = 300.0,
    writer_sync: str = "FULL",
) -> SmallResult:
    """Writer + capture + txlog + apply + reader, as described in the module docstring.

    ``txlog_fsync``: :class:`TxlogConfig` ``fsync``. ``replica_durable``: :class:`ReplicaConfig`
    ``durable`` (position file fsynced, replica commits with ``synchronous=FULL``). The primary's
    writer commits with ``writer_sync`` (:meth:`Capture.connect_writer`; NORMAL makes the txlog's
    fsync the durability point). Without
    ``replica``, only the primary side runs (writer, capture, txlog): its cost on the writer.
    """
    root.mkdir(parents=True, exist_ok=True)
    primary = root / "primary.db"
    create_kv_db(primary, wl)
    keys, values = wl.generate()
    with contextlib.ExitStack() as stack:
        log = NotifyingTxLog(root / "txlog", TxlogConfig(fsync=txlog_fsync))
        stack.callback(log.close)
        cap = Capture(primary, log, CaptureConfig())
        stack.callback(cap.close)
        rep: WakingReplica | None = None
        if replica:
            snap = root / "replica.snap"
            create_snapshot(cap, snap)
            rep = WakingReplica(root / "replica.db", ReplicaConfig(durable=replica_durable))
            stack.callback(rep.close)
            install_snapshot(rep, snap)
            os.remove(snap)
        writer = cap.connect_writer(writer_sync)
        stack.callback(writer.close)

        sink: dict[str, pstats.Stats] | None = {} if profile else None
        cpu: dict[str, float] = {}
        state = _WriterState()
        threads = [
            threading.Thread(target=_instrumented(cap.run, "capture", cpu, sink), name="capture")
        ]
        applier: _Applier | None = None
        reader: _Reader | None = None
        if rep is not None:
            applier = _Applier(log, rep, cap, batch_max, root / "reset.snap")
            reader = _Reader(root / "replica.db", keys, state, applier.applied)
            threads += [
                threading.Thread(target=_instrumented(applier.run, "apply", cpu, sink)),
                threading.Thread(target=_instrumented(reader.run, "reader", cpu, sink)),
            ]
        for t in threads:
            t.start()
        cpu0 = time.process_time()
        try:
            result: dict[str, Any] = {}

            def write() -> None:
                result["times"] = _write_loop(
                    writer, keys, values, rate, state, cap.notify, cap.writer_lock
                )

            _instrumented(write, "writer", cpu, sink)()
            begin, commit = result["times"]
            deadline = time.monotonic() + timeout
            if reader is not None and applier is not None:
                while not reader.done.wait(0.1):
                    if cap.error or applier.error or time.monotonic() > deadline:
                        break
            cpu_total = time.process_time() - cpu0
        finally:
            cap.stop()
            if reader is not None and applier is not None:
                reader.stop.set()
                applier.stop.set()
            log.synced.set()
            for t in threads:
                t.join()
        errors = [cap.error] + ([applier.error, reader.error] if applier and reader else [])
        for err in errors:
            if err is not None:
                raise RuntimeError(f"benchmark pipeline failed: {err!r}") from err
        cap.poll()
        if log.last_txid < wl.txns:
            raise RuntimeError(f"txlog holds {log.last_txid} records for {wl.txns} commits")
        res = SmallResult(
            name=lc_label(txlog_fsync, replica_durable) if replica else "capture only",
            txns=wl.txns,
            offered_rate=rate,
            commit_tps=wl.txns / ((commit[-1] - begin[0]) / 1e9),
            txn_ms=percentiles_ms(commit - begin, LATENCY_PS),
            cpu_us_per_txn=cpu_total / wl.txns * 1e6,
            records=log.last_txid,
            checkpoints=cap.checkpoints,
            thread_cpu_us={k: v / wl.txns * 1e6 for k, v in cpu.items()},
            profile=sink or {},
        )
        if rep is None or reader is None or applier is None:
            return res
        if reader.next < wl.txns:
            raise TimeoutError(f"replica did not show every transaction within {timeout}s")
        # Correctness: once everything is applied, the replica is at the primary's position and
        # its newest row is the last write.
        pending = list(log.read(rep.position.txid + 1))
        if pending:
            rep.apply(pending)
        if rep.position != cap.position:
            raise RuntimeError(f"replica at {rep.position}, primary at {cap.position}")
        check = connect(root / "replica.db")
        newest = check.execute("SELECT max(seq) FROM kv").fetchall()[0][0]
        check.close()
        if newest != wl.txns - 1:
            raise RuntimeError(f"replica's newest row is {newest}, expected {wl.txns - 1}")
        visible = reader.visible_ns
        res.replicated_tps = wl.txns / ((int(visible.max()) - begin[0]) / 1e9)
        res.visible_ms = percentiles_ms(visible - commit, LATENCY_PS)
        res.applied_records = applier.records
        res.apply_batches = applier.batches
        res.resets = applier.resets
        return res

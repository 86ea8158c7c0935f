"""Bulk: snapshot create/install of a big database, catch-up of a replica far behind, memory.

The parent prepares, once per benchmark run (not timed as a result):

* a primary of about ``size_mb`` MB (the ``kv`` table plus random blobs, built in a few big
  transactions), and a plain copy of it (``plain_base.db``) for the plain-SQLite peer;
* a txlog started on that primary, a replica installed from a snapshot at that position
  (``base_replica.db``, the state of a replica before it falls behind), and then ``behind``
  one-row upserts committed and captured, so the txlog holds that many records after it.

Each measured run is a child process, so its peak RSS is clean (the parent samples the child's
RSS with psutil every few milliseconds; the child also reports its own peak RSS, ``VmHWM``,
after each phase):

* **litecluster** (:func:`child_litecluster`): open the txlog (every record is verified) and
  capture on the primary (recovery hashes every page), create a snapshot file, install it on an
  empty replica (durable), then copy ``base_replica.db`` and catch it up from the txlog in
  batches of ``batch`` records (durable replica);
* **plain SQLite** (:func:`child_plain`): copy the primary with SQLite's online backup API, copy
  the file itself (a disk-speed reference), and replay the same upserts on a copy of
  ``plain_base.db`` in transactions of ``batch`` upserts (WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.common.workload import PAGE_SIZE, UPSERT, Workload, copy_db, create_big_db, remove_db
from litecluster import Capture, CaptureConfig, Replica, ReplicaConfig, TxLog, TxlogConfig
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.engine.sqlite import DatabaseError, connect, pragma_int

MB = 10**6
PENDING_BYTE = 0x40000000
"""SQLite's lock byte: the page holding it is never used, and the pager refuses to write it."""


@dataclass(frozen=True)
class BulkParams:
    """Everything a child needs (passed as JSON)."""

    work: str
    primary: str
    plain_base: str
    base_replica: str
    txlog: str
    behind_txns: int
    keys: int
    value_bytes: int
    seed: int
    batch: int

    def workload(self) -> Workload:
        return Workload(self.behind_txns, self.keys, self.value_bytes, self.seed)


@dataclass(frozen=True)
class BulkPrep:
    params: BulkParams
    db_bytes: int
    """Size of the primary when the snapshot base was taken."""
    create_s: float
    generate_s: float
    records_behind: int


def peak_rss_mb() -> float:
    """This process's peak RSS so far (``VmHWM``), in MB (10**6 bytes).

    Not ``ru_maxrss``: Linux carries that over ``exec`` from the parent that spawned the child,
    so a child would report at least its parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # the kernel's kB are KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def prepare(work: Path, size_mb: int, behind: int, batch: int, keys: int = 10_000) -> BulkPrep:
    """Build the primary, its plain copy, the base replica and the txlog (see module doc)."""
    work.mkdir(parents=True, exist_ok=True)
    params = BulkParams(
        work=str(work),
        primary=str(work / "primary.db"),
        plain_base=str(work / "plain_base.db"),
        base_replica=str(work / "base_replica.db"),
        txlog=str(work / "txlog"),
        behind_txns=behind,
        keys=keys,
        value_bytes=200,
        seed=7,
        batch=batch,
    )
    wl = params.workload()
    primary = Path(params.primary)
    t0 = time.perf_counter()
    db_bytes = create_big_db(primary, size_mb, wl)
    create_s = time.perf_counter() - t0
    copy_db(primary, Path(params.plain_base))

    shutil.rmtree(params.txlog, ignore_errors=True)
    log = TxLog(params.txlog, TxlogConfig(fsync=False))
    cap = Capture(primary, log, CaptureConfig())
    snap = work / "base.snap"
    create_snapshot(cap, snap)
    remove_db(Path(params.base_replica))
    rep = Replica(params.base_replica, ReplicaConfig(durable=False))
    try:
        install_snapshot(rep, snap)
    except Exception as exc:
        raise RuntimeError(
            f"installing a snapshot of the {db_bytes:,}-byte primary on the base replica "
            f"failed: {exc!r}"
        ) from exc
    base_txid = rep.position.txid
    rep.close()
    os.remove(snap)

    keys_, values = wl.generate()
    writer = cap.connect_writer()
    writer.execute("PRAGMA synchronous=NORMAL")  # preparation only: the records are the same
    t0 = time.perf_counter()
    for i in range(behind):
        with cap.writer_lock:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(UPSERT, (keys_[i], values[i], i))
            writer.execute("COMMIT")
        if i % 256 == 255:
            cap.poll()
            cap.maybe_checkpoint()
    cap.poll()
    generate_s = time.perf_counter() - t0
    writer.close()
    records = log.last_txid - base_txid
    cap.close()
    log.close()
    return BulkPrep(params, db_bytes, create_s, generate_s, records)


def lock_page_probe(work: Path, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Write SQLite's lock-byte page through ``sqlite_dbpage``, as ``Replica.replace`` writes
    every page of a snapshot, and the page after it as a control (both rolled back)."""
    pgno = PENDING_BYTE // page_size + 1
    path = work / "lockpage.db"
    remove_db(path)
    conn = connect(path)
    outcomes: list[str] = []
    try:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("CREATE TABLE t(x)")
        for p in (pgno, pgno + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?, zeroblob(?))", (p, page_size)
                )
                outcomes.append("accepted")
            except DatabaseError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.execute("ROLLBACK")
    finally:
        conn.close()
        remove_db(path)
    return {"pgno": pgno, "page_size": page_size, "lock_page": outcomes[0], "next": outcomes[1]}


# ---- children ------------------------------------------------------------------------------------


class _Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rss_mb: dict[str, float] = {"startup": peak_rss_mb()}
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def end(self, name: str) -> float:
        dt = time.perf_counter() - self._t
        self.seconds[name] = dt
        self.rss_mb[name] = peak_rss_mb()
        return dt


def child_litecluster(p: BulkParams) -> dict[str, Any]:
    work = Path(p.work)
    ph = _Phases()
    ph.start()
    log = TxLog(p.txlog, TxlogConfig(fsync=True))
    ph.end("txlog_open")
    ph.start()
    cap = Capture(p.primary, log, CaptureConfig())
    ph.end("capture_open")
    snap = work / "run.snap"
    ph.start()
    header = create_snapshot(cap, snap)
    ph.end("snapshot_create")
    cap.close()
    log.close()
    snap_bytes = snap.stat().st_size

    fresh = work / "run_replica.db"
    remove_db(fresh)
    rep = Replica(fresh, ReplicaConfig(durable=True))
    ph.start()
    install_snapshot(rep, snap)
    ph.end("snapshot_install")
    if rep.position != header.position:
        raise RuntimeError("installed replica is not at the snapshot's position")
    rep.close()
    remove_db(fresh)
    os.remove(snap)

    behind = work / "run_behind.db"
    copy_db(Path(p.base_replica), behind)
    ph.start()
    rep = Replica(behind, ReplicaConfig(durable=True))
    ph.end("replica_open")
    ph.start()
    rlog = TxLog(p.txlog, readonly=True)
    ph.end("txlog_open_readonly")
    last = rlog.last_txid
    start_txid = rep.position.txid
    pages = 0
    batches = 0
    ph.start()
    while rep.position.txid < last:
        pos = rep.position.txid
        recs = list(rlog.read(pos + 1, pos + p.batch))
        rep.apply(recs)
        pages += sum(len(r.pages) for r in recs)
        batches += 1
    ph.end("catch_up")
    final = rlog.get(last)
    if rep.position.checksum != final.post_checksum:
        raise RuntimeError("caught-up replica does not match the log's last checksum")
    txlog_bytes = rlog.stats().bytes
    rep.close()
    rlog.close()
    remove_db(behind)
    return {
        "seconds": ph.seconds,
        "rss_mb": ph.rss_mb,
        "db_bytes": header.size_bytes,
        "snapshot_bytes": snap_bytes,
        "records": last - start_txid,
        "page_bytes": pages * header.page_size,
        "txlog_bytes": txlog_bytes,
        "batches": batches,
    }


def child_plain(p: BulkParams) -> dict[str, Any]:
    work = Path(p.work)
    ph = _Phases()
    src = connect(p.primary)
    db_bytes = pragma_int(src, "page_count") * pragma_int(src, "page_size")
    dst_path = work / "run_backup.db"
    remove_db(dst_path)
    dst = connect(dst_path)
    ph.start()
    src.backup(dst)
    dst.close()
    ph.end("backup")
    src.close()
    remove_db(dst_path)

    copy_path = work / "run_copy.db"
    ph.start()
    shutil.copyfile(p.primary, copy_path)
    with open(copy_path, "rb+") as f:
        os.fsync(f.fileno())
    ph.end("file_copy")
    os.remove(copy_path)

    replay = work / "run_replay.db"
    copy_db(Path(p.plain_base), replay)
    keys, values = p.workload().generate()
    rows = [(keys[i], values[i], i) for i in range(p.behind_txns)]
    conn = connect(replay)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("PRAGMA synchronous=FULL")
    ph.start()
    it = iter(rows)
    while chunk := list(itertools.islice(it, p.batch)):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(UPSERT, chunk)
        conn.execute("COMMIT")
    ph.end("replay")
    conn.close()
    remove_db(replay)
    return {"seconds": ph.seconds, "rss_mb": ph.rss_mb, "db_bytes": db_bytes, "txns": len(rows)}


CHILDREN = {"litecluster": child_litecluster, "plain": child_plain}


def child_main(kind: str, params_json: str, out_json: str) -> None:
    """Entry point of a child process (``python -m bench.engine --child KIND PARAMS OUT``)."""
    with open(params_json, encoding="utf-8") as f:
        params = BulkParams(**json.load(f))
    try:
        result = CHILDREN[kind](params)
    except Exception as exc:
        with open(out_json, "w", encoding="utf-8") as f:
            json.dump({"error": repr(exc)}, f)
        raise
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(result, f)


def run_child(kind: str, params: BulkParams) -> dict[str, Any]:
    """Run one child and sample its RSS; the result gains ``peak_rss_mb`` (psutil)."""
    work = Path(params.work)
    pfile = work / f"params-{kind}.json"
    ofile = work / f"result-{kind}.json"
    pfile.write_text(json.dumps(asdict(params)), encoding="utf-8")
    ofile.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.engine", "--child", kind, str(pfile), str(ofile)],
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            ps = psutil.Process(proc.pid)
            while not stop.is_set():
                peak = max(peak, ps.memory_info().rss)
                stop.wait(0.005)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, name="rss-sampler")
    sampler.start()
    rc = proc.wait()
    stop.set()
    sampler.join()
    result: dict[str, Any] = json.loads(ofile.read_text(encoding="utf-8")) if ofile.exists() else {}
    if rc != 0 or "error" in result:
        why = result.get("error", f"exit code {rc}")
        raise RuntimeError(f"benchmark child {kind!r} failed: {why}")
    result["peak_rss_mb"] = peak / 1e6
    return result

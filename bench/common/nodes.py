"""Node processes for the replication benchmark (and the SQL, key/value, bootstrap and write
benchmarks that need a static cluster): a primary and replicas on 127.0.0.1.

A :class:`Cluster` starts real ``litecluster serve`` processes through
:class:`litecluster.cli.localcluster.LocalNode` (a primary without ``--primary``, replicas pointed at
its replication address), reads their ``/status``, samples their CPU time with psutil, and kills
every process it started when it is closed, whatever happened (use it as a context manager).

Every SQLite file is opened through :func:`litecluster.engine.sqlite.connect` (sqlean), never the
stdlib ``sqlite3`` module (two SQLite libraries in one process break each other's locks).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from bench.common.cluster import NO_HTTP_AUTH
from litecluster.cli.localcluster import LocalNode
from litecluster.engine.record import FRAME_SIZE, HEADER, TRAILER_SIZE
from litecluster.engine.sqlite import Connection, OperationalError, connect
from litecluster.engine.txlog import TxLog

DB = "main"
TABLE = "t"
STATUS_TIMEOUT = 30.0


@dataclass(frozen=True)
class Setup:
    """One configuration of the cluster and its application writer."""

    key: str
    writer_sync: str
    """``synchronous`` of the application's connection to the primary file."""
    replica_durable: bool
    """The nodes' ``replica_durable`` (position file fsynced, replica commits FULL)."""

    @property
    def label(self) -> str:
        return (
            f"writer synchronous={self.writer_sync}, replica_durable="
            f"{str(self.replica_durable).lower()}"
        )


@dataclass(frozen=True)
class Counters:
    """The cluster's counters at one instant (differences of two give a phase's figures)."""

    at: float
    head: int
    """The primary's newest durable txid."""
    records_shipped: int
    bytes_shipped: int
    applied: tuple[int, ...]
    """``records_applied`` of each replica."""
    replica_cpu: tuple[float, ...]
    """User + system CPU seconds of each replica process."""
    primary_cpu: float
    lo_bytes: int
    """Bytes sent on the loopback interface (by anyone on this machine)."""
    reconnects: int
    machine_busy: float
    """System-wide CPU seconds not idle (all cores, all processes: psutil.cpu_times())."""
    machine_total: float
    lag_records: tuple[int, ...]
    """Each replica's lag as the primary's ``/status`` reports it (from its acks)."""
    lag_ms: tuple[float, ...]
    errors: int


def _cpu(node: LocalNode) -> float:
    assert node.proc is not None
    t = psutil.Process(node.proc.pid).cpu_times()
    return float(t.user + t.system)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    t = psutil.cpu_times()
    total = float(sum(t))
    idle = float(t.idle + getattr(t, "iowait", 0.0))
    return total - idle, total


def loopback_bytes() -> int:
    counters = psutil.net_io_counters(pernic=True)
    lo = counters.get("lo")
    return int(lo.bytes_sent) if lo is not None else 0


class Cluster:
    """A primary and ``replicas`` replicas in ``root`` (one data directory per node)."""

    def __init__(self, root: Path, setup: Setup) -> None:
        self.root = root
        self.setup = setup
        root.mkdir(parents=True, exist_ok=True)
        self.token_file = root / "token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.env = {"LITECLUSTER_REPLICA_DURABLE": "true" if setup.replica_durable else "false",
                    **NO_HTTP_AUTH}  # fmt: skip
        self.primary: LocalNode | None = None
        self.replicas: list[LocalNode] = []
        self._readers: list[Connection] = []

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(
        self,
        replicas: int,
        timeout: float = 60.0,
        *,
        primary_args: Sequence[str] = (),
        replica_args: Callable[[int], list[str]] | None = None,
    ) -> None:
        """Start the primary, then ``replicas`` replicas; ``primary_args`` and
        ``replica_args(i)`` (i from 0) are more ``litecluster serve`` options."""
        self.primary = LocalNode(
            self.root / "primary", "primary", self.token_file, env=self.env,
            extra_args=list(primary_args),
        )  # fmt: skip
        self.primary.start(timeout=timeout)
        for i in range(replicas):
            node = LocalNode(
                self.root / f"replica{i + 1}",
                f"replica{i + 1}",
                self.token_file,
                primary=self.primary.listen,
                env=self.env,
                extra_args=replica_args(i) if replica_args is not None else [],
            )
            self.replicas.append(node)
            node.start(wait=False)
        for node in self.replicas:
            node.wait_ready(timeout)

    @property
    def nodes(self) -> list[LocalNode]:
        return ([self.primary] if self.primary is not None else []) + self.replicas

    @property
    def primary_db(self) -> Path:
        assert self.primary is not None
        return self.primary.data_dir / "db" / f"{DB}.db"

    @property
    def replica_dbs(self) -> list[Path]:
        return [r.data_dir / "db" / f"{DB}.db" for r in self.replicas]

    @property
    def txlog_dir(self) -> Path:
        assert self.primary is not None
        return self.primary.data_dir / "txlog" / DB

    def stop(self) -> list[int | None]:
        """SIGTERM every node (replicas first) and wait: the primary syncs its last records."""
        self._close_readers()
        codes = [r.stop() for r in self.replicas]
        if self.primary is not None:
            codes.append(self.primary.stop())
        return codes

    def kill(self) -> None:
        """kill -9 whatever is still running (safe to call more than once)."""
        self._close_readers()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    def log_tails(self, chars: int = 600) -> str:
        parts = []
        for node in self.nodes:
            tail = node.log_text[-chars:].strip()
            if tail:
                parts.append(f"--- {node.node_id} ---\n{tail}")
        return "\n".join(parts)

    # ---- status -------------------------------------------------------------------------------

    def primary_status(self) -> dict[str, Any]:
        assert self.primary is not None
        return self.primary.status(timeout=STATUS_TIMEOUT)

    def counters(self) -> Counters:
        """Status first, CPU last (at the start of a phase; see :meth:`counters_end`)."""
        statuses = self._statuses()
        return self._counters(statuses, self._cpus())

    def counters_end(self) -> Counters:
        """CPU first, status after (so that the status requests are not charged to the phase)."""
        cpus = self._cpus()
        return self._counters(self._statuses(), cpus)

    def _cpus(self) -> tuple[float, tuple[float, ...], int, tuple[float, float]]:
        assert self.primary is not None
        return (
            _cpu(self.primary),
            tuple(_cpu(r) for r in self.replicas),
            loopback_bytes(),
            machine_cpu(),
        )

    def _statuses(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.primary_status(), [r.status(timeout=STATUS_TIMEOUT) for r in self.replicas]

    def _counters(
        self,
        statuses: tuple[dict[str, Any], list[dict[str, Any]]],
        cpus: tuple[float, tuple[float, ...], int, tuple[float, float]],
    ) -> Counters:
        prim, reps = statuses
        stats = prim["stats"]
        by_id = {s["node_id"]: s for s in prim["replicas"]}
        lag_records, lag_ms = [], []
        for r in self.replicas:
            d = by_id.get(r.node_id, {}).get("databases", {}).get(DB)
            lag_records.append(int(d["lag_records"]) if d else -1)
            lag_ms.append(float(d["lag_ms"]) if d else float("nan"))
        errors = sum(sum(s["stats"]["errors"].values()) for s in [prim, *reps])
        return Counters(
            at=time.monotonic(),
            head=int(prim["databases"][DB]["txid"]) if DB in prim["databases"] else 0,
            records_shipped=int(stats["records_shipped"]),
            bytes_shipped=int(stats["bytes_shipped"]),
            applied=tuple(int(s["stats"]["records_applied"]) for s in reps),
            replica_cpu=cpus[1],
            primary_cpu=cpus[0],
            lo_bytes=cpus[2],
            reconnects=sum(int(s["stats"]["reconnects"]) for s in reps),
            machine_busy=cpus[3][0],
            machine_total=cpus[3][1],
            lag_records=tuple(lag_records),
            lag_ms=tuple(lag_ms),
            errors=errors,
        )

    def positions(self) -> tuple[tuple[int, str], list[tuple[int, str]]]:
        """(txid, checksum) of the primary's database and of each replica's copy."""

        def pos(status: dict[str, Any]) -> tuple[int, str]:
            d = status["databases"].get(DB)
            return (-1, "") if d is None else (int(d["txid"]), str(d["checksum"]))

        prim, reps = self._statuses()
        return pos(prim), [pos(r) for r in reps]

    def wait_converged(self, timeout: float) -> bool:
        """Wait until every replica reports the primary's position (txid and checksum)."""
        deadline = time.monotonic() + timeout
        while True:
            want, have = self.positions()
            if all(h == want for h in have):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def check_alive(self) -> None:
        for node in self.nodes:
            if not node.running:
                code = node.proc.returncode if node.proc is not None else None
                raise RuntimeError(
                    f"node {node.node_id} exited (code {code}): {node.log_text[-800:]}"
                )

    # ---- the replica files ----------------------------------------------------------------------

    def _close_readers(self) -> None:
        for conn in self._readers:
            with contextlib.suppress(Exception):
                conn.close()
        self._readers = []

    def max_seqs(self) -> list[int]:
        """``max(seq)`` of the benchmark table in each replica file (-1: no table or no row)."""
        if len(self._readers) != len(self.replicas):
            self._close_readers()
            self._readers = [connect(p) for p in self.replica_dbs]
        out = []
        for conn in self._readers:
            try:
                rows = conn.execute(f"SELECT max(seq) FROM {TABLE}").fetchall()
            except OperationalError:  # no table yet
                out.append(-1)
                continue
            out.append(-1 if rows[0][0] is None else int(rows[0][0]))
        return out

    def wait_rows(self, seq: int, timeout: float, interval: float = 0.005) -> float | None:
        """Wait until every replica file shows row ``seq``; the monotonic time it was seen, or
        None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if all(m >= seq for m in self.max_seqs()):
                return time.monotonic()
            if time.monotonic() > deadline:
                return None
            self.check_alive()
            time.sleep(interval)


# ---- the primary's txlog ----------------------------------------------------------------------


@dataclass(frozen=True)
class LogSizes:
    """Sizes of the records ``first..last`` of a txlog."""

    first: int
    last: int
    records: int
    pages: int
    encoded_bytes: int
    """Framed records as stored and shipped (headers, zstd payload, checksum)."""
    uncompressed_bytes: int
    """The same records with the payload uncompressed: headers + page numbers + page images."""
    page_bytes: int
    """Page images alone (``len(rec.pages) * rec.page_size``)."""


def log_sizes(directory: Path, first: int, last: int) -> LogSizes:
    """Read the records ``first..last`` of a (closed) txlog and add up their sizes."""
    overhead = FRAME_SIZE + HEADER.size + TRAILER_SIZE
    records = pages = encoded = uncompressed = page_bytes = 0
    with TxLog(directory, readonly=True) as log:
        first = max(first, log.first_txid)
        last = min(last, log.last_txid)
        txid = first
        while txid <= last:
            raws = log.read_raw(txid, max_records=min(512, last - txid + 1))
            encoded += sum(len(r) for r in raws)
            txid += len(raws)
        for rec in log.read(first, last):
            records += 1
            pages += len(rec.pages)
            page_bytes += len(rec.pages) * rec.page_size
            uncompressed += overhead + len(rec.annotations) + 4 * len(rec.pages)
            uncompressed += len(rec.pages) * rec.page_size
    return LogSizes(first, last, records, pages, encoded, uncompressed, page_bytes)

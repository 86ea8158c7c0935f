"""Recorded operations: workloads that write to whichever node is primary while a fault is
injected, and keep, for every request, what a checker needs afterwards.

Each operation records its invoke and complete times (``time.monotonic``, one clock for the
whole machine), the node it was sent to, its outcome and, when acknowledged, the position the
response names (``{"epoch": E, "txid": T, "node": ID}``: the primary that acknowledged it):

- ``ok``: acknowledged (HTTP 200, no statement error);
- ``failed``: a definite refusal, nothing of it applied: a statement error (the request's
  savepoint rolled back), a retryable 503 that says nothing may have been applied ("not
  primary", no primary to forward to, disk full: refused before COMMIT), or a connection that
  could not even be opened (nothing was sent);
- ``indeterminate``: anything else: a timeout, a connection broken mid-request, a 503 marked
  ``indeterminate`` (sync timeout, leadership lost while committing, a forward broken after
  it was sent), any other status.

Two workloads: SET inserts unique keys into ``t``; BANK moves money between accounts of a fixed
total, each transfer one request with ``?transaction``: two balance UPDATEs and the INSERT of a
ledger row with the transfer's unique id (checker.py replays the ledger against the balances).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for

OK, FAILED, INDETERMINATE = "ok", "failed", "indeterminate"

ACCOUNTS, INITIAL_BALANCE = 5, 100
SCHEMA: list[Any] = [
    "CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger(id TEXT PRIMARY KEY, src INTEGER NOT NULL, "
    "dst INTEGER NOT NULL, amount INTEGER NOT NULL)",
    *[["INSERT OR IGNORE INTO accounts VALUES(?, ?)", a, INITIAL_BALANCE] for a in range(ACCOUNTS)],
]
"""Created once (idempotently) before a workload runs: see ha_cluster.first_primary."""


@dataclass
class Op:
    workload: str
    """"set" (``id`` is the key) or "bank" (``id`` is the transfer's ledger id)."""
    id: str
    node: str
    """The node the request was sent to (a replica forwards to its primary)."""
    invoke: float
    complete: float = 0.0
    outcome: str = ""
    epoch: int | None = None
    acked_by: str | None = None
    txid: int | None = None
    transfer: tuple[int, int, int] | None = None
    """BANK: (from account, to account, amount)."""
    detail: str = ""

    def statements(self) -> list[Any]:
        if self.transfer is None:
            return [["INSERT INTO t(k) VALUES(?)", self.id]]
        src, dst, amount = self.transfer
        return [
            ["UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, src],
            ["UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, dst],
            ["INSERT INTO ledger(id, src, dst, amount) VALUES(?, ?, ?, ?)", self.id, src, dst,
             amount],
        ]  # fmt: skip


def classify(op: Op, resp: httpx.Response | None, exc: Exception | None = None) -> None:
    """Set ``op``'s outcome (and position) from the response or the exception."""
    op.complete = time.monotonic()
    if resp is None:
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        op.outcome = FAILED if never_sent else INDETERMINATE
        op.detail = f"{type(exc).__name__}: {exc}"
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        op.outcome, op.detail = INDETERMINATE, f"HTTP {resp.status_code}: {resp.text[:200]}"
        return
    if resp.status_code == 200 and isinstance(body.get("results"), list):
        errors = [r["error"] for r in body["results"] if "error" in r]
        if errors:
            op.outcome, op.detail = FAILED, f"statement error: {errors[0]}"
            return
        op.outcome = OK
        pos = body.get("position") or {}
        op.epoch, op.txid, op.acked_by = pos.get("epoch"), pos.get("txid"), pos.get("node")
        return
    message = str(body.get("error", ""))
    op.detail = f"HTTP {resp.status_code}: {message[:200]}"
    # The server's own labels decide: a refusal it calls retryable and not indeterminate must
    # not have been applied, and checker.py fails the run if it was.
    refused = resp.status_code == 503 and body.get("retryable") is True
    op.outcome = FAILED if refused and body.get("indeterminate") is not True else INDETERMINATE


class History:
    """Every operation of a run, appended as it completes (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []

    def add(self, op: Op) -> None:
        with self._lock:
            self._ops.append(op)

    @property
    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def ok(self) -> list[Op]:
        return [o for o in self.ops if o.outcome == OK]

    def acked_after(self, t: float) -> int:
        return sum(1 for o in self.ops if o.outcome == OK and o.complete > t)

    def first_ack_after(self, t: float, *, newer_than: int) -> Op | None:
        """The first write acknowledged after ``t`` in an epoch newer than ``newer_than``."""
        acks = [o for o in self.ok() if o.complete > t and (o.epoch or 0) > newer_than]
        return min(acks, key=lambda o: o.complete, default=None)

    def summary(self) -> str:
        ops = self.ops
        counts = {k: sum(1 for o in ops if o.outcome == k) for k in (OK, FAILED, INDETERMINATE)}
        epochs = sorted({o.epoch for o in ops if o.epoch is not None})
        return f"{len(ops)} operations {counts}, acknowledged in epochs {epochs}"


class Router:
    """Where writes go: the node that says it is primary with the newest epoch (a deposed
    primary may say so for a moment after it stopped acknowledging)."""

    def __init__(self, members: list[LocalNode]) -> None:
        self.members = members
        self.primary: LocalNode | None = None
        self._lock = threading.Lock()
        self._checked = 0.0

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked < 0.1:
                return  # another worker just looked
            best, best_epoch = None, -1
            for m in self.members:
                if not m.running:
                    continue
                try:
                    node = m.status(timeout=0.5)["node"]
                except (httpx.HTTPError, ValueError, KeyError):
                    continue  # stopped, cut off or restarting
                if node["role"] == "primary" and int(node["epoch"]) > best_epoch:
                    best, best_epoch = m, int(node["epoch"])
            self.primary, self._checked = best, time.monotonic()


class Load:
    """SET and BANK workers writing until ``finish``: ``set_threads`` and ``bank_threads``
    send to the primary, ``via_replicas`` SET workers send to the other nodes in turn (which
    forward to the primary). ``timeout``: a request unanswered this long is indeterminate
    (short, so that a hung primary does not hold the workers past the failover)."""

    def __init__(
        self,
        members: list[LocalNode],
        *,
        set_threads: int = 2,
        bank_threads: int = 1,
        via_replicas: int = 0,
        timeout: float = 2.0,
    ) -> None:
        self.members = members
        self.history = History()
        self.router = Router(members)
        self.timeout = httpx.Timeout(timeout, connect=min(1.0, timeout))
        self._halt = threading.Event()
        kinds = ["set"] * set_threads + ["bank"] * bank_threads + ["via"] * via_replicas
        self._threads = [
            threading.Thread(target=self._work, args=(kind, w), daemon=True, name=f"{kind}{w}")
            for w, kind in enumerate(kinds)
        ]
        self.errors: list[BaseException] = []

    def __enter__(self) -> Load:
        self.router.refresh()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> History:
        self._halt.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a workload thread is stuck"
        assert not self.errors, self.errors
        return self.history

    def wait_acks(self, n: int, after: float | None = None, timeout: float = 60) -> None:
        """Until ``n`` more writes were acknowledged (after ``after``, default now)."""
        since = time.monotonic() if after is None else after
        wait_for(lambda: self.history.acked_after(since) >= n, timeout, f"{n} acknowledged writes")

    def probe(self, node: LocalNode, n: int, name: str = "probe") -> list[Op]:
        """Send ``n`` SET writes to ``node`` itself (not routed), recorded in the history."""
        ops = [Op("set", f"{name}-{i}", node.node_id, 0.0) for i in range(n)]
        with httpx.Client(timeout=self.timeout) as client:
            for op in ops:
                self._send(client, node, op)
                self.history.add(op)
        return ops

    def _target(self, kind: str, i: int) -> LocalNode | None:
        primary = self.router.primary
        if kind != "via":
            return primary
        others = [m for m in self.members if m is not primary and m.running]
        return others[i % len(others)] if others else primary

    def _work(self, kind: str, w: int) -> None:
        rng = random.Random(w)
        try:
            with httpx.Client(timeout=self.timeout) as client:
                i = 0
                while not self._halt.is_set():
                    node = self._target(kind, i)
                    if node is None:
                        self.router.refresh()
                        self._halt.wait(0.05)  # no primary known: an election is under way
                        continue
                    op = self._next(kind, w, i, node, rng)
                    i += 1
                    self._send(client, node, op)
                    self.history.add(op)
                    if op.outcome != OK:
                        self.router.refresh()
                        self._halt.wait(0.02)  # not a busy loop against a refusing node
        except BaseException as exc:  # reported by finish()
            self.errors.append(exc)

    @staticmethod
    def _next(kind: str, w: int, i: int, node: LocalNode, rng: random.Random) -> Op:
        if kind == "bank":
            src, dst = rng.sample(range(ACCOUNTS), 2)
            transfer = (src, dst, rng.randint(1, 10))
            return Op("bank", f"b{w}-{i}", node.node_id, 0.0, transfer=transfer)
        return Op("set", f"s{w}-{i}", node.node_id, 0.0)

    def _send(self, client: httpx.Client, node: LocalNode, op: Op) -> None:
        params = {"transaction": "true"} if op.transfer else {}
        url = f"http://{node.http}/db/execute"
        op.invoke = time.monotonic()
        try:
            resp = client.post(url, json=op.statements(), params=params)
        except httpx.HTTPError as exc:
            classify(op, None, exc)
        else:
            classify(op, resp)

"""Strong and linearizable readers, and a key/value register, recorded for the linearizability
checker (support/linearizable.py) while history.py's workloads write.

- :class:`Readers`: threads that read, one request after another, at ``strong`` or
  ``linearizable``, either the SQL workloads' state (the keys of ``t``, the balances and the
  ledger ids, in one request: one snapshot) or the register (``GET reg`` on ``/kv/exec``, or
  on the RESP port after ``CLIENT READLEVEL``), each from the members in turn (replicas forward
  such reads to their primary) or from one node.
- :class:`Register`: one thread writing unique values to the key ``reg`` through the primary.

Every request keeps its invoke and complete times on the clock history.py uses
(``time.monotonic``); :func:`set_history`, :func:`bank_history` and :func:`register_history`
turn a run into the checker's operations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from litecluster.cli.localcluster import LocalNode
from litecluster.kv.reply import loads
from litecluster.kv.wire import ExecRequest, decode_reply, encode
from support.checker import Data
from support.history import ACCOUNTS, FAILED, INDETERMINATE, INITIAL_BALANCE, OK, History, Router
from support.linearizable import Operation

SQL_STATE = ("SELECT k FROM t", "SELECT id, balance FROM accounts ORDER BY id",
             "SELECT id FROM ledger")  # fmt: skip
REGISTER = b"reg"


@dataclass(frozen=True)
class Read:
    api: str
    """``sql`` (the state of the set and bank workloads), ``kv`` or ``resp`` (the
    register)."""
    level: str
    node: str
    invoke: float
    complete: float
    status: int
    """The HTTP status; 0 when no answer came (the read had no effect: it is dropped)."""
    keys: frozenset[str] = frozenset()
    balances: tuple[int, ...] = ()
    ledger: frozenset[str] = frozenset()
    value: str | None = None
    """The register's value (None: the key does not exist)."""

    @property
    def answered(self) -> bool:
        return self.status == 200


def _values(result: dict[str, Any]) -> list[list[Any]]:
    assert "error" not in result, result
    rows: list[list[Any]] = result.get("values", [])
    return rows


def read_sql(client: httpx.Client, node: LocalNode, level: str) -> Read:
    params: list[tuple[str, str | int | float | bool | None]] = [("q", q) for q in SQL_STATE]
    params.append(("level", level))
    invoke = time.monotonic()
    try:
        r = client.get(f"http://{node.http}/db/query", params=params)
    except httpx.HTTPError:
        return Read("sql", level, node.node_id, invoke, time.monotonic(), 0)
    complete = time.monotonic()
    if r.status_code != 200:
        return Read("sql", level, node.node_id, invoke, complete, r.status_code)
    t, accounts, ledger = (_values(x) for x in r.json()["results"])
    return Read("sql", level, node.node_id, invoke, complete, 200,
                keys=frozenset(row[0] for row in t),
                balances=tuple(row[1] for row in accounts),
                ledger=frozenset(row[0] for row in ledger))  # fmt: skip


def _kv(client: httpx.Client, node: LocalNode, command: list[bytes], level: str = ""
        ) -> tuple[httpx.Response, Any]:  # fmt: skip
    body = encode(ExecRequest([(0, command)], [], 0, [], False, level))
    r = client.post(f"http://{node.http}/kv/exec", content=body,
                    headers={"Content-Type": "application/msgpack"})  # fmt: skip
    if r.status_code != 200:
        return r, None
    replies = decode_reply(r.content).replies
    assert replies is not None
    return r, loads(replies[0])


def read_register(client: httpx.Client, node: LocalNode, level: str) -> Read:
    invoke = time.monotonic()
    try:
        r, reply = _kv(client, node, [b"GET", REGISTER], level)
    except httpx.HTTPError:
        return Read("kv", level, node.node_id, invoke, time.monotonic(), 0)
    complete = time.monotonic()
    if r.status_code != 200:
        return Read("kv", level, node.node_id, invoke, complete, r.status_code)
    assert reply is None or isinstance(reply, bytes), reply
    value = reply.decode() if isinstance(reply, bytes) else None
    return Read("kv", level, node.node_id, invoke, complete, 200, value=value)


class RespReads:
    """One reader thread's RESP connections, one per node, each at the reader's level. A
    connection that failed is dropped, never retried by redis-py (which would send the read
    again on a new connection, at the node's default level)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._conns: dict[str, redis.Redis] = {}

    def __call__(self, node: LocalNode, level: str) -> Read:
        invoke = time.monotonic()
        try:
            conn = self._conn(node, level)
            reply = conn.get(REGISTER)
        except redis.ResponseError:  # TRYAGAIN: refused, retryable
            return Read("resp", level, node.node_id, invoke, time.monotonic(), 503)
        except (redis.RedisError, OSError):
            self._drop(node)
            return Read("resp", level, node.node_id, invoke, time.monotonic(), 0)
        complete = time.monotonic()
        assert reply is None or isinstance(reply, bytes), reply
        value = reply.decode() if isinstance(reply, bytes) else None
        return Read("resp", level, node.node_id, invoke, complete, 200, value=value)

    def _conn(self, node: LocalNode, level: str) -> redis.Redis:
        conn = self._conns.get(node.node_id)
        if conn is None:
            addr = node.addr()
            assert addr is not None, node.node_id
            assert addr.get("resp"), "the node serves no RESP port"
            host, _, port = str(addr["resp"]).rpartition(":")
            conn = redis.Redis(host=host, port=int(port), password=node.token_file.read_text(),
                               socket_timeout=self.timeout, socket_connect_timeout=1,
                               retry=Retry(NoBackoff(), 0), single_connection_client=True)  # fmt: skip
            self._conns[node.node_id] = conn
            try:
                set_level = conn.execute_command("CLIENT", "READLEVEL", level)  # type: ignore[no-untyped-call]
                assert set_level == level.encode(), set_level
            except BaseException:
                self._drop(node)
                raise
        return conn

    def _drop(self, node: LocalNode) -> None:
        conn = self._conns.pop(node.node_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class Readers:
    """Reader threads until :meth:`finish`; ``reads`` holds every request, in no order."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.reads: list[Read] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.timeout = httpx.Timeout(timeout, connect=min(1.0, timeout))

    def start(self, api: str, level: str, targets: Callable[[], list[LocalNode]],
              until: float | None = None) -> threading.Thread:  # fmt: skip
        """A reader of ``api`` at ``level`` sending to each of ``targets()`` in turn (read
        again before each request), until ``until`` (monotonic) or :meth:`finish`."""
        t = threading.Thread(target=self._run, args=(api, level, targets, until), daemon=True,
                             name=f"read-{api}-{level}")  # fmt: skip
        self._threads.append(t)
        t.start()
        return t

    def _run(self, api: str, level: str, targets: Callable[[], list[LocalNode]],
             until: float | None) -> None:  # fmt: skip
        resp = RespReads(self.timeout.read or 2.0)

        def read(client: httpx.Client, node: LocalNode, level: str) -> Read:
            if api == "resp":
                return resp(node, level)
            return (read_sql if api == "sql" else read_register)(client, node, level)

        try:
            with httpx.Client(timeout=self.timeout) as client:
                for i in _count():
                    if self._halt.is_set() or (until is not None and time.monotonic() > until):
                        return
                    nodes = [n for n in targets() if n.running]
                    if not nodes:
                        self._halt.wait(0.05)
                        continue
                    got = read(client, nodes[i % len(nodes)], level)
                    with self._lock:
                        self.reads.append(got)
                    # Not a busy loop against a node that refuses, and a bounded load on the
                    # shared cores: reads of a few thousand rows each.
                    self._halt.wait(0.02 if got.answered else 0.05)
        except BaseException as exc:  # reported by finish()
            self.errors.append(exc)
        finally:
            resp.close()

    def finish(self) -> list[Read]:
        self._halt.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a reader is stuck"
        assert not self.errors, self.errors
        with self._lock:
            return list(self.reads)


def _count() -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1


@dataclass
class Write:
    value: str
    invoke: float
    complete: float = 0.0
    outcome: str = ""


class Register:
    """Writes ``reg`` = a new unique value, one request after another, to the primary the
    router names; each write classified as history.py classifies SQL writes."""

    def __init__(self, router: Router, timeout: float = 2.0) -> None:
        self.router = router
        self.writes: list[Write] = []
        self._halt = threading.Event()
        self.timeout = httpx.Timeout(timeout, connect=min(1.0, timeout))
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name="register")

    def __enter__(self) -> Register:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the register writer is stuck"
        assert not self.errors, self.errors

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=self.timeout) as client:
                for i in _count():
                    if self._halt.is_set():
                        return
                    node = self.router.primary
                    if node is None:
                        self.router.refresh()
                        self._halt.wait(0.05)
                        continue
                    w = Write(f"v{i}", time.monotonic())
                    w.outcome = self._send(client, node, w)
                    w.complete = time.monotonic()
                    self.writes.append(w)
                    if w.outcome != OK:
                        self.router.refresh()
                        self._halt.wait(0.02)
                    else:
                        self._halt.wait(0.01)
        except BaseException as exc:
            self.errors.append(exc)

    @staticmethod
    def _send(client: httpx.Client, node: LocalNode, w: Write) -> str:
        try:
            r, _ = _kv(client, node, [b"SET", REGISTER, w.value.encode()])
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return FAILED
        except httpx.HTTPError:
            return INDETERMINATE
        if r.status_code == 200:
            return OK
        try:
            body = r.json()
        except ValueError:
            return INDETERMINATE
        refused = r.status_code == 503 and body.get("retryable") is True
        return FAILED if refused and body.get("indeterminate") is not True else INDETERMINATE


# ---- the checker's operations --------------------------------------------------------------------


def _write_interval(outcome: str, invoke: float, complete: float) -> float | None:
    """An acknowledged write completed; an indeterminate one may take effect any time after
    its invoke (no completion)."""
    return complete if outcome == OK else None


def set_history(history: History, reads: list[Read], final: Data) -> list[Operation]:
    """The set workload: every add acknowledged, or indeterminate and present at the end (one
    absent at the end never took effect, unless a read saw it: then the checker finds the
    read that saw a lost write); the answered SQL reads."""
    ops = [
        Operation(("add", o.id), None, o.invoke, _write_interval(o.outcome, o.invoke, o.complete),
                  label=f"{o.node}")
        for o in history.ops
        if o.workload == "set" and (o.outcome == OK or (o.outcome == INDETERMINATE
                                                        and o.id in final.keys))
    ]  # fmt: skip
    ops += [Operation(("read",), r.keys, r.invoke, r.complete, label=f"{r.level}@{r.node}")
            for r in reads if r.api == "sql" and r.answered]  # fmt: skip
    return ops


def bank_history(history: History, reads: list[Read], final: Data) -> list[Operation]:
    """The bank workload as :func:`set_history` has the set's: transfers and balances."""
    ops = []
    for o in history.ops:
        if o.workload != "bank" or o.transfer is None:
            continue
        if o.outcome == OK or (o.outcome == INDETERMINATE and o.id in final.ledger):
            ops.append(Operation(("transfer", *o.transfer), None, o.invoke,
                                 _write_interval(o.outcome, o.invoke, o.complete),
                                 label=o.node))  # fmt: skip
    ops += [Operation(("read",), r.balances, r.invoke, r.complete, label=f"{r.level}@{r.node}")
            for r in reads if r.api == "sql" and r.answered]  # fmt: skip
    return ops


INITIAL_BALANCES = (INITIAL_BALANCE,) * ACCOUNTS


def register_history(writes: list[Write], reads: list[Read]) -> list[Operation]:
    """The register: acknowledged and indeterminate writes (the checker drops those nothing
    read), and the answered register reads."""
    ops = [Operation(("write", w.value), None, w.invoke,
                     _write_interval(w.outcome, w.invoke, w.complete))
           for w in writes if w.outcome in (OK, INDETERMINATE)]  # fmt: skip
    ops += [Operation(("read",), r.value, r.invoke, r.complete, label=f"{r.api}:{r.level}@{r.node}")
            for r in reads if r.api in ("kv", "resp") and r.answered]  # fmt: skip
    return ops


def stale_reads(history: History, reads: list[Read]) -> list[str]:
    """The simple rule, checked apart from the search: an answered read holds every write
    acknowledged before it began (keys of ``t`` and ledger rows)."""
    acked = sorted((o.complete, o.workload, o.id) for o in history.ok())
    out = []
    for r in reads:
        if r.api != "sql" or not r.answered:
            continue
        missing = [
            i for done, workload, i in acked
            if done < r.invoke and i not in (r.keys if workload == "set" else r.ledger)
        ]  # fmt: skip
        if missing:
            out.append(f"{r.level}@{r.node} [{r.invoke:.3f}, {r.complete:.3f}] misses "
                       f"{len(missing)} acknowledged writes, e.g. {missing[:3]}")  # fmt: skip
    return out

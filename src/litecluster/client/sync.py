"""The Python client: ``litecluster.connect(...)``.

Remote mode talks to any node over the SQL API (one pooled HTTP connection). Embedded-replica
mode (``replica=DIR``) also keeps a replica of the database inside the application process: a
background thread follows the primary's replication stream with the same code as a replica node
(``node.follower``), reads are served from the local file in microseconds, and writes go to the
primary over HTTP; after a write the client waits until its local copy has applied it, so the
application reads its own writes (``read_your_writes=False`` to skip the wait).

In embedded mode, read the local file only through this client (or from another process): two
SQLite libraries in one process break each other's locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from litecluster.client.errors import ClientError as ClientError  # re-exported (public)
from litecluster.client.errors import not_visible_error, response_error, transport_error
from litecluster.client.kv import KV
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, DatabaseError
from litecluster.engine.sqlite import connect as sqlite_connect
from litecluster.errors import NodeError
from litecluster.replication.tls import client_context

Params = tuple[Any, ...] | list[Any] | dict[str, Any]


@dataclass(frozen=True)
class ExecuteResult:
    last_insert_id: int | None
    rows_affected: int
    position: Position | None


@dataclass(slots=True)  # built on every local read: no frozen-dataclass setattr cost
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def statement(sql: str, params: Params | None) -> list[Any]:
    if params is None:
        return [sql]
    if isinstance(params, dict):
        return [sql, params]
    return [sql, *params]


def parse_response(resp: httpx.Response) -> dict[str, Any]:
    """The JSON of a SQL API response, or the ClientError it stands for."""
    try:
        data: dict[str, Any] = resp.json()
    except ValueError:
        raise ClientError(f"unexpected response {resp.status_code}", retryable=True) from None
    if resp.status_code != 200:
        raise response_error(resp.status_code, data)
    return data


def write_results(data: dict[str, Any]) -> tuple[list[dict[str, Any]], Position | None]:
    """Results and position of a write response; an SQL error in any result raises."""
    results: list[dict[str, Any]] = data["results"]
    pos = data.get("position")
    position = Position(pos["epoch"], pos["txid"], 0) if pos else None
    for r in results:
        if "error" in r:
            raise ClientError(r["error"], sql_error=r["error"], position=position)
    return results, position


def query_result(data: dict[str, Any]) -> QueryResult:
    r = data["results"][0]
    if "error" in r:
        raise ClientError(r["error"], sql_error=r["error"])
    return QueryResult(r.get("columns", []), [tuple(v) for v in r.get("values", [])])


class Client:
    """A connection to a litecluster cluster (see :func:`connect`)."""

    def __init__(
        self,
        url: str,
        *,
        db: str = "main",
        replica: str | os.PathLike[str] | None = None,
        primary: str | None = None,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca: str | None = None,
        read_your_writes: bool = True,
        timeout: float = 10.0,
        kv_db: str = "kv",
    ) -> None:
        self.url = url if "://" in url else f"http://{url}"
        self.db = db
        self.read_your_writes = read_your_writes
        self.timeout = timeout
        verify = client_context(ca, tls=True)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify)
        self.kv_db = kv_db
        self._embedded: _Embedded | None = None
        if replica is not None:
            if primary is None:
                raise NodeError("embedded mode needs primary= (the replication address)")
            if token is None and token_file is not None:
                token = Path(token_file).read_text().strip()
            if not token:
                raise NodeError("embedded mode needs the cluster token (token= or token_file=)")
            self._embedded = _Embedded(Path(replica), primary, token, ca, timeout)
        self.kv: KV = KV(self)
        """The key/value API (see litecluster.client.kv)."""

    # ---- writes --------------------------------------------------------------------------------

    def _post(self, path: str, body: list[Any], params: dict[str, str]) -> dict[str, Any]:
        try:
            resp = self._http.post(path, json=body, params={"db": self.db, **params})
        except httpx.HTTPError as exc:
            raise transport_error(self.url, exc, write=path != "/db/query") from None
        return parse_response(resp)

    def _write(
        self, body: list[Any], transaction: bool
    ) -> tuple[list[dict[str, Any]], Position | None]:
        data = self._post("/db/execute", body, {"transaction": "true"} if transaction else {})
        results, position = write_results(data)
        wait = position is not None and self._embedded is not None and self.read_your_writes
        if wait and not self._embedded.wait_for(self.db, position.txid, self.timeout):  # type: ignore[union-attr]
            raise not_visible_error(position=str(position))
        return results, position

    def execute(self, sql: str, params: Params | None = None) -> ExecuteResult:
        results, position = self._write([statement(sql, params)], transaction=False)
        r = results[0]
        return ExecuteResult(r.get("last_insert_id"), int(r.get("rows_affected", 0)), position)

    def executemany(self, sql: str, seq_of_params: list[Params]) -> ExecuteResult:
        """All in one request and one transaction: every row or none."""
        results, position = self._write([statement(sql, p) for p in seq_of_params], True)
        total = sum(int(r.get("rows_affected", 0)) for r in results)
        return ExecuteResult(
            results[-1].get("last_insert_id") if results else None, total, position
        )

    def transaction(self, statements: list[tuple[str, Params | None]]) -> Position | None:
        """Run several statements atomically on the primary."""
        return self._write([statement(s, p) for s, p in statements], True)[1]

    # ---- reads -----------------------------------------------------------------------------------

    def query(
        self, sql: str, params: Params | None = None, *, level: str | None = None
    ) -> QueryResult:
        """Embedded mode reads the local replica (unless ``level`` asks for the primary);
        remote mode asks the node (``level`` as in rqlite, default ``weak``)."""
        if self._embedded is not None and level in (None, "none"):
            return self._embedded.query(self.db, sql, params)
        params_q = {"level": level or "weak"}
        return query_result(self._post("/db/query", [statement(sql, params)], params_q))

    def close(self) -> None:
        self.kv.close()
        self._http.close()
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Embedded:
    """An in-process replica: the node's follower on a private event loop thread."""

    def __init__(self, directory: Path, primary: str, token: str, ca: str | None, timeout: float):
        from litecluster.replication.config import Address, NodeConfig
        from litecluster.replication.replica.follower import Follower
        from litecluster.replication.state import NodeState
        from litecluster.replication.stats import Stats

        config = NodeConfig(
            data_dir=directory, primary=Address.parse(primary),
            tls_ca=Path(ca) if ca else None, replica_durable=False,
        )  # fmt: skip
        self.state = NodeState(directory)
        self.state.adopt("", config.cluster_id, 0)
        self.follower = Follower(
            config, token, self.state, "embedded-" + secrets.token_hex(3), Stats()
        )
        self.follower.http = ""
        self.follower.open_databases()
        self._cond = threading.Condition()
        self.follower.on_apply.append(lambda db, pos: self._applied())
        self._conns: dict[str, Connection] = {}
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._task = self._loop.create_task(self.follower.run())
            started.set()
            # The follower's loop ends only when close() cancels it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self._loop.run_until_complete(self._task)

        self._thread = threading.Thread(target=run, name="litecluster-embedded", daemon=True)
        self._thread.start()
        started.wait()
        deadline = time.monotonic() + timeout
        while self.follower.upstream.state != "streaming":
            if time.monotonic() > deadline:
                self.close()
                raise ClientError(
                    f"embedded replica could not connect to {primary}: "
                    f"{self.follower.upstream.last_error or 'timeout'}", retryable=True,
                )  # fmt: skip
            time.sleep(0.01)

    def _applied(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def applied(self, db: str) -> int:
        rep = self.follower.replicas.get(db)
        return rep.position.txid if rep else 0

    def wait_for(self, db: str, txid: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.applied(db) >= txid, timeout)

    def query(self, db: str, sql: str, params: Params | None) -> QueryResult:
        conn = self._conns.get(db)
        if conn is None:
            path = self.follower.config.data_dir / "db" / f"{db}.db"
            if not path.exists():
                raise ClientError("no such database in the local replica", db=db)
            conn = self._conns[db] = sqlite_connect(path, readonly=True)
        try:
            cur = conn.execute(sql, params if params is not None else ())
            rows = cur.fetchall()  # already tuples (no row factory)
        except DatabaseError as exc:
            raise ClientError(str(exc), sql_error=str(exc)) from None
        return QueryResult([d[0] for d in cur.description or ()], rows)

    def close(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        for conn in self._conns.values():
            conn.close()
        self.follower.close()
        self.state.close()


def connect(url: str = "http://127.0.0.1:4002", **kwargs: Any) -> Client:
    """Connect to a cluster through any node's HTTP address (see :class:`Client`)."""
    return Client(url, **kwargs)

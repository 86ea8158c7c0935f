"""The Python client: ``litecluster.connect(...)``.

Remote mode talks to any node over the SQL API (one pooled HTTP connection). Embedded-replica
mode (``replica=DIR``) also keeps a replica of the database inside the application process: a
background thread follows the primary's replication stream with the same code as a replica node
(see :mod:`litecluster.client.embedded`), reads are served from the local file in microseconds, and writes go to the
primary over HTTP; after a write the client waits until its local copy has applied it, so the
application reads its own writes (``read_your_writes=False`` to skip the wait).

In embedded mode, read the local file only through this client (or from another process): two
SQLite libraries in one process break each other's locks.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from litecluster.client.embedded import EmbeddedReplica
from litecluster.client.errors import ClientError as ClientError  # re-exported (public)
from litecluster.client.errors import response_error, settle_error, transport_error
from litecluster.client.kv import KV
from litecluster.engine.position import Position
from litecluster.engine.sqlite import DatabaseError
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


def auth_headers(
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    auth: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The ``Authorization`` header a client sends: ``Bearer`` with the cluster ``token``
    (or the first token of ``token_file``), or HTTP Basic with ``auth`` = (user, password)
    of the nodes' users file; none when neither is given (a node with ``http_auth`` off)."""
    if auth is not None:
        raw = f"{auth[0]}:{auth[1]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    if token is None and token_file is not None:
        token = read_token(token_file)
    return {"Authorization": f"Bearer {token}"} if token else {}


def read_token(token_file: str | os.PathLike[str]) -> str:
    """The token a token file makes its holder present: its first token line."""
    for line in Path(token_file).read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    raise NodeError("the token file holds no token", file=str(token_file))


class Client:
    """A connection to a litecluster cluster (see :func:`connect`).

    Credentials: ``token`` / ``token_file`` (the cluster token, ``Authorization: Bearer``) or
    ``auth=(user, password)`` (HTTP Basic, a user of the nodes' users file); an embedded
    replica needs the token for the replication stream.
    """

    def __init__(
        self,
        url: str,
        *,
        db: str = "main",
        replica: str | os.PathLike[str] | None = None,
        primary: str | None = None,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        auth: tuple[str, str] | None = None,
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
        if token is None and token_file is not None:
            token = read_token(token_file)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify,
                                  headers=auth_headers(token, auth=auth))  # fmt: skip
        self.kv_db = kv_db
        self._embedded: EmbeddedReplica | None = None
        if replica is not None:
            if primary is None:
                raise NodeError("embedded mode needs primary= (the replication address)")
            if not token:
                raise NodeError("embedded mode needs the cluster token (token= or token_file=)")
            embedded = EmbeddedReplica(Path(replica), primary, token, ca)
            why = embedded.wait_streaming(timeout)
            if why is not None:
                embedded.close()
                raise ClientError(
                    f"embedded replica could not connect to {primary}: {why}", retryable=True
                )
            self._embedded = embedded
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
        if position is not None and self._embedded is not None and self.read_your_writes:
            # The token is (epoch, txid): another history's txid never satisfies it.
            got = self._embedded.wait_for(self.db, position, self.timeout)
            error = settle_error(got, position=f"{position.epoch}:{position.txid}")
            if error is not None:
                raise error
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
        self, sql: str, params: Params | None = None, *, level: str | None = None,
        min_position: Position | None = None,
    ) -> QueryResult:  # fmt: skip
        """Embedded mode reads the local replica (unless ``level`` asks for the primary);
        remote mode asks the node (``level`` as in rqlite, default ``weak``).
        ``min_position``: a write's position (epoch, txid) the read must see (the node, or
        the embedded replica, waits for it; a lost write raises with status 409)."""
        if self._embedded is not None and level in (None, "none"):
            if min_position is not None:
                got = self._embedded.wait_for(self.db, min_position, self.timeout)
                error = settle_error(got, position=f"{min_position.epoch}:{min_position.txid}")
                if error is not None:
                    raise error
            return self._local_query(sql, params)
        params_q = {"level": level or "weak"}
        if min_position is not None:
            params_q["min_position"] = f"{min_position.epoch}:{min_position.txid}"
        return query_result(self._post("/db/query", [statement(sql, params)], params_q))

    def _local_query(self, sql: str, params: Params | None) -> QueryResult:
        assert self._embedded is not None
        conn = self._embedded.connection(self.db)
        if conn is None:
            raise ClientError("no such database in the local replica", db=self.db)
        try:
            cur = conn.execute(sql, params if params is not None else ())
            rows = cur.fetchall()  # already tuples (no row factory)
        except DatabaseError as exc:
            raise ClientError(str(exc), sql_error=str(exc)) from None
        return QueryResult([d[0] for d in cur.description or ()], rows)

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


def connect(url: str = "http://127.0.0.1:4002", **kwargs: Any) -> Client:
    """Connect to a cluster through any node's HTTP address (see :class:`Client`)."""
    return Client(url, **kwargs)

"""The Python client: ``litecluster.connect(...)``.

Remote mode talks to any node over the SQL API (one pooled HTTP connection). Embedded-replica
mode (``replica=DIR``) also keeps a replica of the database inside the application process: a
background thread follows the cluster's current primary with the same code as a replica node
(see :mod:`litecluster.client.embedded`), reads are served from the local file in
microseconds, and writes go to the current primary over HTTP. A write returns once the primary
committed it; the next local read waits until the local copy holds it (session consistency),
so the application reads its own writes (``read_your_writes=False`` to skip the wait).

In embedded mode, read the local file only through this client (or from another process): two
SQLite libraries in one process break each other's locks.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from litecluster.client.embedded import EmbeddedReplica, Lag
from litecluster.client.errors import ClientError as ClientError  # re-exported (public)
from litecluster.client.errors import (
    LocalCopyBehindError as LocalCopyBehindError,  # re-exported (public)
)
from litecluster.client.errors import (
    response_error,
    settle_error,
    stale_read_error,
    transport_error,
)
from litecluster.client.join import base_url, join_settings
from litecluster.client.kv import KV
from litecluster.engine.position import Position
from litecluster.engine.sqlite import DatabaseError
from litecluster.errors import ConfigError, NodeError
from litecluster.replication.history import Reach
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

    ``url``: a node's HTTP address, or a list of them (seeds: nodes of any role; remote mode
    moves to the next one after a failure to connect). Credentials:
    ``token`` / ``token_file`` (the cluster token, ``Authorization: Bearer``) or
    ``auth=(user, password)`` (HTTP Basic, a user of the nodes' users file); an embedded
    replica presents the token on the replication stream, or without one the user (who then
    needs the ``join-read-only`` permission besides those of its requests).

    Embedded mode (``replica=DIR``, see docs/client.md) follows the cluster's current primary,
    found from the seeds, from ``etcd`` (endpoints of the cluster's etcd, which names the
    leader) or from ``primary`` (a replication address to try first); ``cluster`` is the
    nodes' ``--cluster`` name, ``node_id`` the replica's id (default: the one saved in DIR).
    Connect waits up to ``ready_timeout`` until the local copy holds what the primary held
    when it connected; with a populated DIR and no primary reachable it returns at once and
    serves the local copy (``status()`` says how stale).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        db: str = "main",
        replica: str | os.PathLike[str] | None = None,
        primary: str | None = None,
        etcd: str | Sequence[str] | None = None,
        cluster: str | None = None,
        node_id: str | None = None,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        auth: tuple[str, str] | None = None,
        ca: str | None = None,
        read_your_writes: bool = True,
        timeout: float = 10.0,
        ready_timeout: float = 30.0,
        kv_db: str = "kv",
    ) -> None:
        seeds = [url] if isinstance(url, str) else list(url)
        scheme = "https" if ca else "http"
        self._seeds = [base_url(seed, scheme) for seed in seeds]
        self.url = self._seeds[0] if self._seeds else ""
        self.db = db
        self.read_your_writes = read_your_writes
        self.timeout = timeout
        if token is None and token_file is not None:
            token = read_token(token_file)
        headers = auth_headers(token, auth=auth)
        join = None
        if replica is None and (etcd or primary or node_id or cluster):
            raise ConfigError("etcd=, primary=, node_id= and cluster= are settings of an "
                              "embedded replica", field="replica",
                              hint="pass replica=DIR, or leave them out")  # fmt: skip
        if replica is not None:  # checked first: its errors name connect()'s arguments
            join = join_settings(
                replica, seeds=seeds, etcd=etcd, primary=primary, cluster=cluster,
                token=token, ca=ca, headers=headers, node_id=node_id, auth=auth,
            )  # fmt: skip
        verify = client_context(ca, tls=True)
        self._http = httpx.Client(timeout=timeout, verify=verify, headers=headers)
        self.kv_db = kv_db
        self._session = threading.local()
        """Per thread (one request of the application), its last write to each database not
        yet seen applied locally (session consistency: its next local read waits for it)."""
        self._embedded: EmbeddedReplica | None = None
        self._scheme = scheme
        if join is not None:
            self._scheme = join.scheme
            embedded = EmbeddedReplica(join)
            self._embedded = embedded
            try:
                self.wait_ready(ready_timeout, allow_stale=embedded.populated)
            except BaseException:
                self._embedded = None
                embedded.close()
                self._http.close()
                raise
        self.kv: KV = KV(self)
        """The key/value API (see litecluster.client.kv)."""

    # ---- the embedded replica ------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0, *, allow_stale: bool = False) -> None:
        """Wait until the local copy holds what the primary held when this call began; raises
        a retryable ClientError after ``timeout``. ``allow_stale``: return as soon as no
        primary is reachable (the local copy is then served as it is)."""
        embedded = self._require_embedded()
        why = embedded.wait_ready(timeout, allow_stale=allow_stale)
        if why is not None and why != "stale":
            where = embedded.tracker.found.listen if embedded.tracker.found else "no primary"
            raise ClientError(
                f"embedded replica not ready after {timeout:g} s ({where}): {why}",
                retryable=True, hint="check that a node of the cluster is reachable (url=, "
                "etcd= or primary=), or raise ready_timeout for a large database",
            )  # fmt: skip

    @property
    def lag(self) -> Lag:
        """How far the local copy is behind the primary (records and seconds)."""
        return self._require_embedded().lag

    @property
    def ready(self) -> bool:
        """The local copy streams from a primary and holds all it announced."""
        embedded = self._require_embedded()
        return embedded.streaming and embedded.lag.records == 0

    def status(self) -> dict[str, Any]:
        """The embedded replica's state: its primary, lag, staleness and databases."""
        return {**self._require_embedded().status(), "ready": self.ready}

    def _require_embedded(self) -> EmbeddedReplica:
        if self._embedded is None:
            raise ClientError("this client has no embedded replica (connect with replica=DIR)")
        return self._embedded

    def _base(self, *, write: bool, cls: type[ClientError] = ClientError) -> str:
        """The node a request goes to: in embedded mode the current primary (a write with
        none known fails, retryable), else the first node given."""
        embedded = self._embedded
        if embedded is None:
            return self.url
        http = embedded.tracker.primary_http
        if http:
            return base_url(http, self._scheme)
        if write or not self.url:
            why = embedded.unreachable() or "searching"
            raise cls(f"no primary is known right now ({why})", retryable=True,
                      hint="retry: the embedded replica keeps looking for the primary")  # fmt: skip
        return self.url

    @property
    def _pending(self) -> dict[str, Position]:
        """This thread's writes not yet seen applied locally, by database."""
        pending: dict[str, Position] | None = getattr(self._session, "pending", None)
        if pending is None:
            pending = self._session.pending = {}
        return pending

    def _unreachable(self, base: str, exc: httpx.HTTPError) -> None:
        """A request could not connect to ``base``: remote mode moves on to the next node
        given for the next request (the error is raised all the same: the client never
        retries by itself)."""
        connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if connect and self._embedded is None and base == self.url and len(self._seeds) > 1:
            i = self._seeds.index(base) if base in self._seeds else -1
            self.url = self._seeds[(i + 1) % len(self._seeds)]

    def _note(self, db: str, position: Position | None) -> None:
        if position is not None and self._embedded is not None and self.read_your_writes:
            self._pending[db] = position

    def _settle(self, db: str, cls: type[ClientError] = ClientError) -> None:
        """Before a local read of ``db``: wait for this thread's last write to it."""
        pending = self._pending
        position = pending.get(db)
        if position is None or self._embedded is None:
            return
        got = self._embedded.wait_for(db, position, self.timeout)
        if got is Reach.NOT_YET:
            raise stale_read_error(cls, position=f"{position.epoch}:{position.txid}")
        del pending[db]
        error = settle_error(got, cls, position=f"{position.epoch}:{position.txid}")
        if error is not None:
            raise error

    # ---- writes --------------------------------------------------------------------------------

    def _post(self, path: str, body: list[Any], params: dict[str, str]) -> dict[str, Any]:
        write = path != "/db/query"
        base = self._base(write=write)
        try:
            resp = self._http.post(base + path, json=body, params={"db": self.db, **params})
        except httpx.HTTPError as exc:
            self._unreachable(base, exc)
            raise transport_error(base, exc, write=write) from None
        return parse_response(resp)

    def _write(
        self, body: list[Any], transaction: bool
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """A committed write returns at once; the embedded replica's next local read waits
        for its position (see :meth:`_settle`)."""
        data = self._post("/db/execute", body, {"transaction": "true"} if transaction else {})
        results, position = write_results(data)
        self._note(self.db, position)
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
            self._settle(self.db)
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


def connect(url: str | Sequence[str] = "http://127.0.0.1:4002", **kwargs: Any) -> Client:
    """Connect to a cluster through any node's HTTP address, or a list of them (see
    :class:`Client`)."""
    return Client(url, **kwargs)

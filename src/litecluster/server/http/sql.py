"""The rqlite-compatible SQL API on the node's HTTP port.

``POST /db/execute`` writes, ``GET|POST /db/query`` reads, ``POST /db/request`` does either,
``GET /readyz`` and ``GET /nodes``; see docs/http-api.md for the mapping of rqlite's
consistency levels onto litecluster's read model. Writes run on the primary's writer (group
commit); a replica forwards them to the primary and answers once it has applied the write
itself, so the client can read it back from the same node. SQL errors come back as rqlite does
(HTTP 200, ``{"error": ...}`` in the statement's result); malformed requests get HTTP 400 and
change nothing.

The routes serve from a :class:`SqlDoor`: the node's data (:class:`~litecluster.server.ports.Local`),
its status, and the operator's cluster operations, never the node itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, connect
from litecluster.errors import (
    AuthError,
    ExcludedByNewerHistoryError,
    LiteclusterError,
    NotPrimaryError,
    PermissionDeniedError,
    RequestError,
)
from litecluster.replication.history import Reach
from litecluster.replication.primary.sandbox import Sandbox, sandbox
from litecluster.replication.primary.sqlexec import (
    Result,
    ResultLimits,
    Statement,
    expand_statements,
    needs_expanding,
    parse_statements,
    run_statement,
    statement_json,
)
from litecluster.server.credentials import Credentials
from litecluster.server.drain import Drain
from litecluster.server.forward import (
    NOT_VISIBLE_WARNING,
    Forwarder,
    refusal,
    transport_failure,
)
from litecluster.server.http import queued, strictjson
from litecluster.server.http.errorbody import error_response
from litecluster.server.http.freshness import check_freshness, freshness_limit
from litecluster.server.http.params import database, flag
from litecluster.server.http.perms import identity, needs
from litecluster.server.ports import (
    ClusterOps,
    Local,
    StatusSource,
    Switchover,
)
from litecluster.server.strongread import STRONG_LEVELS, check_level, under_lease


@dataclass(frozen=True)
class SqlDoor:
    """What the SQL API serves from."""

    local: Local
    status: StatusSource
    cluster: ClusterOps
    switchover: Switchover | None
    """None on a static cluster (no etcd): ``/switchover`` is refused."""
    max_request_bytes: int
    max_statements: int
    statement_timeout: float
    """Seconds a read request may run."""
    sql_allow_pragma: frozenset[str] = frozenset()
    """PRAGMAs a request may run besides the sandbox's read-only ones."""
    limits: ResultLimits = field(default_factory=ResultLimits)
    """The most one statement's result may hold."""
    queue: Drain | None = None
    """The node's write queue and its drain (``?queue``; None: refused)."""


DOOR: web.AppKey[SqlDoor] = web.AppKey("sql-door")
FORWARD: web.AppKey[Forwarder] = web.AppKey("sql-forward")
LEVELS = ("none", "weak", "linearizable", "strong", "auto")
ERROR_KEYS = frozenset({"error", "retryable", "indeterminate", "committed", "hint"})
"""The keys of every error body of the HTTP port (:func:`_error`)."""
_local = threading.local()


_error = error_response


def pretty_dumps(request: web.Request) -> Any:
    indent = 4 if flag(request, "pretty") else None
    return lambda obj: strictjson.dumps(obj, indent=indent)


def _respond(request: web.Request, results: list[Result], started: float,
             position: Position | None) -> web.Response:  # fmt: skip
    timings, assoc = flag(request, "timings"), flag(request, "associative")
    blob_array = flag(request, "blob_array")
    body: dict[str, Any] = {
        "results": [
            r.as_json(associative=assoc, timings=timings, blob_array=blob_array) for r in results
        ]
    }
    if position is not None:
        # The acknowledging node is named so that clients and the fault suite's checker can
        # tell which primary acknowledged a write even when a replica forwarded it.
        node_id = request.app[DOOR].local.node_id
        body["position"] = {"epoch": position.epoch, "txid": position.txid, "node": node_id}
    if timings:
        body["time"] = time.perf_counter() - started
    return web.json_response(body, dumps=pretty_dumps(request))


async def _statements(request: web.Request) -> list[Statement]:
    door = request.app[DOOR]
    if request.method in ("GET", "HEAD"):  # HEAD: the GET route's, answered without a body
        q = request.query.getall("q", [])
        if not q:
            raise RequestError("missing q parameter")
        return [Statement(sql) for sql in q]
    raw = await request.read()  # over max_request_bytes: 413 (body.py)
    if request.content_type == "text/plain":
        # rqlite takes raw SQL too: the body is one statement string (split like any other).
        try:
            sql = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError("a text/plain body must be UTF-8 SQL", offset=exc.start) from None
        if not sql.strip():
            raise RequestError("the request has no statements")
        return [Statement(sql)]
    return parse_statements(strictjson.loads(raw), max_statements=door.max_statements)


async def _expanded(request: web.Request, statements: list[Statement]) -> list[Statement]:
    """``statements`` with each string of several statements split into them (on the node
    that runs them; a replica forwards the request as it came)."""
    if not needs_expanding(statements):
        return statements
    limit = request.app[DOOR].max_statements
    # Linear in the request's size, up to max_request_bytes: not on the event loop.
    return await asyncio.to_thread(expand_statements, statements, max_statements=limit)


def _min_position(request: web.Request) -> Position | None:
    """The read-your-writes token: ``EPOCH:TXID`` (a write's position), judged against this
    node's epoch history; a bare ``TXID`` (or epoch 0) names no epoch and is compared by
    txid alone (docs/http-api.md)."""
    raw = request.query.get("min_position") or request.headers.get("X-Litecluster-Position")
    if not raw:
        return None
    epoch, sep, txid = raw.partition(":")
    if not sep:
        epoch, txid = "0", epoch
    if not (epoch.isdigit() and txid.isdigit()):
        raise RequestError("min_position must be EPOCH:TXID", value=raw)
    return Position(int(epoch), int(txid))


# ---- reads -------------------------------------------------------------------------------------


def _read_conn(path: str, allow_pragmas: frozenset[str]) -> tuple[Connection, Sandbox]:
    """One read-only connection per thread and file (reads run in the default executor), in
    the sandbox: it cannot write, attach or change its own state for later requests."""
    conns: dict[str, tuple[Connection, Sandbox]] = getattr(_local, "conns", None) or {}
    _local.conns = conns
    got = conns.get(path)
    if got is None:
        conn = connect(path, readonly=True)
        got = conns[path] = conn, sandbox(conn, read_only=True, allow_pragmas=allow_pragmas)
    return got


def _run_reads(
    path: str, statements: list[Statement], timeout: float, allow_pragmas: frozenset[str],
    limits: ResultLimits,
) -> list[Result]:  # fmt: skip
    conn, box = _read_conn(path, allow_pragmas)
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    conn.execute("BEGIN")  # one snapshot for every statement of the request
    try:
        out = []
        string_failed = False
        for stmt in statements:
            if stmt.continues and string_failed:
                continue  # a failure ends the rest of its string, as in the writer
            res = run_statement(conn, stmt, box, limits, types_from=path)
            if res.code == "SQLITE_INTERRUPT":
                res.error = f"statement timeout ({timeout:g} s)"
            elif res.error and "readonly" in res.error:
                res.error = f"{res.error} (a query request cannot write; use /db/execute)"
            string_failed = res.error is not None
            out.append(res)
        return out
    finally:
        conn.set_progress_handler(None, 0)
        if conn.in_transaction:
            conn.execute("ROLLBACK")


@needs("query")
async def query(request: web.Request) -> web.Response:
    started = time.perf_counter()
    door = request.app[DOOR]
    local = door.local
    db, statements = database(request), await _statements(request)
    level = request.query.get("level", "weak")
    check_level(level, LEVELS)
    if level == "auto":  # rqlite: a local read on a read-only node, weak on the others
        level = "none" if local.primary is None else "weak"
    fresh = freshness_limit(request.query)  # checked on every node: a typo is a 400
    if local.primary is None and level != "none":
        _redirect(request)
        return await _forward(request, statements, wait=False)
    statements = await _expanded(request, statements)
    if local.primary is None and fresh is not None:
        check_freshness(local.upstream, fresh, strict=flag(request, "freshness_strict"), db=db,
                        applied=local.applied_txid(db), raw=request.query["freshness"])  # fmt: skip
    want = _min_position(request)
    reach = Reach.REACHED if want is None else await local.wait_applied(db, want)
    if reach is Reach.EXCLUDED:
        assert want is not None
        raise ExcludedByNewerHistoryError(
            "this node's history excludes the position: a newer primary took over below its "
            "txid, so the write it names is lost", min_position=f"{want.epoch}:{want.txid}",
        )  # fmt: skip
    if reach is Reach.NOT_YET:
        assert want is not None
        # 503, not 504: the port's one status for "not now, retry" (and a client that only
        # knows rqlite treats every other 5xx as a failure of the node).
        return _error(503, "timed out waiting for this node to apply the position",
                      values={"min_position": f"{want.epoch}:{want.txid}",
                              "applied": local.applied_txid(db)},
                      retryable=True, hint="retry, or read from the primary (level=weak)")  # fmt: skip
    path = local.db_path(db)
    if not path.exists():
        return _error(
            404,
            "no such database",
            {"db": db},
            hint="databases are created by their first write (/db/execute?db=NAME)",
        )

    async def read() -> list[Result]:
        return await asyncio.to_thread(
            _run_reads, str(path), statements, door.statement_timeout, door.sql_allow_pragma,
            door.limits,
        )  # fmt: skip

    if level not in STRONG_LEVELS:
        return _respond(request, await read(), started, None)
    # A request that waited while the process was paused finds the lease expired before the
    # reads; one paused while they ran finds it expired after (strongread.py).
    return _respond(request, await under_lease(local, level, db, read), started, None)


# ---- writes ------------------------------------------------------------------------------------


@needs("execute")
async def execute(request: web.Request) -> web.Response:
    started = time.perf_counter()
    primary = request.app[DOOR].local.primary
    db, statements = database(request), await _statements(request)
    if queued.wants_queue(request) and request.path == "/db/execute":
        return await queued.enqueue(request, db, statements)
    if primary is None:
        _redirect(request)
        return await _forward(request, statements, wait=True)
    statements = await _expanded(request, statements)
    outcome = await primary.write(db, statements, transaction=flag(request, "transaction"))
    return _respond(request, outcome.results, started, outcome.position)


@needs("execute", "query")
async def unified(request: web.Request) -> web.Response:
    """``/db/request``: on the primary every statement runs in the writer (reads included, so
    they see every acknowledged write); a replica forwards."""
    return await execute(request)


def _redirect(request: web.Request) -> None:
    """rqlite's ``?redirect``: a replica answers 301 to the primary's HTTP address instead of
    forwarding (the client then talks to the primary itself)."""
    if not flag(request, "redirect"):
        return
    upstream = request.app[DOOR].local.upstream
    if upstream is None or not upstream.http:
        raise NotPrimaryError("this node knows no primary to redirect to",
                              hint="retry in a moment, or ask another node")  # fmt: skip
    scheme = "https" if request.secure else "http"
    raise web.HTTPMovedPermanently(f"{scheme}://{upstream.http}{request.path_qs}")


async def _forward(
    request: web.Request, statements: list[Statement], *, wait: bool
) -> web.Response:
    """Send the request to the primary and pass its answer on as is (rqlite's bodies, its
    status); a write (``wait``) is answered once this node has applied it, or with
    ``warning`` when the wait ended first. Failures raise the forwarder's errors, which
    :func:`request_errors` turns into a 503 with their flags."""
    forwarder = request.app[FORWARD]
    body = [statement_json(s) for s in statements]
    got = await forwarder.post(
        request.path,
        write=wait,
        json=body,
        params=request.query,
        authorization=identity(request).forward,
    )
    try:
        data = json.loads(got.body)
    except ValueError as exc:  # the primary got the request: a write may have been applied
        raise transport_failure(exc, write=wait, primary=got.primary) from None
    if got.status != 200 and not (isinstance(data, dict) and data.keys() >= ERROR_KEYS):
        # Not this port's error body (a proxy's, a foreign peer's): mapped onto the error
        # tree, its own flags kept, so that the client still gets every key.
        raise refusal(got.status, got.body)
    if wait and got.status == 200 and isinstance(data, dict) and "position" in data:
        # Answer once this node has the write too: the client reads its write here.
        pos = data["position"]
        visible = await forwarder.settle(
            database(request), Position(int(pos["epoch"]), int(pos["txid"]))
        )
        if not visible:
            data["warning"] = NOT_VISIBLE_WARNING
    return web.json_response(data, status=got.status, dumps=pretty_dumps(request))


_STATUS: dict[type[LiteclusterError], int] = {
    PermissionDeniedError: 403, AuthError: 401, RequestError: 400,
    ExcludedByNewerHistoryError: 409,  # known lost: neither a bad request nor a node that cannot serve
}  # fmt: skip
"""The HTTP status of an error class (the first that matches, in this order); others 503."""


@web.middleware
async def request_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except LiteclusterError as exc:
        # The class's properties decide the flags, so a client acts on the error's meaning
        # (retry, check first, already committed) whatever its place in the tree.
        context = dict(exc.context)
        if exc.retryable or exc.indeterminate:
            # Where to retry, or where to read back whether the write took effect.
            context["primary"] = request.app[DOOR].local.known_primary() or "unknown"
        status = _STATUS.get(type(exc)) or next(
            (code for cls, code in _STATUS.items() if isinstance(exc, cls)), 503
        )
        return _error(status, exc.message, context, retryable=exc.retryable,
                      indeterminate=exc.indeterminate, committed=exc.committed,
                      hint=exc.hint)  # fmt: skip


def add_routes(
    app: web.Application, door: SqlDoor, forward: Forwarder, users: Credentials | None = None
) -> None:
    """The SQL API's routes on ``app``, serving from ``door``; a replica sends writes (and
    weak or stronger reads) to its primary through ``forward``; ``users`` (None:
    authentication off) check queued entries' users again on the primary."""
    app[DOOR] = door
    app[FORWARD] = forward
    # A batch holds entries of up to max_request_bytes each (their JSON may grow a little).
    batch = 4 * door.max_request_bytes + (1 << 16)
    queued.add_routes(app, queued.QueueDoor(door.local, door.queue, door.max_statements, batch,
                                            users))  # fmt: skip
    app.router.add_post("/db/execute", execute)
    app.router.add_get("/db/query", query)
    app.router.add_post("/db/query", query)
    app.router.add_post("/db/request", unified)

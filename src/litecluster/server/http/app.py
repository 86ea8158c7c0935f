"""The node's HTTP port: ``/status`` (JSON), ``/metrics`` (Prometheus), ``/health``, the SQL
API (:mod:`.sql`) and ``/kv/exec``.

Handlers never let an exception reach the client as a traceback: errors are JSON with a
message.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from litecluster.errors import KvRequestError
from litecluster.server.credentials import Credentials
from litecluster.server.forward import Forwarder
from litecluster.server.http import auth, backup, body, cluster, cors, protocol, strictjson
from litecluster.server.http import sql as sqlapi
from litecluster.server.http.errorbody import error_response
from litecluster.server.http.perms import identity, needs
from litecluster.server.metrics import render
from litecluster.server.ports import KvExec, StatusSource

log = logging.getLogger("litecluster.http")

STATUS: web.AppKey[StatusSource] = web.AppKey("status")
KV: web.AppKey[KvExec] = web.AppKey("kv")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=strictjson.dumps(data, indent=1), status=status, content_type="application/json"
    )


@needs("status")
async def status(request: web.Request) -> web.Response:
    return _json(request.app[STATUS].status())


@needs("ready", probe=True)
async def health(request: web.Request) -> web.Response:
    source = request.app[STATUS]
    ok = source.ready
    return _json({"ok": ok, "role": source.role}, 200 if ok else 503)


@needs("status")
async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[REGISTRY])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


_MAY_WRITE = ("/db/execute", "/db/request", "/kv/exec")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of the port is one JSON body with ``error``, ``retryable``,
    ``indeterminate``, ``committed`` and ``hint``: aiohttp's own (unknown route, wrong method,
    body too large) and, never with a traceback, a failure nobody foresaw."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, {"path": request.path},
                              hint="see docs/http-api.md for the routes and their limits")  # fmt: skip
    except Exception as exc:
        log.exception("http.error path=%s", request.path)
        # Nothing tells whether a write got as far as its commit: its outcome is unknown.
        write = request.method == "POST" and request.path in _MAY_WRITE
        return error_response(
            503, f"internal error ({type(exc).__name__}); see the node's log (event http.error)",
            {"path": request.path}, indeterminate=write,
            hint="read to check whether the write took effect before retrying it" if write
            else "see the node's log; the request may fail the same way again",
        )  # fmt: skip


async def json_refusals(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp's own refusals that never pass the middlewares (an unknown ``Expect`` is
    checked before them) get the port's one JSON error body too."""
    if isinstance(response, web.HTTPException) and response.status >= 400:
        detail = response.text if response.text and response.text != response.reason else ""
        error = error_response(response.status, response.reason, {"path": request.path},
                               values={"detail": detail} if detail else None,
                               hint="see docs/http-api.md for the routes and their limits")  # fmt: skip
        assert isinstance(error.body, bytes)
        response.body = error.body
        response.content_type = "application/json"
        # Set from the old body before this hook runs (aiohttp's Response._start).
        response.headers[hdrs.CONTENT_LENGTH] = str(len(error.body))


def make_app(
    sql: sqlapi.SqlDoor,
    kv: KvExec,
    registry: CollectorRegistry,
    forward: Forwarder,
    *,
    backups: backup.Backups,
    allow_origins: tuple[str, ...] = (),
    credentials: Credentials | None = None,
    open_probes: bool = True,
) -> web.Application:
    """The HTTP app: status from ``sql.status``, the SQL API from ``sql``, ``/kv/exec`` from
    ``kv``, ``/metrics`` from ``registry``; ``forward`` is what a replica's forward step
    reads; browser pages of ``allow_origins`` may call it (CORS). Every route needs
    ``credentials`` (None: authentication off), except the probes while ``open_probes``."""
    app = web.Application(
        middlewares=[errors, sqlapi.request_errors],
        client_max_size=sql.max_request_bytes,
    )
    app[STATUS] = sql.status
    app[KV] = kv
    app[REGISTRY] = registry
    app.router.add_get("/status", status)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    sqlapi.add_routes(app, sql, forward, credentials)
    cluster.add_routes(app)
    backup.add_routes(app, backups)
    app.router.add_post("/kv/exec", kv_exec)
    app.on_response_prepare.append(json_refusals)
    auth.install(app, credentials, open_probes=open_probes)
    # After authentication: a caller without credentials learns nothing of the body rules.
    app.middlewares.append(body.limits)
    cors.install(app, allow_origins)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner that serves ``app``: no access log (the node logs events), request bodies
    never decompressed (:mod:`.body`), aiohttp's refusals of bad HTTP logged as one line
    (:mod:`.protocol`)."""
    return web.AppRunner(app, access_log=None, handle_signals=False, logger=protocol.log,
                         auto_decompress=body.AUTO_DECOMPRESS)  # fmt: skip


@needs("query", "execute", any_of=True)
async def kv_exec(request: web.Request) -> web.Response:
    """Key/value commands over HTTP (msgpack in and out; see KvStore.serve)."""
    body = await request.read()
    try:
        raw = await request.app[KV].serve(body, identity(request))
    except KvRequestError as exc:
        return error_response(400, exc.message, exc.context, hint=exc.hint)
    # Other errors reach sqlapi.request_errors, which tells retryable from indeterminate.
    return web.Response(body=raw, content_type="application/msgpack")

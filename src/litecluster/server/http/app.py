"""The node's HTTP port: ``/status`` (JSON), ``/metrics`` (Prometheus), ``/health``, the SQL
API (:mod:`.sql`) and ``/kv/exec``.

Handlers never let an exception reach the client as a traceback: errors are JSON with a
message.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from litecluster.errors import KvRequestError
from litecluster.server.forward import Forwarder
from litecluster.server.http import sql as sqlapi
from litecluster.server.metrics import render
from litecluster.server.ports import KvExec, StatusSource

log = logging.getLogger("litecluster.http")

STATUS: web.AppKey[StatusSource] = web.AppKey("status")
KV: web.AppKey[KvExec] = web.AppKey("kv")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=1), status=status, content_type="application/json"
    )


async def status(request: web.Request) -> web.Response:
    return _json(request.app[STATUS].status())


async def health(request: web.Request) -> web.Response:
    source = request.app[STATUS]
    ok = source.ready
    return _json({"ok": ok, "role": source.role}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[REGISTRY])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("http.error path=%s", request.path)
        return _json({"error": type(exc).__name__, "message": str(exc)}, 500)


def make_app(
    sql: sqlapi.SqlDoor, kv: KvExec, registry: CollectorRegistry, forward: Forwarder
) -> web.Application:
    """The HTTP app: status from ``sql.status``, the SQL API from ``sql``, ``/kv/exec`` from
    ``kv``, ``/metrics`` from ``registry``; ``forward`` is what a replica's forward step
    reads."""
    app = web.Application(
        middlewares=[errors, sqlapi.request_errors], client_max_size=sql.max_request_bytes
    )
    app[STATUS] = sql.status
    app[KV] = kv
    app[REGISTRY] = registry
    app.router.add_get("/status", status)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    sqlapi.add_routes(app, sql, forward)
    app.router.add_post("/kv/exec", kv_exec)
    return app


async def kv_exec(request: web.Request) -> web.Response:
    """Key/value commands over HTTP (msgpack in and out; see KvStore.serve)."""
    body = await request.read()
    try:
        raw = await request.app[KV].serve(body)
    except KvRequestError as exc:
        return _json({"error": exc.message, "hint": exc.hint}, 400)
    # Other errors reach sqlapi.request_errors, which tells retryable from indeterminate.
    return web.Response(body=raw, content_type="application/msgpack")

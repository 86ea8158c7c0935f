"""The node's HTTP port: ``/status`` (JSON), ``/metrics`` (Prometheus) and ``/health``.

The SQL API of the write-path issue joins these routes. Handlers never let an exception reach
the client as a traceback: errors are JSON with a message.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from litecluster.server.http import sql as sqlapi
from litecluster.server.kvstore import KvRequestError
from litecluster.server.metrics import registry_for, render

if TYPE_CHECKING:
    from litecluster.server.node import Node

log = logging.getLogger("litecluster.http")

NODE_KEY: web.AppKey[Node] = web.AppKey("node")


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=1), status=status, content_type="application/json"
    )


async def status(request: web.Request) -> web.Response:
    return _json(request.app[NODE_KEY].status())


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    ok = node.ready
    return _json({"ok": ok, "role": node.role}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app["registry"])
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


def make_app(node: Node) -> web.Application:
    app = web.Application(
        middlewares=[errors, sqlapi.request_errors], client_max_size=node.config.max_request_bytes
    )
    app[NODE_KEY] = node
    app["registry"] = registry_for(node)
    app.router.add_get("/status", status)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    sqlapi.add_routes(app, node)
    app.router.add_post("/kv/exec", kv_exec)
    return app


async def kv_exec(request: web.Request) -> web.Response:
    """Key/value commands over HTTP (msgpack in and out; see KvStore.serve)."""
    node: Node = request.app[NODE_KEY]
    body = await request.read()
    try:
        raw = await node.kv.serve(body)
    except KvRequestError as exc:
        return _json({"error": exc.message, "hint": exc.hint}, 400)
    # Other errors reach sqlapi.request_errors, which tells retryable from indeterminate.
    return web.Response(body=raw, content_type="application/msgpack")

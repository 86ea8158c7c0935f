"""CORS on the HTTP port (``http_allow_origin``, rqlite's ``-http-allow-origin``): browser
pages served from an allowed origin may call the API.

Every response to a request from an allowed origin carries ``Access-Control-Allow-Origin``
(``*`` when any origin is allowed, else the origin itself with ``Vary: Origin``, so a cache
never hands one origin's answer to another), errors included, so the page can read why it
failed. A page sends its credentials as an ``Authorization`` header it sets itself, which the
preflight allows; ``Access-Control-Allow-Credentials`` is never sent, so a browser never
attaches credentials it keeps on its own (cookies, a remembered Basic login) to a cross-origin
request. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here,
before authentication: browsers never send credentials with one. A preflight from an origin
not allowed gets 403.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from litecluster.server.http.errorbody import error_response

ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, X-Litecluster-Position"
MAX_AGE = "600"
"""Seconds a browser may cache a preflight's answer."""


class Cors:
    """The allowed origins (``*``: any) and the two hooks that serve them."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins if o != "*")

    def allows(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def middleware(self) -> Middleware:
        @web.middleware
        async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
            origin = request.headers.get(hdrs.ORIGIN)
            method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
            if request.method != hdrs.METH_OPTIONS or origin is None or method is None:
                return await handler(request)
            if not self.allows(origin):
                return error_response(403, "origin not allowed", {"origin": origin},
                                      hint="add it to the node's http_allow_origin")  # fmt: skip
            return web.Response(status=204, headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOW_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOW_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE,
            })  # fmt: skip

        return preflight

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return
        if self.any:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
        elif origin in self.origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)


def install(app: web.Application, origins: tuple[str, ...]) -> None:
    """Serve CORS for ``origins`` on ``app`` (nothing when empty). Its preflight middleware
    goes first, ahead of every other (authentication included); call before the app starts."""
    if not origins:
        return
    cors = Cors(origins)
    app.middlewares.insert(0, cors.middleware())
    app.on_response_prepare.append(cors.on_prepare)

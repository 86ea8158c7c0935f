"""Authentication and permissions on the HTTP port (docs/security.md).

Every route declares the permission it needs with :func:`needs`, on its handler, next to its
code; the :class:`Guard` middleware checks it before the handler runs. A request without
credentials, or with wrong ones, gets 401 with a ``WWW-Authenticate`` header naming both
schemes (``Bearer`` for a cluster token, ``Basic`` for a user of the users file); a user
lacking the permission gets 403. A route that declares nothing is refused to everyone (403):
a new route cannot be served unprotected by forgetting its declaration, and the route walk of
the tests names it. ``/readyz`` and ``/health`` are probes: open to anyone while
``http_open_probes`` is on (load balancers rarely hold credentials).

An unknown path or a wrong method is answered 404/405 only to authenticated callers; others
get 401, so the routes cannot be listed without credentials.

The caller's identity is kept on the request (:data:`IDENTITY`), for handlers that check
more (``/kv/exec``: ``execute`` for a write) and for a replica that forwards the request: the
forward carries the caller's credentials and the primary checks them again.
"""

from __future__ import annotations

import base64
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from litecluster.errors import AuthError, PermissionDeniedError
from litecluster.server.credentials import Credentials, Identity
from litecluster.server.http.errorbody import error_response
from litecluster.server.http.perms import IDENTITY, permission_of

log = logging.getLogger("litecluster.http.auth")

CHALLENGES = ('Bearer realm="litecluster"', 'Basic realm="litecluster", charset="UTF-8"')


def _unauthorized(request: web.Request, why: str) -> web.Response:
    resp = error_response(401, why, {"path": request.path}, hint=AuthError.default_hint)
    for challenge in CHALLENGES:
        resp.headers.add(hdrs.WWW_AUTHENTICATE, challenge)
    return resp


def forbidden(request: web.Request, who: Identity, need: str) -> web.Response:
    return error_response(
        403, f"user {who.name} lacks the {need} permission",
        {"path": request.path, "user": who.name, "permission": need},
        hint=PermissionDeniedError.default_hint,
    )  # fmt: skip


async def authenticate(credentials: Credentials, header: str) -> Identity | None:
    """The identity an ``Authorization`` header value stands for (None: none)."""
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return credentials.bearer(value)
    if scheme == "basic" and value:
        try:
            raw = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 inside
            return None
        username, sep, password = raw.partition(":")
        if not sep or not username:
            return None
        return await credentials.user(username, password)
    return None


class Guard:
    """The middleware that authenticates every request and checks its route's permission;
    ``credentials`` None: authentication is off (``http_auth = false``)."""

    def __init__(self, credentials: Credentials | None, *, open_probes: bool = True) -> None:
        self.credentials = credentials
        self.open_probes = open_probes

    def middleware(self) -> Middleware:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._check(request, handler)

        return guard

    async def _check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        need = permission_of(request.match_info.handler)
        if self.credentials is None:
            return await handler(request)
        if need is not None and need.probe and self.open_probes:
            return await handler(request)
        header = request.headers.get(hdrs.AUTHORIZATION)
        if not header:
            return _unauthorized(request, "authentication required")
        who = await authenticate(self.credentials, header)
        if who is None:
            log.info("http.auth_refused path=%s peer=%s", request.path, request.remote)
            return _unauthorized(request, "wrong credentials")
        request[IDENTITY] = who
        if request.match_info.http_exception is not None:
            return await handler(request)  # 404 or 405, for an authenticated caller
        if need is None:
            return error_response(403, "this route declares no permission: refused to everyone",
                                  {"path": request.path}, hint="a bug: report it")  # fmt: skip
        if not need.allows(who):
            return forbidden(request, who, str(need))
        return await handler(request)


def install(app: web.Application, credentials: Credentials | None, *, open_probes: bool) -> None:
    """Guard every route of ``app`` (after the error middlewares, so that the guard's own
    failures are JSON too, and before any handler)."""
    app.middlewares.append(Guard(credentials, open_probes=open_probes).middleware())

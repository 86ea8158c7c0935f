"""Request bodies on the HTTP port: bounded, uncompressed, and refused cleanly when broken.

* A body over ``max_request_bytes`` gets 413, before a byte of it is read when its
  ``Content-Length`` says so, else as soon as reading passes the limit (chunked bodies).
* A compressed body (any ``Content-Encoding`` but ``identity``) gets 415. The node's runner
  turns aiohttp's decompression off (:data:`AUTO_DECOMPRESS`), so no request body is ever
  inflated: a few KiB of gzip cannot become gigabytes, and a body that is not what its
  encoding says is never an error of the node. No client of the API compresses its requests.
* A body the client cuts short or frames badly (it closes before ``Content-Length`` bytes, a
  broken chunk) gets 400: the client's fault, not a server error with a traceback. A client
  that hangs up before its body arrived gets the same (nobody reads it) and one log line.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from litecluster.server.http.errorbody import error_response

log = logging.getLogger("litecluster.http")

AUTO_DECOMPRESS = False
"""The app's ``web.AppRunner(auto_decompress=...)``, for the rules above to hold."""


def _too_large(request: web.Request) -> web.Response:
    return error_response(413, "request too large", values={"limit": request.client_max_size},
                          hint="send fewer or smaller statements per request")  # fmt: skip


@web.middleware
async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if request.body_exists and encoding not in ("", "identity"):
        return error_response(
            415, "compressed request bodies are not accepted",
            {"content_encoding": request.headers[hdrs.CONTENT_ENCODING]},
            hint="send the body uncompressed (no Content-Encoding header)",
        )  # fmt: skip
    length = request.content_length
    if length is not None and length > request.client_max_size:
        return _too_large(request)
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _too_large(request)
    except web.RequestPayloadError as exc:
        return _cut_short(" ".join(str(exc).split()))
    except ConnectionResetError:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            raise  # not this client's connection: a failure of the node's own
        log.info("http.client_gone path=%s", request.path)
        return _cut_short("the client closed the connection")


def _cut_short(detail: str) -> web.Response:
    return error_response(400, "the request body is incomplete or badly framed",
                          {"detail": detail},
                          hint="send the whole body its Content-Length announces")  # fmt: skip

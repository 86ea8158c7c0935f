"""The log of aiohttp's HTTP layer: what it refuses before a request reaches the app.

A request that is not HTTP (a bad request line, header bytes no parser accepts, a length
that does not frame the body, a body that is not what its ``Content-Encoding`` says) gets
aiohttp's own 400 and never reaches the app's middlewares. aiohttp logs each at error level
with a traceback, so anyone on the network could fill the node's log with tracebacks of
their own mistakes. :data:`log` turns them into one ``http.bad_request`` line; errors of the
server itself keep their traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("litecluster.http.protocol")
"""The logger to give aiohttp's request handler (``web.AppRunner(app, logger=log)``)."""

_MAX_DETAIL = 200


class _ClientFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            # aiohttp's messages span lines (the offending bytes, a caret under them).
            detail = " ".join(str(exc.message).split())[:_MAX_DETAIL]
            record.msg = "http.bad_request remote=%s status=%d error=%r"
            record.args = (remote, exc.code, detail)
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info, record.exc_text = None, None
            # Made at error level: the level the node logs at decides whether it shows.
            return log.isEnabledFor(logging.INFO)
        return True


log.addFilter(_ClientFaults())

"""Query parameters the HTTP routes share: rqlite's boolean flags and the database name."""

from __future__ import annotations

from aiohttp import web

from litecluster.errors import RequestError
from litecluster.replication.config import DB_NAME


def flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter as rqlite reads them: present and not false/0/no."""
    value = request.query.get(name)
    return value is not None and value.lower() not in ("false", "0", "no")


def database(request: web.Request) -> str:
    """``?db=NAME`` (default ``main``); a name that is not one is a 400 (quoted up to 80
    characters)."""
    name = request.query.get("db", "main")
    if not DB_NAME.match(name):
        raise RequestError("bad database name", db=name[:80])
    return name

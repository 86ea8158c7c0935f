"""``GET /db/backup``: a database as a SQLite file (or a SQL dump), from any node.

``?db=NAME`` (default ``main``), ``?fmt=sql`` for a dump instead of the file, ``?compress``
for gzip. The answer names the position it stands at in ``X-Litecluster-Position``
(``EPOCH:TXID``) and, for a file, its database checksum in ``X-Litecluster-Checksum``. The
backup is written off the event loop into a temporary file beside the database (so the read
view is held only as long as the copy takes, not as long as a slow client reads) and then
sent; it is removed once sent or when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from aiohttp import web

from litecluster.engine.backup import BackupInfo, Format, write_backup
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection
from litecluster.errors import RequestError
from litecluster.server.http.errorbody import error_response
from litecluster.server.http.params import database, flag
from litecluster.server.http.perms import needs

_SEND = 1 << 20


class Backups(Protocol):
    """Frozen views of the node's databases (the node fits)."""

    def frozen(self, db: str) -> AbstractContextManager[tuple[Position, Connection]] | None:
        """A read view of ``db`` at a known position; None when this node holds no such
        database. Raises UnavailableError between roles."""

    def db_path(self, db: str) -> Path:
        """This node's file of ``db`` (the temporary backup goes beside it)."""


BACKUPS: web.AppKey[Backups] = web.AppKey("backups")


def add_routes(app: web.Application, backups: Backups) -> None:
    app[BACKUPS] = backups
    app.router.add_get("/db/backup", backup)


def _query(request: web.Request) -> tuple[str, Format, bool]:
    db = database(request)
    fmt = request.query.get("fmt", "sqlite") or "sqlite"
    if fmt not in ("sqlite", "binary", "sql"):
        raise RequestError("fmt must be sql (a dump) or absent (the SQLite file)", value=fmt[:80])
    return db, "sql" if fmt == "sql" else "sqlite", flag(request, "compress")


@needs("backup")
async def backup(request: web.Request) -> web.StreamResponse:
    db, fmt, compress = _query(request)
    backups = request.app[BACKUPS]
    view = backups.frozen(db)
    if view is None:
        return error_response(404, "no such database", {"db": db},
                              hint="databases are created by their first write")  # fmt: skip
    tmp = backups.db_path(db).with_name(f".{db}.backup-{secrets.token_hex(6)}.tmp")
    try:
        info = await asyncio.to_thread(_write, tmp, view, fmt, compress)
        return await _send(request, tmp, info, db, fmt, compress)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write(
    tmp: Path,
    view: AbstractContextManager[tuple[Position, Connection]],
    fmt: Format,
    compress: bool,
) -> BackupInfo:
    with open(tmp, "wb") as out:
        return write_backup(lambda: view, out, fmt=fmt, compress=compress)


async def _send(
    request: web.Request, tmp: Path, info: BackupInfo, db: str, fmt: Format, compress: bool
) -> web.StreamResponse:
    name = f"{db}.{'sql' if fmt == 'sql' else 'db'}{'.gz' if compress else ''}"
    resp = web.StreamResponse(headers={
        "Content-Type": "application/gzip" if compress
        else "application/sql" if fmt == "sql" else "application/vnd.sqlite3",
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Litecluster-Position": f"{info.position.epoch}:{info.position.txid}",
    })  # fmt: skip
    if fmt == "sqlite":
        resp.headers["X-Litecluster-Checksum"] = f"{info.position.checksum:016x}"
    resp.content_length = os.path.getsize(tmp)
    await resp.prepare(request)
    with open(tmp, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, _SEND):
            await resp.write(chunk)
    await resp.write_eof()
    return resp

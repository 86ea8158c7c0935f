"""Queued writes on the HTTP port: ``POST /db/execute?queue[&wait[&timeout=D]]`` and the
primary's ``POST /db/queue/apply``.

``?queue`` answers ``{"results": [], "sequence_number": N}`` as rqlite does, but only once the
request is durable in this node's queue (:mod:`litecluster.server.queue`); the drain
(:mod:`litecluster.server.drain`) applies it later, exactly once, on whichever node is primary
then. ``&wait`` answers once the entry left the queue (applied, or failed as SQL), within
``timeout`` (a Go duration, default 30s); past it the answer is 504 with the
``sequence_number``, flagged ``indeterminate``: the write is queued and will be applied, so it
must not be sent again.

``/db/queue/apply`` is how a replica's drain hands a batch to the primary: ``{"origin",
"done_below", "entries": [{"seq", "db", "statements", "transaction"}]}`` in, ``{"outcomes":
[{"seq", "state", "error", "position"}]}`` out. A cluster token holder (a node) names its
queue as ``origin``; a user's origin is put under ``user/NAME/``, so no user can mark another
node's entries applied.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from litecluster.errors import NotPrimaryError, QueueWaitTimeoutError, RequestError
from litecluster.replication.primary.sqlexec import Statement, statement_json
from litecluster.server.credentials import ANYONE, TOKEN_HOLDER, Credentials, Identity
from litecluster.server.drain import APPLY_PATH, FAILED, Drain, Outcome, apply_entries
from litecluster.server.http.errorbody import error_response
from litecluster.server.http.freshness import go_duration
from litecluster.server.http.params import flag
from litecluster.server.http.perms import identity, needs
from litecluster.server.ports import Local

DEFAULT_WAIT = 30.0


@dataclass(frozen=True)
class QueueDoor:
    local: Local
    drain: Drain | None
    """None: this node keeps no queue (``?queue`` is refused)."""
    max_statements: int
    max_batch_bytes: int
    """The largest body ``/db/queue/apply`` reads (a batch of entries)."""
    users: Credentials | None = None
    """This node's users, to check a queued entry's user again on the primary (None:
    authentication is off)."""


QUEUE: web.AppKey[QueueDoor] = web.AppKey("sql-queue")


def wants_queue(request: web.Request) -> bool:
    return flag(request, "queue")


async def enqueue(request: web.Request, db: str, statements: list[Statement]) -> web.Response:
    """Queue ``statements`` durably and answer with their ``sequence_number``."""
    door = request.app[QUEUE]
    drain = door.drain
    if drain is None:
        raise RequestError("this node keeps no write queue", hint="write without ?queue")
    wait = flag(request, "wait")
    timeout = _timeout(request.query.get("timeout", "30s")) if wait else 0.0
    body = [statement_json(s) for s in statements]
    transaction = flag(request, "transaction")
    who = identity(request)
    user = "" if who in (TOKEN_HOLDER, ANYONE) else who.name
    seq = await asyncio.to_thread(drain.queue.add, db, body, transaction, user)
    drain.kick()
    out: dict[str, Any] = {"results": [], "sequence_number": seq}
    if wait:
        got = await drain.wait(seq, timeout or DEFAULT_WAIT)
        if got is None:
            err = QueueWaitTimeoutError("the write is queued on this node but was not applied "
                                        "within the timeout")  # fmt: skip
            return error_response(504, err.message, indeterminate=True, hint=err.hint,
                                  values={"sequence_number": seq, "timeout": timeout or DEFAULT_WAIT})  # fmt: skip
        if got.state == FAILED and not got.position:
            # Not applied at all (and never retried): its statements could not run, or its
            # user may not write on the primary. Sending it again fails the same way.
            return error_response(403 if got.denied else 400, got.error,
                                  values={"sequence_number": seq},
                                  hint="the queued write was not applied")  # fmt: skip
        if got.position is not None:
            pos = got.position
            out["position"] = {"epoch": pos.epoch, "txid": pos.txid}
    return web.json_response(out)


def _timeout(raw: str) -> float:
    try:
        return go_duration(raw)
    except RequestError:
        raise RequestError("timeout must be a duration such as 500ms, 5s or 1m", value=raw[:64],
                           hint="use Go's duration syntax, as rqlite does") from None  # fmt: skip


@needs("execute")
async def apply(request: web.Request) -> web.Response:
    """A replica's batch of queued entries, applied on this primary."""
    door = request.app[QUEUE]
    primary = door.local.primary
    if primary is None:
        raise NotPrimaryError("this node is not the primary: queued entries go to the primary")
    raw = await _body(request, door.max_batch_bytes)
    try:
        body = json.loads(raw)
        origin, done_below, entries = body["origin"], int(body["done_below"]), body["entries"]
        if not isinstance(origin, str) or not origin or not isinstance(entries, list):
            raise TypeError("origin must be a string and entries a list")
        for e in entries:
            if not (isinstance(e["seq"], int) and isinstance(e["db"], str)
                    and isinstance(e["statements"], list)):  # fmt: skip
                raise TypeError("an entry needs seq, db and statements")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise RequestError(f"malformed queued batch: {exc}") from None
    who = identity(request)
    if who not in (TOKEN_HOLDER, ANYONE):
        origin = f"user/{who.name}/{origin}"
    refused = {int(e["seq"]): why for e in entries
               if (why := _refusal(door.users, who, str(e.get("user") or "")))}  # fmt: skip
    allowed = [e for e in entries if int(e["seq"]) not in refused]
    applied = await apply_entries(primary, origin, done_below, allowed,
                                  max_statements=door.max_statements)  # fmt: skip
    by_seq = {o.seq: o for o in applied}
    outcomes = [by_seq.get(int(e["seq"]))
                or Outcome(int(e["seq"]), FAILED, refused[int(e["seq"])], denied=True)
                for e in entries]  # fmt: skip
    return web.json_response({"outcomes": [o.as_json() for o in outcomes]})


def _refusal(users: Credentials | None, sender: Identity, user: str) -> str:
    """Why the entry ``user`` queued on another node may not be applied here ("": it may).
    A replica checked the user's permission when it queued the entry; the primary checks it
    again against its own users file, as it does for a forwarded write."""
    if users is None or not user or sender not in (TOKEN_HOLDER, ANYONE):
        return ""  # authentication off, a token holder's entry, or a user sending its own
    known = users.users.get(user)
    if known is None or not Identity(user, known.perms).may("execute"):
        return f"not applied: user {user} lacks the execute permission on the primary"
    return ""


async def _body(request: web.Request, limit: int) -> bytes:
    """The body, up to ``limit`` (a batch may exceed the port's ``max_request_bytes``, which
    bounds one client request, not the entries of many)."""
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise RequestError("queued batch too large", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def add_routes(app: web.Application, door: QueueDoor) -> None:
    app[QUEUE] = door
    app.router.add_post(APPLY_PATH, apply)

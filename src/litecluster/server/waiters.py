"""Waiting, without polling, until a database here has reached a position (read-your-writes).

A position is (epoch, txid), judged by the node's current role against its epoch history
(:meth:`~litecluster.replication.history.EpochHistory.reach`): a wait ends when it is reached,
or as soon as a newer epoch excludes it (never satisfied by another history's txid N).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from litecluster.engine.position import Position
from litecluster.replication.history import Reach

RECHECK = 0.5
"""Seconds between re-checks of a waiting position: a change no notify announces (a role
taken, a snapshot installed in another history) is seen within this much."""


class Role(Protocol):
    """The node's primary or replica role: where a position stands against its copy."""

    def reach(self, db: str, position: Position) -> Reach: ...


class Waiters:
    """The waits of one node; ``role()`` is its current role (None between roles: nothing is
    reached), ``timeout`` bounds each wait in seconds."""

    def __init__(self, role: Callable[[], Role | None], timeout: float) -> None:
        self._role = role
        self._timeout = timeout
        self._waiting: dict[str, list[tuple[Position, asyncio.Future[Reach]]]] = defaultdict(list)

    def reach(self, db: str, position: Position) -> Reach:
        role = self._role()
        if role is None:
            return Reach.NOT_YET
        return role.reach(db, position)

    def notify(self, db: str, *_: object) -> None:
        """Called on the event loop whenever ``db`` has applied (or made durable) a record or
        installed a snapshot (the role's own arguments after ``db`` are ignored)."""
        waiting = self._waiting.get(db)
        if not waiting:
            return
        keep = []
        for position, fut in waiting:
            if fut.done():
                continue
            got = self.reach(db, position)
            if got is Reach.NOT_YET:
                keep.append((position, fut))
            else:
                fut.set_result(got)
        self._waiting[db] = keep

    def notify_all(self) -> None:
        """This node changed roles: every wait may be reached, or excluded, now."""
        for db in list(self._waiting):
            self.notify(db)

    async def wait(self, db: str, position: Position) -> Reach:
        """What :meth:`reach` says once it is no longer :attr:`Reach.NOT_YET`, or after the
        timeout (then possibly still NOT_YET)."""
        got = self.reach(db, position)
        if got is not Reach.NOT_YET:
            return got
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reach] = loop.create_future()
        self._waiting[db].append((position, fut))
        deadline = loop.time() + self._timeout
        try:
            while (left := deadline - loop.time()) > 0:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                # cancellation that arrives as the future completes (the request then hangs on).
                try:
                    async with asyncio.timeout(min(left, RECHECK)):
                        return await asyncio.shield(fut)
                except TimeoutError:
                    got = self.reach(db, position)
                    if got is not Reach.NOT_YET:
                        return got
            return self.reach(db, position)
        finally:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting[db].remove((position, fut))

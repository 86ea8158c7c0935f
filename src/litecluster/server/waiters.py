"""Waiting, without polling, until a database here has reached a position (read-your-writes).

A position is (epoch, txid), judged against the node's epoch history
(:meth:`~litecluster.replication.history.EpochHistory.reach`): a wait ends when it is reached,
or as soon as a newer epoch excludes it (never satisfied by another history's txid N).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

from litecluster.replication.history import Reach

RECHECK = 0.5
"""Seconds between re-checks of a waiting position: a change no notify announces (a role
taken, a snapshot installed in another history) is seen within this much."""


class Waiters:
    def __init__(self) -> None:
        self._waiting: dict[str, list[tuple[Callable[[], Reach], asyncio.Future[Reach]]]] = (
            defaultdict(list)
        )

    def notify(self, db: str) -> None:
        """Called on the event loop whenever ``db`` has applied (or made durable) a record,
        installed a snapshot, or this node changed roles."""
        waiting = self._waiting.get(db)
        if not waiting:
            return
        keep = []
        for check, fut in waiting:
            if fut.done():
                continue
            got = check()
            if got is Reach.NOT_YET:
                keep.append((check, fut))
            else:
                fut.set_result(got)
        self._waiting[db] = keep

    def notify_all(self) -> None:
        for db in list(self._waiting):
            self.notify(db)

    async def wait(self, db: str, check: Callable[[], Reach], timeout: float) -> Reach:
        """What ``check()`` says once it is no longer :attr:`Reach.NOT_YET`, or after
        ``timeout`` seconds (then possibly still NOT_YET)."""
        got = check()
        if got is not Reach.NOT_YET:
            return got
        fut: asyncio.Future[Reach] = asyncio.get_running_loop().create_future()
        self._waiting[db].append((check, fut))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(left, RECHECK))
                except TimeoutError:
                    got = check()
                    if got is not Reach.NOT_YET:
                        return got
            return check()
        finally:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting[db].remove((check, fut))

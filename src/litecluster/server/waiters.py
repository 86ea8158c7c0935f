"""Waiting, without polling, until a database here has reached a txid (read-your-writes)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable


class Waiters:
    def __init__(self) -> None:
        self._waiting: dict[str, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)

    def notify(self, db: str, txid: int) -> None:
        """Called on the event loop whenever ``db`` has applied (or made durable) ``txid``."""
        waiting = self._waiting.get(db)
        if not waiting:
            return
        keep = []
        for target, fut in waiting:
            if target <= txid:
                if not fut.done():
                    fut.set_result(None)
            elif not fut.done():
                keep.append((target, fut))
        self._waiting[db] = keep

    async def wait(self, db: str, txid: int, current: Callable[[], int], timeout: float) -> bool:
        """True once ``current()`` reaches ``txid``; False after ``timeout`` seconds."""
        if current() >= txid:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[db].append((txid, fut))
        if current() >= txid:  # reached between the check and the registration
            return True
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return current() >= txid
        return True

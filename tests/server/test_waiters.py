"""Waiting for a position (epoch, txid) on a database (server/waiters.py), judged by a real epoch
history: reached, excluded as soon as a newer epoch takes over below it, or timed out."""

from __future__ import annotations

import asyncio
from pathlib import Path

from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord
from litecluster.replication.history import EpochHistory, Reach
from litecluster.server import waiters as waiters_module
from litecluster.server.waiters import Waiters


class Copy:
    """A replica's copy of database ``main`` (the node's role): its epoch history and its last
    applied txid."""

    def __init__(self, tmp_path: Path) -> None:
        self.history = EpochHistory.load(tmp_path / "h.json")
        self.head = 0

    def apply(self, epoch: int, first: int, last: int) -> None:
        self.history.before_apply(
            [TxRecord(epoch, t, 4096, 1, 0, 0, 0, ()) for t in range(first, last + 1)]
        )
        self.head = last

    def reach(self, db: str, pos: Position) -> Reach:
        assert db == "main"
        return self.history.reach(pos, self.head)


def test_a_wait_ends_when_the_position_is_applied_or_when_a_newer_epoch_excludes_it(
    tmp_path: Path,
) -> None:
    copy = Copy(tmp_path)
    copy.apply(1, 1, 50)

    async def run() -> None:
        w = Waiters(lambda: copy, 30)
        mine = asyncio.create_task(w.wait("main", Position(1, 52)))
        lost = asyncio.create_task(w.wait("main", Position(1, 55)))
        await asyncio.sleep(0)
        copy.apply(1, 51, 52)  # the old primary's 51 and 52 arrive, then it is deposed
        w.notify("main", Position(1, 52))
        assert await mine is Reach.REACHED
        assert not lost.done()
        copy.apply(2, 53, 60)  # the new primary's own txids 53..60
        w.notify("main")
        assert await lost is Reach.EXCLUDED, "its txid 55 is not the old primary's 55"
        assert w._waiting["main"] == []

    asyncio.run(run())


def test_a_wait_times_out_not_yet_and_leaves_nothing_behind(tmp_path: Path) -> None:
    copy = Copy(tmp_path)
    copy.apply(1, 1, 5)

    async def run() -> None:
        w = Waiters(lambda: copy, 0.05)
        assert await w.wait("main", Position(1, 9)) is Reach.NOT_YET
        assert w._waiting["main"] == []
        assert await w.wait("main", Position(1, 5)) is Reach.REACHED
        between_roles = Waiters(lambda: None, 0.05)
        assert await between_roles.wait("main", Position(1, 5)) is Reach.NOT_YET

    asyncio.run(run())


def test_a_change_no_notify_announced_is_seen_by_the_recheck(tmp_path: Path) -> None:
    copy = Copy(tmp_path)
    copy.apply(1, 1, 5)
    waiters_module.RECHECK, saved = 0.01, waiters_module.RECHECK
    try:

        async def run() -> None:
            w = Waiters(lambda: copy, 30)
            task = asyncio.create_task(w.wait("main", Position(1, 7)))
            await asyncio.sleep(0)
            copy.apply(1, 6, 7)  # applied, but nobody called notify (a role change, say)
            assert await asyncio.wait_for(task, 5) is Reach.REACHED

        asyncio.run(run())
    finally:
        waiters_module.RECHECK = saved

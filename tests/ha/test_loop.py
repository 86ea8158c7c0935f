"""The HA loop against its two narrow interfaces only: a real static leadership and a node
that records the role changes asked of it (no server, no etcd)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from litecluster.ha.leadership import Leadership
from litecluster.ha.loop import SETTLE_POLLS, HaLoop
from litecluster.ha.roles import AckedSession, HaSettings, HeadDb, PrimaryRole
from litecluster.ha.static import StaticLeadership
from litecluster.replication.config import Address

OTHER = Address("127.0.0.1", 4999)


class RecordingRoles:
    """A node between roles whose files hold ``positions``; records each transition."""

    def __init__(self, positions: dict[str, int]) -> None:
        self.node_id = "me"
        self.listen = Address("127.0.0.1", 4001)
        self.http = Address("127.0.0.1", 4002)
        self.primary: PrimaryRole | None = None
        self._positions = positions
        self.positions_known = False
        self.calls: list[tuple[object, ...]] = []
        self.changed = asyncio.Event()

    def upstream_heads(self) -> Mapping[str, int] | None:
        return None

    def positions(self) -> dict[str, int]:
        return dict(self._positions) if self.positions_known else {}

    async def load_resting(self) -> None:
        self.positions_known = True

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        self.changed.set()

    async def become_replica(self, primary: Address) -> None:
        self._record("replica", primary)

    async def promote(self, epoch: int, sync_members: set[str] | None) -> None:
        self._record("promote", epoch, sync_members)

    async def end_role(self) -> None:
        self._record("end_role")


async def _until(roles: RecordingRoles, loop: HaLoop, kind: str) -> None:
    """Run the loop until ``roles`` was asked for a ``kind`` transition (bounded)."""
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(10):
            while not any(c[0] == kind for c in roles.calls):
                roles.changed.clear()
                await roles.changed.wait()
    finally:
        task.cancel()


def test_the_named_node_is_promoted_at_the_leadership_epoch_with_the_sync_floor() -> None:
    async def main() -> None:
        roles = RecordingRoles({"main": 42})
        leadership: Leadership = StaticLeadership("me", None, epoch=7)
        loop = HaLoop(leadership, roles, HaSettings(lease_ttl=3, sync_replicas=1))
        await _until(roles, loop, "promote")
        assert roles.calls == [("end_role",), ("promote", 7, set())]
        assert leadership.valid()
        published = await leadership.read_sync()
        assert published is not None
        assert (published.epoch, published.k, published.floor) == (7, 1, {"main": 42})
        members = await leadership.members()
        assert [m.record["positions"] for m in members] == [{"main": 42}]
        assert loop.status()["epoch"] == 7

    asyncio.run(main())


def test_a_node_told_of_another_primary_follows_it_once() -> None:
    async def main() -> None:
        roles = RecordingRoles({"main": 1})
        loop = HaLoop(StaticLeadership("me", OTHER, epoch=1), roles, HaSettings(lease_ttl=3))
        await _until(roles, loop, "replica")
        await loop.step()
        await loop.step()
        assert roles.calls == [("replica", OTHER)]

    asyncio.run(main())


def test_a_primary_that_loses_the_leadership_follows_the_new_leader() -> None:
    async def main() -> None:
        roles = RecordingRoles({"main": 5})
        leadership = StaticLeadership("me", None, epoch=2)
        loop = HaLoop(leadership, roles, HaSettings(lease_ttl=3))
        await _until(roles, loop, "promote")
        roles.primary = _IdlePrimary()
        leadership.follow(OTHER)  # an operator points this node at another primary
        await loop.step()
        assert roles.calls[-1] == ("replica", OTHER)

    asyncio.run(main())


class CountingStatic(StaticLeadership):
    """Tells each publication of the member record (one per look while leaderless)."""

    published = 0
    event: asyncio.Event | None = None

    async def publish_member(self, record: Mapping[str, Any]) -> int:
        self.published += 1
        if self.event is not None:
            self.event.set()
        return await super().publish_member(record)


def test_a_nofailover_node_never_takes_the_leadership() -> None:
    async def main() -> None:
        roles = RecordingRoles({"main": 5})
        leadership = CountingStatic("me", None, epoch=2)
        leadership.event = asyncio.Event()
        loop = HaLoop(leadership, roles, HaSettings(lease_ttl=3, nofailover=True))
        task = asyncio.create_task(loop.run())
        try:
            # More looks than the settling ones: an eligible node would have run by now.
            async with asyncio.timeout(10):
                while leadership.published < SETTLE_POLLS + 4:
                    leadership.event.clear()
                    await leadership.event.wait()
        finally:
            task.cancel()
        assert roles.calls == []
        assert not leadership.valid()
        (record,) = await leadership.members()
        assert record.record["eligible"] is False

    asyncio.run(main())


class _IdlePrimary:
    """A primary with no replica connected."""

    def __init__(self) -> None:
        self.sessions_changed = asyncio.Event()
        self.sync_members: set[str] | None = None
        self.paused = False
        self.sessions: dict[str, AckedSession] = {}
        self.dbs: dict[str, HeadDb] = {}

    def counted_sessions(self) -> list[AckedSession]:
        return []

    async def drain_writers(self) -> None:
        pass

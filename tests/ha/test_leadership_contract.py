"""The contract of ``ha/leadership.py``, one set of test bodies run against every
implementation: the static configuration and a real etcd.

Each backend is a small harness that builds participants of one cluster and does what only an
outsider can do to it: elect a new leader the way that cluster gets one (etcd: the next
participant acquires; static: an operator promotes it and points the others at it) and cut a
participant off from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import pytest

from litecluster.ha.etcd import EtcdClient
from litecluster.ha.etcd_leadership import EtcdLeadership
from litecluster.ha.leadership import Leadership, StoreUnavailableError
from litecluster.ha.static import StaticLeadership
from litecluster.ha.syncstate import SyncState
from litecluster.replication.config import Address
from support.etcd_server import EtcdServer

_clusters = itertools.count()


def _listen(name: str) -> Address:
    return Address("127.0.0.1", 4000 + sum(map(ord, name)))


def _http(name: str) -> str:
    return f"127.0.0.1:{5000 + sum(map(ord, name))}"


class Cluster(Protocol):
    shared_store: bool
    """Whether the participants share a store (static: none, so none to lose either)."""

    def participant(self, name: str) -> Leadership: ...

    async def elect(self, name: str) -> bool:
        """Make ``name`` the next leader the way this cluster gets one; True when it holds."""

    def cut_off(self, name: str) -> None: ...

    def advance(self, seconds: float) -> None:
        """Move the participants' clock forward (their safe deadlines are on it)."""

    async def close(self) -> None: ...


class StaticCluster:
    """The configuration names the first participant as primary, the others follow it."""

    shared_store = False

    def __init__(self) -> None:
        self.members: dict[str, StaticLeadership] = {}

    def participant(self, name: str) -> Leadership:
        named = next(iter(self.members), None)
        p = StaticLeadership(name, _listen(named) if named else None, epoch=1)
        p.identify(_listen(name), _http(name))
        self.members[name] = p
        return p

    async def elect(self, name: str) -> bool:
        # What ``litecluster promote --follow ...`` does: an epoch above every one seen.
        chosen = self.members[name]
        chosen.take_over(max(p.epoch for p in self.members.values()) + 1)
        for other, p in self.members.items():
            if other != name:
                p.follow(_listen(name))
        return await chosen.acquire()

    def cut_off(self, name: str) -> None:
        pass

    def advance(self, seconds: float) -> None:
        pass

    async def close(self) -> None:
        for p in self.members.values():
            await p.close()


class EtcdCluster:
    shared_store = True

    def __init__(self, etcd: EtcdServer) -> None:
        self.etcd = etcd
        self.name = f"contract-{next(_clusters)}-{time.time_ns()}"
        self.members: dict[str, EtcdLeadership] = {}
        self.offset = 0.0

    def _clock(self) -> float:
        return time.monotonic() + self.offset

    def participant(self, name: str) -> Leadership:
        p = EtcdLeadership(
            EtcdClient([self.etcd.url], timeout=1), self.name, name, _listen(name), _http(name),
            ttl=2, clock=self._clock,
        )  # fmt: skip
        self.members[name] = p
        return p

    async def elect(self, name: str) -> bool:
        return await self.members[name].acquire()

    def cut_off(self, name: str) -> None:
        self.members[name].client.endpoints = ["http://127.0.0.1:1"]

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    async def close(self) -> None:
        for p in self.members.values():
            with contextlib.suppress(StoreUnavailableError):
                await p.close()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


Body = Callable[[Cluster], Awaitable[None]]


@pytest.fixture(params=["static", "etcd"])
def run(request: pytest.FixtureRequest) -> Callable[[Body], None]:
    def make() -> Cluster:
        if request.param == "static":
            return StaticCluster()
        return EtcdCluster(request.getfixturevalue("etcd"))

    cluster = make()

    def runner(body: Body) -> None:
        async def main() -> None:
            try:
                await body(cluster)
            finally:
                await cluster.close()

        asyncio.run(main())

    return runner


def test_acquire_when_free_makes_the_participant_the_valid_holder(
    run: Callable[[Body], None],
) -> None:
    async def body(cluster: Cluster) -> None:
        a = cluster.participant("a")
        assert not a.valid()
        assert a.time_left() == 0
        assert await a.acquire()
        assert a.valid()
        assert a.time_left() > 0
        assert a.primary() is None
        assert a.epoch > 0
        assert a.leader is not None
        assert (a.leader.node_id, a.leader.listen, a.leader.http) == ("a", _listen("a"), _http("a"))

    run(body)


def test_a_lost_race_returns_false_and_names_the_holder(run: Callable[[Body], None]) -> None:
    async def body(cluster: Cluster) -> None:
        parts = [cluster.participant(n) for n in ("a", "b", "c")]
        won = await asyncio.gather(*(p.acquire() for p in parts))
        assert sum(won) == 1, won
        holder = parts[won.index(True)]
        assert holder.leader is not None
        for loser in (p for p in parts if p is not holder):
            assert not loser.valid()
            assert not await loser.renew()
            assert loser.primary() == holder.leader.listen
            assert loser.leader is not None
            assert loser.leader.listen == holder.leader.listen
            seen = await loser.observe()
            assert seen is not None
            assert seen.listen == holder.leader.listen
            assert not await loser.acquire(), "asking again while it is held loses again"

    run(body)


def test_renew_keeps_the_holding_past_its_ttl(run: Callable[[Body], None]) -> None:
    async def body(cluster: Cluster) -> None:
        a, b = cluster.participant("a"), cluster.participant("b")
        assert await a.acquire()
        epoch = a.epoch
        # Renewing every third of the TTL for longer than one TTL: without the renewals the
        # holding would have expired and b would win.
        interval = a.ttl / 3 if math.isfinite(a.ttl) else 0.0
        for _ in range(5):
            await asyncio.sleep(interval)
            assert await a.renew()
            assert a.valid()
        assert a.epoch == epoch, "renewing keeps the term"
        assert not await b.acquire()

    run(body)


def test_a_new_leader_gets_a_higher_epoch_without_waiting_for_the_ttl(
    run: Callable[[Body], None],
) -> None:
    async def body(cluster: Cluster) -> None:
        a, b = cluster.participant("a"), cluster.participant("b")
        assert await a.acquire()
        first = a.epoch
        started = time.monotonic()
        await a.release()
        assert not a.valid()
        assert not await a.renew()
        assert await cluster.elect("b")
        assert time.monotonic() - started < min(b.ttl, 30), "release freed it at once"
        assert b.valid()
        assert b.epoch > first
        leader = await a.observe()
        assert leader is not None
        assert leader.listen == _listen("b")
        assert a.primary() == _listen("b")
        assert not await a.acquire()

    run(body)


def test_release_ends_the_holding_and_is_idempotent(run: Callable[[Body], None]) -> None:
    async def body(cluster: Cluster) -> None:
        a = cluster.participant("a")
        assert await a.acquire()
        first = a.epoch
        await a.release()
        assert not a.valid()
        assert a.time_left() == 0
        assert a.primary() != _listen("a")
        assert not await a.renew()
        assert a.epoch >= first, "the epoch never goes back"
        await a.release()  # not holding: nothing happens
        assert not await a.publish_sync(SyncState(first, 1))
        assert await a.acquire(), "a free claim can be taken again"
        assert a.epoch >= first

    run(body)


def test_a_store_outage_raises_and_the_holder_keeps_only_its_safe_deadline(
    run: Callable[[Body], None],
) -> None:
    async def body(cluster: Cluster) -> None:
        a, c = cluster.participant("a"), cluster.participant("c")
        assert await a.acquire()
        cluster.cut_off("a")
        cluster.cut_off("c")
        assert await a.renew(), "within the safe deadline a holder keeps serving"
        assert a.valid()
        if cluster.shared_store:
            # "Could not ask" is never "lost the race".
            with pytest.raises(StoreUnavailableError):
                await c.acquire()
            with pytest.raises(StoreUnavailableError):
                await c.observe()
            with pytest.raises(StoreUnavailableError):
                await c.publish_member({"node_id": "c"})
        else:
            assert not await c.acquire()
            assert await c.observe() is not None
        cluster.advance(min(a.time_left(), 3600.0) + 0.01)
        if math.isfinite(a.ttl):
            assert not a.valid(), "past the deadline the holder stops on its own clock"
            assert not await a.renew()
        else:
            assert a.valid(), "a holding without TTL never expires"

    run(body)


def test_member_records_and_the_sync_set_of_the_holder(run: Callable[[Body], None]) -> None:
    async def body(cluster: Cluster) -> None:
        a = cluster.participant("a")
        first = await a.publish_member({"node_id": "a", "txid": 1})
        again = await a.publish_member({"node_id": "a", "txid": 2})
        assert again > first
        mine = [m for m in await a.members() if m.record.get("node_id") == "a"]
        assert len(mine) == 1, "a record replaces the previous one"
        assert mine[0].record["txid"] == 2
        assert mine[0].revision == again

        state = SyncState(a.epoch, 1, frozenset({"b"}), {"main": 7})
        assert not await a.publish_sync(state), "only the holder publishes the sync set"
        assert await a.acquire()
        state = SyncState(a.epoch, 1, frozenset({"b"}), {"main": 7})
        assert await a.publish_sync(state)
        assert await a.read_sync() == state
        await a.hand_over("b")
        assert not a.valid(), "handing over releases"
        assert await a.switchover_target() == ("b" if cluster.shared_store else None)
        assert not await a.publish_sync(state)

    run(body)

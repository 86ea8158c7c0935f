"""Leadership through a real etcd: one holder, epochs that grow, stepping down on time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from litecluster.ha.etcd import EtcdClient
from litecluster.ha.etcd_leadership import EtcdLeadership
from litecluster.replication.config import Address
from support.etcd_server import EtcdServer


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


def _node(etcd: EtcdServer, n: int, cluster: str, ttl: int = 2) -> EtcdLeadership:
    return EtcdLeadership(
        EtcdClient([etcd.url]), cluster, f"n{n}", Address("127.0.0.1", 4000 + n),
        f"127.0.0.1:{5000 + n}", ttl=ttl,
    )  # fmt: skip


def test_one_holder_others_see_it_and_the_next_epoch_is_higher(etcd: EtcdServer) -> None:
    async def main() -> None:
        a, b, c = (_node(etcd, i, "one") for i in range(3))
        won = await asyncio.gather(a.acquire(), b.acquire(), c.acquire())
        assert sum(won) == 1
        holder = (a, b, c)[won.index(True)]
        others = [x for x in (a, b, c) if x is not holder]
        assert holder.leader is not None
        assert holder.valid()
        assert holder.primary() is None
        for o in others:
            assert not o.valid()
            assert o.primary() == holder.leader.listen
            assert o.epoch == holder.epoch
        assert await holder.renew()
        first_epoch = holder.epoch
        await holder.release()
        assert not holder.valid()
        assert await others[0].acquire()
        assert others[0].epoch > first_epoch
        leader = await others[1].observe()
        assert leader is not None
        assert leader.node_id == others[0].node_id
        await others[0].release()

    asyncio.run(main())


def test_a_holder_that_stops_renewing_steps_down_before_anyone_else_can_win(
    etcd: EtcdServer,
) -> None:
    async def main() -> None:
        a, b = _node(etcd, 1, "expiry"), _node(etcd, 2, "expiry")
        assert await a.acquire()
        deadline_a = time.monotonic() + a.time_left()
        # a stops renewing (hung, or cut off from etcd); b tries until it wins.
        started = time.monotonic()
        while not await b.acquire():
            assert time.monotonic() - started < 20, "the lease never expired"
            await asyncio.sleep(0.1)
        won_at = time.monotonic()
        assert not a.valid(), "the old holder no longer considers itself primary"
        assert deadline_a < won_at, "a's own deadline passed before b could win"
        assert b.epoch > a.epoch
        assert not await a.renew(), "a learns it lost the key"
        await b.release()

    asyncio.run(main())


def test_etcd_unreachable_keeps_leadership_only_until_the_safe_deadline(etcd: EtcdServer) -> None:
    async def main() -> None:
        now = [0.0]
        a = EtcdLeadership(
            EtcdClient([etcd.url], timeout=1), "cutoff", "n1", Address("127.0.0.1", 4001),
            "127.0.0.1:5001", ttl=4, clock=lambda: now[0],
        )  # fmt: skip
        assert await a.acquire()
        assert a.time_left() == pytest.approx(4 - a.margin)
        a.client.endpoints = ["http://127.0.0.1:1"]  # etcd cut off
        now[0] = 1.0
        assert await a.renew(), "still within the deadline: keep serving"
        assert a.valid()
        now[0] = 4 - a.margin + 0.01
        assert not a.valid()
        assert not await a.renew()

    asyncio.run(main())

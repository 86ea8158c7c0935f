"""The etcd v3 JSON client against a real etcd server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from litecluster.ha.etcd import EtcdClient, EtcdUnavailableError
from support.etcd_server import EtcdServer, free_port


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


def test_create_is_won_by_exactly_one_and_its_revision_is_the_create_revision(
    etcd: EtcdServer,
) -> None:
    async def main() -> None:
        a, b = EtcdClient([etcd.url]), EtcdClient([etcd.url])
        la, lb = await a.grant(5), await b.grant(5)
        ra, rb = await asyncio.gather(
            a.create("/t/leader", b"a", lease=la), b.create("/t/leader", b"b", lease=lb)
        )
        assert sorted([ra.succeeded, rb.succeeded]) == [False, True]
        win, lose = (ra, rb) if ra.succeeded else (rb, ra)
        kv = await a.get("/t/leader")
        assert kv is not None
        assert kv.create_revision == win.revision
        assert lose.kvs[0].value == kv.value  # the loser learns who holds it
        assert not await b.delete_if("/t/leader", create_revision=win.revision + 100)
        assert await b.delete_if("/t/leader", create_revision=win.revision)
        assert await a.get("/t/leader") is None
        await a.close()
        await b.close()

    asyncio.run(main())


def test_lease_keepalive_and_expiry(etcd: EtcdServer) -> None:
    async def main() -> None:
        c = EtcdClient([etcd.url])
        lease = await c.grant(2)
        await c.put("/t/ephemeral", b"x", lease=lease)
        assert await c.keepalive(lease) == 2
        started = time.monotonic()
        while await c.get("/t/ephemeral") is not None:  # bounded: the lease is not renewed
            assert time.monotonic() - started < 15, "lease never expired"
            await asyncio.sleep(0.1)
        assert time.monotonic() - started >= 1.0, "a lease never expires early"
        assert await c.keepalive(lease) == 0
        mod = await c.put("/t/k", b"1")
        assert (await c.replace_if("/t/k", b"2", mod_revision=mod, lease=0)).succeeded
        assert not (await c.replace_if("/t/k", b"3", mod_revision=mod, lease=0)).succeeded
        await c.revoke(lease)  # already gone: not an error
        await c.close()

    asyncio.run(main())


def test_endpoints_fail_over_and_all_down_is_unavailable(etcd: EtcdServer) -> None:
    async def main() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        c = EtcdClient([dead, etcd.url], timeout=1)
        await c.put("/t/x", b"y")
        assert (await c.get("/t/x")) is not None
        await c.close()
        down = EtcdClient([dead], timeout=1)
        with pytest.raises(EtcdUnavailableError):
            await down.get("/t/x")
        await down.close()

    asyncio.run(main())

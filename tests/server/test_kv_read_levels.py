"""Key/value read levels (docs/kv.md): every read a primary answers needs its lease, checked
before and after the read ran, ``linearizable`` also a round to the coordinator; a replica
answers ``none`` itself and forwards ``strong`` and ``linearizable`` to the primary, over
``POST /kv/exec`` and RESP (``CLIENT READLEVEL``) alike; the Python client's ``read_level``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.backoff import NoBackoff
from redis.retry import Retry

import litecluster
from litecluster.cli.localcluster import LocalNode, free_port
from litecluster.client.kv import KvError
from litecluster.engine.position import Position
from litecluster.engine.sqlite import connect
from litecluster.errors import KvRequestError, NotPrimaryError
from litecluster.kv.commands import execute
from litecluster.kv.reply import dumps, loads
from litecluster.kv.schema import ensure_schema
from litecluster.kv.wire import ExecReply, ExecRequest, decode_reply, decode_request, encode
from litecluster.replication.config import Address
from litecluster.server.forward import Forwarder
from litecluster.server.kvstore import READ_LEVELS, KvStore
from litecluster.server.resp.pubsub import PubSub
from litecluster.server.resp.server import RespServer, RespSettings
from support import wait_for
from support.doors import FakeNode, FakePrimary, FakeUpstream
from support.nodes import Nodes

GET = [(0, [b"GET", b"k"])]


def _kv_file(node: FakeNode, value: bytes) -> Path:
    path = node.db_path("kv")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        conn.execute("BEGIN")
        ensure_schema(conn)
        execute(conn, 0, 0, [b"SET", b"k", value])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return path


def _forwarder(node: FakeNode, session: Callable[[], Any] | None = None) -> Forwarder:
    return Forwarder(upstream=lambda: node.upstream, session=session or node.http_client,
                     tls=None, timeout=2, wait_applied=node.wait_applied)  # fmt: skip


def _primary(tmp_path: Path) -> tuple[FakeNode, KvStore, list[str]]:
    """A fake primary with ``k`` = ``here`` in its kv file; the list records each round to
    the coordinator."""
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    store = KvStore("kv", _kv_file(node, b"here"), node, _forwarder(node))
    rounds: list[str] = []
    real = node.confirm_leadership

    async def confirm() -> bool:
        rounds.append("confirmed")
        return await real()

    node.confirm_leadership = confirm  # type: ignore[method-assign]
    return node, store, rounds


def test_every_read_on_the_primary_needs_its_lease_before_and_after(tmp_path: Path) -> None:
    node, store, rounds = _primary(tmp_path)

    async def run() -> None:
        for level in READ_LEVELS:
            assert await store.read(GET, level) == [b"here"]
        assert rounds == ["confirmed"], "only a linearizable read asks the coordinator"
        node.lease = False  # a pause past the TTL: the lease ran out
        for level in READ_LEVELS:
            with pytest.raises(NotPrimaryError, match="lease is not valid") as caught:
                await store.read(GET, level)
            assert caught.value.retryable
            assert not caught.value.indeterminate
        node.lease = True
        # Valid when the read starts, lapsed once it ran: refused all the same.
        answers = iter([True, False])
        node.lease_valid = lambda: next(answers)  # type: ignore[method-assign]
        with pytest.raises(NotPrimaryError):
            await store.read(GET, "none")
        assert next(answers, "both used") == "both used"
        # Over /kv/exec: the level travels in the request; an unknown one is refused.
        node.lease_valid = lambda: True  # type: ignore[method-assign]
        raw = await store.serve(encode(ExecRequest(GET, [], 0, [], False, "linearizable")))
        assert [loads(r) for r in decode_reply(raw).replies or []] == [b"here"]
        assert rounds == ["confirmed", "confirmed"]
        with pytest.raises(KvRequestError, match="level must be"):
            await store.serve(encode(ExecRequest(GET, [], 0, [], False, "eventual")))

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_a_replica_reads_none_itself_and_forwards_strong_reads(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    seen: list[ExecRequest] = []

    async def primary_kv(request: web.Request) -> web.Response:
        req = decode_request(await request.read())
        seen.append(req)
        return web.Response(body=encode(ExecReply([dumps(b"primary")], 9, 3)),
                            content_type="application/msgpack")  # fmt: skip

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/kv/exec", primary_kv)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        node.upstream = FakeUpstream(http=f"127.0.0.1:{server.port}")
        async with aiohttp.ClientSession() as session:
            store = KvStore("kv", _kv_file(node, b"replica"), node,
                            _forwarder(node, lambda: session))  # fmt: skip
            try:
                assert await store.read(GET, "none") == [b"replica"]
                assert seen == []
                assert await store.read(GET, "strong") == [b"primary"]
                assert await store.read(GET, "linearizable") == [b"primary"]
                assert [r.level for r in seen] == ["strong", "linearizable"]
                node.upstream = None  # between roles: nowhere to forward to, retryable
                with pytest.raises(NotPrimaryError, match="follows no primary"):
                    await store.read(GET, "strong")
            finally:
                store.close()
        await server.close()

    asyncio.run(run())


def test_resp_client_readlevel_and_a_lapsed_lease_answers_tryagain(tmp_path: Path) -> None:
    node, store, rounds = _primary(tmp_path)
    settings = RespSettings(Address("127.0.0.1", 0), None, {"default": "sesame"})
    server = RespServer(node, store, PubSub(), settings)

    def check(r: redis.Redis) -> None:
        assert r.execute_command("CLIENT", "READLEVEL") == b"none"
        assert r.get("k") == b"here"
        assert rounds == []
        assert r.execute_command("CLIENT", "READLEVEL", "LINEARIZABLE") == b"linearizable"
        assert r.get("k") == b"here"
        assert r.mget(["k", "nope"]) == [b"here", None]
        assert len(rounds) == 2, "every linearizable read asks the coordinator"
        with pytest.raises(redis.ResponseError, match="must be none, strong or linearizable"):
            r.execute_command("CLIENT", "READLEVEL", "eventual")
        node.lease = False
        for level in ("none", "strong"):
            r.execute_command("CLIENT", "READLEVEL", level)
            # redis-py turns the TRYAGAIN prefix into its class: a retryable refusal.
            with pytest.raises(redis.exceptions.TryAgainError, match="lease is not valid"):
                r.get("k")
        assert (r.execute_command("MULTI"), r.execute_command("GET", "k")) == (b"OK", b"QUEUED")
        with pytest.raises(redis.exceptions.TryAgainError, match="lease is not valid"):
            r.execute_command("EXEC")
        r.execute_command("RESET")
        assert r.execute_command("CLIENT", "READLEVEL") == b"none"

    def connected(host: str, port: int) -> None:
        # One connection for the whole check (its level is the connection's), opened in
        # this thread: the server runs on the test's loop.
        client = redis.Redis(host=host, port=port, password="sesame", socket_timeout=5,
                             single_connection_client=True)  # fmt: skip
        try:
            check(client)
        finally:
            client.close()

    async def run() -> None:
        host, _, port = (await server.start()).rpartition(":")
        try:
            await asyncio.to_thread(connected, host, int(port))
        finally:
            await server.close()
            store.close()

    asyncio.run(run())


# ---- real nodes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNode, LocalNode, int]]:
    n = Nodes(tmp_path_factory.mktemp("levels"))
    rport = free_port()
    try:
        p = n.node("p", args=["--resp", f"127.0.0.1:{free_port()}"])
        r = n.node("r", p, args=["--resp", f"127.0.0.1:{rport}"])
        token = n.token_file.read_text()
        c = redis.Redis(port=rport, password=token, socket_timeout=10)
        c.set("warmup", "1")
        wait_for(lambda: c.get("warmup") == b"1", 30, "the kv database on the replica")
        yield p, r, rport
    finally:
        n.close()


def test_strong_reads_on_a_replica_are_answered_by_the_primary(
    pair: tuple[LocalNode, LocalNode, int],
) -> None:
    p, r, rport = pair
    token = r.token_file.read_text()
    resp = redis.Redis(port=rport, password=token, socket_timeout=10,
                       single_connection_client=True)  # fmt: skip
    for level in ("strong", "linearizable"):
        assert resp.execute_command("CLIENT", "READLEVEL", level) == level.encode()
        assert resp.get("warmup") == b"1"
    with litecluster.connect(r.url) as client:
        strong = client.kv.at_level("linearizable")
        client.kv.set("via-client", "x")
        assert strong.get("via-client") == "x"
        assert strong.mget("via-client", "warmup") == ["x", "1"]
        with pytest.raises(KvError, match="read_level must be"):
            client.kv.at_level("eventual")
    # With the primary stopped, the replica still answers `none` itself; a strong read waits
    # for the primary that answers it (no retry: redis-py's would start a new connection, at
    # the node's resp_read_level).
    quick = redis.Redis(port=rport, password=token, socket_timeout=1, retry=Retry(NoBackoff(), 0),
                        single_connection_client=True)  # fmt: skip
    p.signal(signal.SIGSTOP)
    try:
        assert quick.get("warmup") == b"1"
        quick.execute_command("CLIENT", "READLEVEL", "strong")
        with pytest.raises(redis.exceptions.TimeoutError):
            quick.get("warmup")
    finally:
        p.signal(signal.SIGCONT)


def test_resp_read_level_is_where_connections_start(tmp_path: Path) -> None:
    node, store, rounds = _primary(tmp_path)
    settings = RespSettings(Address("127.0.0.1", 0), None, {}, read_level="linearizable")
    server = RespServer(node, store, PubSub(), settings)

    def check(host: str, port: int) -> None:
        for _ in range(2):  # each new connection, and after RESET
            c = redis.Redis(host=host, port=port, socket_timeout=5, single_connection_client=True)
            assert c.execute_command("CLIENT", "READLEVEL") == b"linearizable"
            assert c.get("k") == b"here"
            c.execute_command("CLIENT", "READLEVEL", "none")
            c.execute_command("RESET")
            assert c.execute_command("CLIENT", "READLEVEL") == b"linearizable"
            c.close()
        assert len(rounds) == 2

    async def run() -> None:
        host, _, port = (await server.start()).rpartition(":")
        try:
            await asyncio.to_thread(check, host, int(port))
        finally:
            await server.close()
            store.close()

    asyncio.run(run())

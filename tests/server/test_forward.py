"""Forwarding a replica's writes to its primary (server/forward.py): over TLS with a private
CA on real nodes, for the SQL API, RESP and ``POST /kv/exec``; and the mapping of every way a
forward can fail onto the error tree."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import msgspec
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from litecluster.cli.localcluster import LocalNode, free_port
from litecluster.engine.position import Position
from litecluster.errors import (
    CommittedNotVisibleError,
    ConfigError,
    ExcludedByNewerHistoryError,
    IndeterminateWriteError,
    KvRequestError,
    LiteclusterError,
    NodeError,
    NotPrimaryError,
    RequestError,
    UnavailableError,
)
from litecluster.kv.reply import Simple, dumps, loads
from litecluster.kv.wire import ExecReply, ExecRequest, decode_reply, encode
from litecluster.replication.history import Reach
from litecluster.replication.tls import client_context
from litecluster.server.forward import (
    NOT_VISIBLE_WARNING,
    Forwarder,
    refusal,
    transport_failure,
)
from litecluster.server.http.sql import add_routes, request_errors
from litecluster.server.kvstore import KvStore
from litecluster.server.kvstore import Request as KvRequest
from support import wait_for
from support.certs import make_ca, make_server_cert
from support.doors import FakeNode, FakeUpstream
from support.nodes import Nodes

# ---- real nodes with TLS from a private CA -------------------------------------------------


@dataclass
class TlsPair:
    primary: LocalNode
    replica: LocalNode
    ca: Path
    pport: int
    rport: int
    token: str

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def resp(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.token, socket_timeout=10, ssl=True,
                           ssl_ca_certs=str(self.ca), ssl_check_hostname=True,
                           host="127.0.0.1")  # fmt: skip


@pytest.fixture
def tls_pair(tmp_path: Path) -> Iterator[TlsPair]:
    ca, ca_cert, ca_key = make_ca(tmp_path, "cluster-ca")
    cert, key = make_server_cert(tmp_path, ca_cert, ca_key)
    server = ["--tls-cert", str(cert), "--tls-key", str(key)]
    nodes = Nodes(tmp_path)
    pport, rport = free_port(), free_port()
    try:
        p = nodes.node("p", args=[*server, "--resp", f"127.0.0.1:{pport}"])
        r = nodes.node("r", p, args=[*server, "--tls-ca", str(ca), "--resp", f"127.0.0.1:{rport}"])
        pair = TlsPair(p, r, ca, pport, rport, nodes.token_file.read_text())
        assert r.url.startswith("https://")
        # The kv database is created by its first write; once the replica has it, it follows it.
        pair.resp(pport).set("warmup", "1")
        wait_for(lambda: pair.resp(rport).get("warmup") == b"1", 60, "the kv database on r")
        yield pair
    finally:
        nodes.close()


def test_a_tls_replica_forwards_sql_and_kv_writes_and_reads_them_back(tls_pair: TlsPair) -> None:
    r, verify = tls_pair.replica, tls_pair.verify()
    # SQL: POST /db/execute on the replica runs on the primary; the replica answers once it
    # has applied the write, so a local read right after it sees it.
    resp = httpx.post(f"{r.url}/db/execute", verify=verify, timeout=30,
                      json=["CREATE TABLE t(x)", ["INSERT INTO t VALUES (?)", 7]])  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [res.get("error") for res in body["results"]] == [None, None]
    assert "warning" not in body
    read = httpx.get(f"{r.url}/db/query", verify=verify,
                     params={"q": "SELECT x FROM t", "level": "none"})  # fmt: skip
    assert read.json()["results"][0]["values"] == [[7]]

    # RESP: SET on the replica's (TLS) RESP port is forwarded; GET there sees it at once.
    kv = tls_pair.resp(tls_pair.rport)
    assert kv.set("forwarded", "by-resp") is True
    assert kv.incr("counter") == 1
    assert kv.get("forwarded") == b"by-resp"

    # POST /kv/exec on the replica: the msgpack reply has the primary's txid and no warning.
    req = ExecRequest([(0, [b"SET", b"posted", b"by-http"])], [], 0, [])
    raw = httpx.post(f"{r.url}/kv/exec", content=encode(req), verify=verify, timeout=30,
                     headers={"Content-Type": "application/msgpack"})  # fmt: skip
    assert raw.status_code == 200, raw.text
    reply = decode_reply(raw.content)
    assert reply.warning == ""
    assert reply.txid > 0
    assert kv.get("posted") == b"by-http"
    # The writes ran on the primary: its own file has them too.
    assert tls_pair.resp(tls_pair.pport).get("posted") == b"by-http"
    assert "forward.not_visible" not in r.log_text


# ---- the failure mapping ---------------------------------------------------------------------


@dataclass
class Up:
    http: str
    state: str = "streaming"


async def _not_applied(db: str, position: Position) -> Reach:
    return Reach.NOT_YET


async def _applied(db: str, position: Position) -> Reach:
    return Reach.REACHED


async def _excluded(db: str, position: Position) -> Reach:
    return Reach.EXCLUDED


def _forwarder(
    up: Up | None, session: aiohttp.ClientSession, tls: ssl.SSLContext | None = None
) -> Forwarder:
    return Forwarder(upstream=lambda: up, session=lambda: session, tls=tls, timeout=5,
                     wait_applied=_not_applied)  # fmt: skip


def _flags(exc: LiteclusterError) -> tuple[bool, bool, bool]:
    return exc.retryable, exc.indeterminate, exc.committed


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A primary that reads the request and drops the connection without answering."""
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


def test_forward_failures_map_onto_the_error_tree() -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            # No primary to forward to: retryable, nothing sent.
            for up in (None, Up("127.0.0.1:1", state="connecting"), Up("")):
                with pytest.raises(NotPrimaryError) as no_target:
                    await _forwarder(up, session).post("/db/execute", write=True)
                assert _flags(no_target.value) == (True, False, False)
            # Connection refused: nothing sent, a write is retryable too.
            closed = f"127.0.0.1:{free_port()}"
            with pytest.raises(NotPrimaryError) as refused:
                await _forwarder(Up(closed), session).post("/kv/exec", write=True, data=b"x")
            assert _flags(refused.value) == (True, False, False)
            assert refused.value.context["primary"] == closed
            # Received, then no answer: a write's outcome is unknown, a read is retryable.
            server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
            hung = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
            try:
                fwd = _forwarder(Up(hung), session)
                with pytest.raises(IndeterminateWriteError) as unknown:
                    await fwd.post("/kv/exec", write=True, data=b"x")
                assert _flags(unknown.value) == (False, True, False)
                with pytest.raises(UnavailableError) as read:
                    await fwd.post("/db/query", write=False, json=[])
                assert type(read.value) is UnavailableError
                assert _flags(read.value) == (True, False, False)
            finally:
                server.close()
                await server.wait_closed()

    asyncio.run(run())


def test_a_primarys_error_answer_keeps_its_own_flags() -> None:
    def body(**fields: object) -> bytes:
        return msgspec.json.encode({"error": "it failed", **fields})

    unknown = refusal(503, body(retryable=False, indeterminate=True, hint="check first"))
    assert isinstance(unknown, IndeterminateWriteError)
    assert (unknown.hint, unknown.context["status"]) == ("check first", 503)
    committed = refusal(503, body(committed=True))
    assert isinstance(committed, CommittedNotVisibleError)
    assert _flags(committed) == (False, False, True)
    again = refusal(503, body(retryable=True))
    assert isinstance(again, UnavailableError)
    assert "it failed" in again.message
    # A request the primary rejects as malformed fails again as is: the caller's request
    # error class, answered 400 by the replica too.
    bad = refusal(400, body(hint="see docs"), request_error=KvRequestError)
    assert isinstance(bad, KvRequestError)
    assert type(refusal(400, body())) is RequestError
    # No flags (a proxy's HTML, a crash): failed, not retryable, not unknown.
    for other in (refusal(500, b"<html>bad gateway</html>"), refusal(502, b"[1, 2]")):
        assert type(other) is NodeError
        assert _flags(other) == (False, False, False)
    assert "bad gateway" in refusal(500, b"<html>bad gateway</html>").message
    # One place decides what a dead connection means, for every caller.
    assert isinstance(transport_failure(TimeoutError(), write=True, primary="p"),
                      IndeterminateWriteError)  # fmt: skip
    assert type(transport_failure(TimeoutError(), write=False, primary="p")) is UnavailableError


def test_forwarding_over_tls_verifies_the_cluster_ca(tmp_path: Path) -> None:
    ca, ca_cert, ca_key = make_ca(tmp_path, "cluster-ca")
    other, _, _ = make_ca(tmp_path, "other-ca")
    cert, key = make_server_cert(tmp_path, ca_cert, ca_key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=encode(ExecReply([], 9, 1)), status=200)

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/kv/exec", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with aiohttp.ClientSession() as session:
                good = _forwarder(Up(f"127.0.0.1:{port}"), session,
                                  client_context(str(ca), tls=False))  # fmt: skip
                assert good.scheme == "https"
                got = await good.post("/kv/exec", write=True, data=b"")
                assert (got.status, decode_reply(got.body).txid) == (200, 9)
                # A certificate the context does not trust fails the handshake: nothing sent.
                wrong = _forwarder(Up(f"127.0.0.1:{port}"), session,
                                   client_context(str(other), tls=False))  # fmt: skip
                with pytest.raises(NotPrimaryError):
                    await wrong.post("/kv/exec", write=True, data=b"")
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_the_read_your_writes_wait_reports_and_counts_a_write_not_visible_here() -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            late = _forwarder(Up("p:1"), session)
            assert await late.settle("kv", Position(1, 5)) is False
            assert await late.settle("kv", Position(1, 6)) is False
            assert late.not_visible == 2
            on_time = Forwarder(upstream=lambda: None, session=lambda: session, tls=None,
                                timeout=5, wait_applied=_applied)  # fmt: skip
            assert await on_time.settle("kv", Position(1, 5)) is True
            assert on_time.not_visible == 0

    asyncio.run(run())


def test_a_forwarded_write_this_nodes_newer_history_excludes_is_an_error_not_a_warning() -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            lost = Forwarder(upstream=lambda: None, session=lambda: session, tls=None,
                             timeout=5, wait_applied=_excluded)  # fmt: skip
            with pytest.raises(ExcludedByNewerHistoryError) as info:
                await lost.settle("main", Position(1, 55))
            assert _flags(info.value) == (False, False, False), "known lost: neither flag"
            assert info.value.context["position"] == "1:55"
            assert "lost" in info.value.message
            assert (lost.excluded, lost.not_visible) == (1, 0)

    asyncio.run(run())


def test_every_client_tls_context_comes_from_one_builder_with_tls_1_2_minimum(
    tmp_path: Path,
) -> None:
    ca, _, _ = make_ca(tmp_path, "cluster-ca")
    for ctx in (client_context(str(ca), tls=False), client_context(None, tls=True)):
        assert ctx is not None
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert client_context(None, tls=False) is None
    with pytest.raises(ConfigError):
        client_context(str(tmp_path / "missing.pem"), tls=True)
    from litecluster.client.aio import AsyncClient
    from litecluster.client.sync import Client

    for client in (Client("https://127.0.0.1:1", ca=str(ca)),
                   AsyncClient("https://127.0.0.1:1", ca=str(ca))):  # fmt: skip
        pool = client._http._transport._pool  # type: ignore[union-attr]
        assert pool._ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_exec_reply_with_a_warning_still_decodes_on_older_peers() -> None:
    class OldReply(msgspec.Struct, array_like=True):
        replies: list[bytes] | None
        txid: int
        epoch: int

    new = encode(ExecReply([b"+OK"], 4, 2, "committed on the primary; not yet applied"))
    assert msgspec.msgpack.decode(new, type=OldReply) == OldReply([b"+OK"], 4, 2)
    old = encode(OldReply([b"+OK"], 4, 2))
    assert decode_reply(old) == ExecReply([b"+OK"], 4, 2, "")


# ---- what each front door answers when the write is not visible here yet -------------------


async def _fake_primary(indeterminate_kv: bool = False) -> tuple[web.AppRunner, str]:
    """A primary's HTTP port that commits every write at txid 42."""

    async def kv_exec(request: web.Request) -> web.Response:
        if indeterminate_kv:
            return web.json_response({"error": "lease lost", "retryable": False,
                                      "indeterminate": True}, status=503)  # fmt: skip
        return web.Response(body=encode(ExecReply([dumps(Simple("OK"))], 42, 3)))

    async def execute(request: web.Request) -> web.Response:
        return web.json_response({"results": [{"rows_affected": 1}],
                                  "position": {"epoch": 3, "txid": 42, "node": "p"}})  # fmt: skip

    app = web.Application()
    app.router.add_post("/kv/exec", kv_exec)
    app.router.add_post("/db/execute", execute)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def _replica(tmp_path: Path) -> FakeNode:
    """A replica's view of the node as the front doors take it: no primary role here."""
    node = FakeNode(tmp_path)
    node.upstream = FakeUpstream(http="primary:1")
    return node


def _store(node: FakeNode, forwarder: Forwarder) -> KvStore:
    return KvStore("kv", node.db_path("kv"), node, forwarder)


def test_a_write_not_visible_here_reaches_the_sql_and_kv_exec_clients_as_a_warning(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        runner, primary = await _fake_primary()
        try:
            async with aiohttp.ClientSession() as session:
                node = _replica(tmp_path)
                forwarder = _forwarder(Up(primary), session)
                store = _store(node, forwarder)
                # /kv/exec: the reply, and the warning in its trailing field.
                raw = await store.serve(encode(ExecRequest([(0, [b"SET", b"k", b"v"])], [], 0, [])))
                got = decode_reply(raw)
                assert (got.txid, got.warning) == (42, NOT_VISIBLE_WARNING)
                assert [loads(r) for r in got.replies or []] == [Simple("OK")]
                # RESP (KvStore.write): the command's reply itself, counted by the forwarder.
                assert await store.write(KvRequest([(0, [b"SET", b"k", b"v"])])) == [Simple("OK")]
                assert forwarder.not_visible == 2
                # SQL: the primary's answer with the warning added.
                app = web.Application(middlewares=[request_errors])
                add_routes(app, node.door(), forwarder)
                async with TestClient(TestServer(app)) as client:
                    resp = await client.post("/db/execute", json=["INSERT INTO t VALUES (1)"])
                    body = await resp.json()
                assert resp.status == 200
                assert body["warning"] == NOT_VISIBLE_WARNING
                assert body["position"]["txid"] == 42
                store.close()
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_a_forward_failure_reaches_the_clients_with_its_flags(tmp_path: Path) -> None:
    async def run() -> None:
        runner, primary = await _fake_primary(indeterminate_kv=True)
        try:
            async with aiohttp.ClientSession() as session:
                node = _replica(tmp_path)
                store = _store(node, _forwarder(Up(primary), session))
                with pytest.raises(IndeterminateWriteError, match="lease lost"):
                    await store.write(KvRequest([(0, [b"SET", b"k", b"v"])]))
                store.close()
                # SQL with no primary reachable: 503, retryable, and where the primary is.
                app = web.Application(middlewares=[request_errors])
                add_routes(app, node.door(), _forwarder(Up(primary, state="connecting"), session))
                async with TestClient(TestServer(app)) as client:
                    resp = await client.post("/db/execute", json=["INSERT INTO t VALUES (1)"])
                    body = await resp.json()
                assert resp.status == 503
                assert (body["retryable"], body["indeterminate"]) == (True, False)
                assert body["primary"] == "primary:1"
        finally:
            await runner.cleanup()

    asyncio.run(run())

"""Every error path of the HTTP API answers one JSON body with ``error``, ``retryable``,
``indeterminate``, ``committed`` and a non-empty ``hint`` (docs/http-api.md), never a
traceback: bad requests, a replica with no primary to forward to, every way a forward can fail
against a real HTTP server playing the primary (refused connection, timeout, a broken or
foreign answer, a refusal without flags), every error class of the tree raised by the primary's
writer, lapsed leases, positions not reached, and a failure nobody foresaw. SQL errors are
rqlite's: a 200 whose result carries ``error`` (a statement timeout too).

Run against a fake node (support/doors.py) over real sockets and files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from litecluster.engine.position import Position
from litecluster.errors import LiteclusterError
from litecluster.replication.primary.sqlexec import Statement
from litecluster.replication.primary.writer import WriteOutcome
from litecluster.server.forward import Forwarder
from litecluster.server.http.app import make_app
from litecluster.server.metrics import registry_for
from support.doors import FakeNode, FakePrimary, FakeUpstream
from support.errortree import error_tree

ERROR_KEYS = {"error", "retryable", "indeterminate", "committed", "hint"}
Answers = dict[str, aiohttp.ClientResponse]


class FakeKv:
    async def serve(self, body: bytes) -> bytes:
        return b"\x90"


def _database(node: FakeNode) -> None:
    (node.data_dir / "db").mkdir(parents=True)
    with sqlite3.connect(node.data_dir / "db" / "main.db") as conn:
        conn.execute("CREATE TABLE t(v)")
        conn.execute("INSERT INTO t VALUES ('here')")


async def _check(answers: Answers) -> None:
    for what, r in answers.items():
        assert r.status >= 400, (what, r.status, await r.text())
        assert r.content_type == "application/json", what
        text = await r.text()
        assert "Traceback" not in text, what
        got = json.loads(text)
        assert set(got) >= ERROR_KEYS, (what, got)
        flags = (got["retryable"], got["indeterminate"], got["committed"])
        assert all(isinstance(f, bool) for f in flags), (what, got)
        assert sum(flags) <= 1, (what, got)
        assert isinstance(got["error"], str), (what, got)
        assert got["error"], (what, got)
        assert isinstance(got["hint"], str), (what, got)
        assert got["hint"].strip(), (what, got)


def _run(node: FakeNode, body: Callable[[TestClient[Any, Any]], Awaitable[None]], *,
         forward_timeout: float = 0.5) -> None:  # fmt: skip
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            forward = Forwarder(upstream=lambda: node.upstream, session=lambda: session,
                                tls=None, timeout=forward_timeout,
                                wait_applied=node.wait_applied)  # fmt: skip
            app = make_app(node.door(), FakeKv(), registry_for(node), forward, backups=node)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                await body(client)

    asyncio.run(run())


async def _requests(client: TestClient[Any, Any], prefix: str) -> Answers:
    """A write, a read at each forwarded level, and a key/value command: what a replica
    forwards."""
    return {
        f"{prefix}: write": await client.post("/db/execute", json=["INSERT INTO t VALUES (1)"]),
        f"{prefix}: unified": await client.post("/db/request", json=["SELECT 1"]),
        f"{prefix}: weak read": await client.get("/db/query", params={"q": "SELECT 1"}),
        f"{prefix}: strong read": await client.get(
            "/db/query", params={"q": "SELECT 1", "level": "strong"}
        ),
    }


# ---- bad requests --------------------------------------------------------------------------------


def test_bad_requests_answer_400_with_every_key(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    _database(node)

    async def body(client: TestClient[Any, Any]) -> None:
        q = "/db/query"
        answers = {
            "missing q": await client.get(q),
            "bad database name": await client.get(q, params={"q": "SELECT 1", "db": "../x"}),
            "bad level": await client.get(q, params={"q": "SELECT 1", "level": "eventual"}),
            "malformed min_position": await client.get(
                q, params={"q": "SELECT 1", "min_position": "x"}
            ),
            "malformed JSON": await client.post("/db/execute", data=b"[not json"),
            "not a list": await client.post("/db/execute", json={"q": "x"}),
            "too many statements": await client.post("/db/execute", json=["SELECT 1"] * 11),
            "switchover without etcd": await client.post("/switchover", params={"to": "n2"}),
            "unknown route": await client.get("/nope"),
            "wrong method": await client.delete("/db/query"),
            "too large": await client.post("/db/execute", data=b"x" * (2 << 20)),
        }
        await _check(answers)
        assert answers.pop("unknown route").status == 404
        assert answers.pop("wrong method").status == 405
        assert answers.pop("too large").status == 413  # as docs/http-api.md says
        statuses = {what: r.status for what, r in answers.items()}
        assert set(statuses.values()) == {400}, statuses

    _run(node, body)


# ---- a replica that cannot forward ----------------------------------------------------------


def test_a_replica_with_no_primary_to_forward_to_answers_503_with_every_key(
    tmp_path: Path,
) -> None:
    node = FakeNode(tmp_path)
    _database(node)

    async def body(client: TestClient[Any, Any]) -> None:
        node.upstream = None  # between roles
        answers = await _requests(client, "follows no one")
        answers["follows no one: freshness"] = await client.get(
            "/db/query", params={"q": "SELECT 1", "level": "none", "freshness": "1s"}
        )
        node.upstream = FakeUpstream(state="connecting")
        answers |= await _requests(client, "not streaming")
        node.upstream = FakeUpstream()  # following: freshness is judged, and malformed
        answers["malformed freshness"] = await client.get(
            "/db/query", params={"q": "SELECT 1", "level": "none", "freshness": "soon"}
        )
        await _check(answers)
        assert answers.pop("malformed freshness").status == 400
        for what, r in answers.items():
            assert r.status == 503, what
            got = await r.json()
            assert (got["retryable"], got["indeterminate"]) == (True, False), (what, got)

    _run(node, body)


PrimaryHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(30)  # longer than the forward's timeout
    return web.Response()


async def _drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # the connection breaks after the request was sent
    return web.Response()


async def _not_json(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>a proxy's page</html>", status=200)


async def _plain_500(request: web.Request) -> web.StreamResponse:
    return web.Response(text="Internal Server Error", status=500)


async def _bare_refusal(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "busy"}, status=503)


async def _bare_400(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "no"}, status=400)


@pytest.mark.parametrize(
    ("name", "handler", "write_flags"),
    [
        ("a timeout", _hang, "indeterminate"),
        ("a dropped connection", _drop, "indeterminate"),
        ("an answer that is not JSON", _not_json, "indeterminate"),
        ("a 500 in plain text", _plain_500, "indeterminate"),
        ("a 503 with no flags and no hint", _bare_refusal, "none"),
        ("a 400 with no hint", _bare_400, "none"),
    ],
)
def test_every_way_a_forward_can_fail_answers_with_every_key(
    tmp_path: Path, name: str, handler: PrimaryHandler, write_flags: str
) -> None:
    node = FakeNode(tmp_path)
    _database(node)

    async def body(client: TestClient[Any, Any]) -> None:
        primary = web.Application()
        primary.router.add_route("*", "/{tail:.*}", handler)
        async with TestServer(primary, host="127.0.0.1") as server:
            node.upstream = FakeUpstream(http=f"127.0.0.1:{server.port}")
            answers = await _requests(client, name)
        await _check(answers)
        write = await answers[f"{name}: write"].json()
        flags = {"indeterminate": (False, True), "none": (False, False)}[write_flags]
        assert (write["retryable"], write["indeterminate"]) == flags, write

    _run(node, body)


def test_a_forward_to_a_closed_port_is_retryable_with_every_key(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    _database(node)

    async def body(client: TestClient[Any, Any]) -> None:
        server = TestServer(web.Application(), host="127.0.0.1")
        await server.start_server()
        port = server.port
        await server.close()  # nothing listens there any more: the connect fails
        node.upstream = FakeUpstream(http=f"127.0.0.1:{port}")
        answers = await _requests(client, "closed port")
        await _check(answers)
        for what, r in answers.items():
            got = await r.json()
            assert (got["retryable"], got["indeterminate"]) == (True, False), (what, got)

    _run(node, body)


# ---- the primary's own errors ---------------------------------------------------------------


def _constructible() -> list[type[LiteclusterError]]:
    out = []
    for cls in error_tree():
        try:
            cls("boom")
        except TypeError:
            continue  # needs more than a message: not raised from the writer as such
        out.append(cls)
    return sorted(out, key=lambda c: c.__qualname__)


class RaisingPrimary(FakePrimary):
    def __init__(self, exc: LiteclusterError) -> None:
        super().__init__(Position(3, 5))
        self.exc = exc

    async def write(self, name: str, statements: list[Statement], *,
                    transaction: bool) -> WriteOutcome:  # fmt: skip
        raise self.exc


@pytest.mark.parametrize("cls", _constructible(), ids=lambda c: c.__qualname__)
def test_every_error_class_raised_on_the_write_path_answers_with_every_key(
    tmp_path: Path, cls: type[LiteclusterError]
) -> None:
    node = FakeNode(tmp_path)
    node.primary = RaisingPrimary(cls("boom"))
    node.upstream = None

    async def body(client: TestClient[Any, Any]) -> None:
        r = await client.post("/db/execute", json=["INSERT INTO t VALUES (1)"])
        await _check({cls.__qualname__: r})
        got = await r.json()
        assert (got["retryable"], got["indeterminate"], got["committed"]) == (
            cls.retryable, cls.indeterminate, cls.committed)  # fmt: skip

    _run(node, body)


def test_lapsed_leases_positions_not_reached_and_the_unforeseen_answer_with_every_key(
    tmp_path: Path,
) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    _database(node)

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug nobody foresaw")

    async def body(client: TestClient[Any, Any]) -> None:
        q = "/db/query"
        answers = {
            "position not reached": await client.get(
                q, params={"q": "SELECT v FROM t", "level": "none", "min_position": "3:99"}
            ),
            "no such database": await client.get(q, params={"q": "SELECT 1", "db": "other"}),
        }
        node.replicated = False  # synchronous mode: commits the replicas do not hold yet
        for level in ("strong", "linearizable"):
            answers[f"{level} not yet replicated"] = await client.get(
                q, params={"q": "SELECT 1", "level": level}
            )
        node.replicated, node.lease = True, False
        for level in ("strong", "linearizable"):
            answers[f"{level} without the lease"] = await client.get(
                q, params={"q": "SELECT 1", "level": level}
            )
        node.status = broken  # type: ignore[method-assign]
        answers["internal error"] = await client.get("/status")
        await _check(answers)
        assert answers["position not reached"].status == 503
        assert answers["no such database"].status == 404

    _run(node, body)


def test_sql_errors_are_results_with_an_error_not_error_bodies(tmp_path: Path) -> None:
    """rqlite's shape: the request succeeded, a statement failed (a statement timeout
    too)."""
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    _database(node)
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")  # fmt: skip

    async def body(client: TestClient[Any, Any]) -> None:
        for sql, expected in (("SELECT nope FROM t", "no such column"),
                              (slow, "statement timeout")):  # fmt: skip
            r = await client.get("/db/query", params={"q": sql, "level": "none"})
            assert r.status == 200
            result = (await r.json())["results"][0]
            assert expected in result["error"], result

    _run(node, body)

"""CORS on the HTTP port: allowed origins get Access-Control-Allow-Origin on every answer
(errors too), preflights are answered with the methods and headers a page needs (Authorization
included), other origins get neither."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from litecluster.server.credentials import Identity
from litecluster.server.forward import Forwarder
from litecluster.server.http.app import make_app
from litecluster.server.metrics import registry_for
from support.doors import FakeNode
from support.nodes import Nodes

PAGE = "https://app.example"


class _NoKv:
    async def serve(self, body: bytes, caller: Identity) -> bytes:
        return b"\x90"


def _app(node: FakeNode, origins: tuple[str, ...]) -> web.Application:
    forward = Forwarder(upstream=lambda: node.upstream, session=node.http_client, tls=None,
                        timeout=2, wait_applied=node.wait_applied)  # fmt: skip
    return make_app(node.door(None), _NoKv(), registry_for(node), forward, backups=node,
                    allow_origins=origins)  # fmt: skip


def _serve(app: web.Application, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await body(client)

    asyncio.run(run())


def _preflight(method: str = "POST") -> dict[str, str]:
    return {"Origin": PAGE, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip


def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)

    async def body(client: TestClient[Any, Any]) -> None:
        pre = await client.options("/db/execute", headers=_preflight())
        assert pre.status == 204
        assert pre.headers["Access-Control-Allow-Origin"] == PAGE
        assert "POST" in pre.headers["Access-Control-Allow-Methods"]
        allowed = pre.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
        assert "Origin" in pre.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in pre.headers
        ok = await client.get("/health", headers={"Origin": PAGE})
        assert ok.headers["Access-Control-Allow-Origin"] == PAGE
        # Errors carry the header too, so the page can read the error body.
        bad = await client.post("/db/execute", data=b"{nope", headers={"Origin": PAGE})
        assert bad.status == 400
        assert bad.headers["Access-Control-Allow-Origin"] == PAGE
        missing = await client.get("/no/such/route", headers={"Origin": PAGE})
        assert missing.status == 404
        assert missing.headers["Access-Control-Allow-Origin"] == PAGE

    _serve(_app(node, (PAGE, "http://127.0.0.1:8080")), body)


def test_other_origins_get_no_cors_headers_and_a_refused_preflight(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    evil = {**_preflight(), "Origin": "https://evil.example"}

    async def body(client: TestClient[Any, Any]) -> None:
        pre = await client.options("/db/execute", headers=evil)
        assert pre.status == 403
        assert "Access-Control-Allow-Origin" not in pre.headers
        assert (await pre.json())["error"] == "origin not allowed"
        got = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert got.status == 200
        assert "Access-Control-Allow-Origin" not in got.headers
        # Not a preflight (no Origin): OPTIONS is not a method of the route.
        plain = await client.options("/db/execute")
        assert plain.status == 405

    _serve(_app(node, (PAGE,)), body)


def test_without_allowed_origins_nothing_changes(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)

    async def body(client: TestClient[Any, Any]) -> None:
        pre = await client.options("/db/execute", headers=_preflight())
        assert pre.status == 405
        assert "Access-Control-Allow-Origin" not in pre.headers
        got = await client.get("/health", headers={"Origin": PAGE})
        assert "Access-Control-Allow-Origin" not in got.headers

    _serve(_app(node, ()), body)


def test_any_origin_is_answered_with_a_wildcard(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)

    async def body(client: TestClient[Any, Any]) -> None:
        pre = await client.options("/db/query", headers={**_preflight("GET"), "Origin": "null"})
        assert pre.status == 204
        assert pre.headers["Access-Control-Allow-Origin"] == "*"

    _serve(_app(node, ("*",)), body)


def test_a_node_started_with_the_flag_answers_cors(tmp_path: Path) -> None:
    nodes = Nodes(tmp_path)
    try:
        node = nodes.node("p1", args=["--http-allow-origin", PAGE,
                                      "--http-allow-origin", "http://localhost:3000"])  # fmt: skip
        base = f"http://{node.http}"
        pre = httpx.options(f"{base}/db/query", headers=_preflight("GET"))
        assert pre.status_code == 204
        assert pre.headers["Access-Control-Allow-Origin"] == PAGE
        got = httpx.get(f"{base}/db/query", params={"q": "SELECT 1"},
                        headers={"Origin": "http://localhost:3000"})  # fmt: skip
        assert got.status_code == 200
        assert got.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    finally:
        nodes.close()

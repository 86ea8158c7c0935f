"""HTTP authentication on real nodes: every route of the app, enumerated from its router (a new
route fails here until it is walked too), answers 401 without credentials or with wrong ones,
403 to a user lacking its permission, and its normal answer to the cluster token and to a
user holding the permission, on the primary and on a replica (which forwards writes with the
caller's credentials, checked again by the primary)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import msgspec
import pytest
from aiohttp import web

from litecluster.cli.localcluster import LocalNode
from litecluster.kv.wire import ExecRequest
from litecluster.server.credentials import Identity, basic_header
from litecluster.server.forward import Forwarder
from litecluster.server.http.app import make_app
from litecluster.server.http.perms import Permission, permission_of
from litecluster.server.metrics import registry_for
from support.doors import FakeNode
from support.nodes import AUTH_ON, Nodes, wait_streaming

PASSWORD = "correct horse battery staple"
USERS = {
    "reader": ["query"],
    "writer": ["execute"],
    "monitor": ["status", "ready"],
    "operator": ["admin"],
    "everything": ["all"],
    "sneaky": ["all"],  # on the replica; the primary's file gives it "query" only
}


def _users_file(path: Path, users: dict[str, list[str]]) -> Path:
    entries = [
        {"username": name, "password": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
         "perms": perms}
        for name, perms in users.items()
    ]  # fmt: skip
    path.write_text(json.dumps(entries))
    return path


class _NoKv:
    async def serve(self, body: bytes, caller: Identity) -> bytes:
        return b"\x90"


def app_routes(tmp_path: Path) -> list[tuple[str, str, Permission | None]]:
    """Every (method, path, permission) the node's HTTP app serves, from its router."""
    node = FakeNode(tmp_path)
    forward = Forwarder(upstream=lambda: node.upstream, session=node.http_client, tls=None,
                        timeout=2, wait_applied=node.wait_applied)  # fmt: skip
    app: web.Application = make_app(node.door(None), _NoKv(), registry_for(node), forward,
                                        backups=node)  # fmt: skip
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        out.append((route.method, path, permission_of(route.handler)))
    return out


def _kv_read() -> bytes:
    return msgspec.msgpack.encode(ExecRequest([(0, [b"GET", b"k"])], [], 0, [], False))


@dataclass(frozen=True)
class Call:
    """How to call a route normally, and the status of its normal answer on each role."""

    kwargs: dict[str, Any]
    primary: int
    replica: int


# Static cluster: /switchover is refused as a request error (400), /promote on the primary and
# on a replica still streaming from its primary is refused (503), /follow without a primary
# is a request error: each is the route's normal answer, past authentication.
CALLS: dict[tuple[str, str], Call] = {
    ("GET", "/status"): Call({}, 200, 200),
    ("GET", "/health"): Call({}, 200, 200),
    ("GET", "/metrics"): Call({}, 200, 200),
    ("POST", "/db/execute"): Call({"json": ["INSERT INTO t VALUES (1)"]}, 200, 200),
    ("GET", "/db/query"): Call({"params": {"q": "SELECT count(*) FROM t"}}, 200, 200),
    ("POST", "/db/query"): Call({"json": ["SELECT count(*) FROM t"]}, 200, 200),
    ("POST", "/db/request"): Call({"json": ["SELECT count(*) FROM t"]}, 200, 200),
    # A replica's drain hands queued entries to the primary; a replica is not the primary.
    ("POST", "/db/queue/apply"): Call({"json": {"origin": "walk", "done_below": 0,
                                                "entries": []}}, 200, 503),
    ("GET", "/readyz"): Call({}, 200, 200),
    ("GET", "/nodes"): Call({}, 200, 200),
    ("GET", "/leader"): Call({}, 200, 200),
    ("GET", "/db/backup"): Call({}, 200, 200),
    ("POST", "/switchover"): Call({"params": {"to": "r"}}, 400, 400),
    ("POST", "/promote"): Call({}, 503, 503),
    ("POST", "/follow"): Call({}, 400, 400),
    ("POST", "/kv/exec"): Call({"content": _kv_read(),
                                "headers": {"Content-Type": "application/msgpack"}}, 200, 200),
}  # fmt: skip


def _call(method: str, path: str) -> Call:
    return CALLS[("GET" if method == "HEAD" else method, path)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNode, LocalNode]]:
    root = tmp_path_factory.mktemp("auth")
    n = Nodes(root)
    p_users = _users_file(root / "users-p.json", {**USERS, "sneaky": ["query"]})
    r_users = _users_file(root / "users-r.json", USERS)
    try:
        # The primary keeps its probes closed too, so that every route is walked there.
        primary = n.node("p", env={**AUTH_ON, "LITECLUSTER_USERS_FILE": str(p_users),
                                   "LITECLUSTER_HTTP_OPEN_PROBES": "false"})  # fmt: skip
        replica = n.node("r", primary, env={**AUTH_ON, "LITECLUSTER_USERS_FILE": str(r_users)})
        token = primary.headers
        httpx.post(f"http://{primary.http}/db/execute", json=["CREATE TABLE t(x)"],
                   headers=token, timeout=30).raise_for_status()  # fmt: skip
        wait_streaming(replica)
        yield primary, replica
    finally:
        n.close()


def test_every_route_declares_a_permission_and_is_walked(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    assert len(routes) >= 13, "the walk found the app's routes"
    undeclared = [(m, p) for m, p, perm in routes if perm is None]
    assert undeclared == [], "every route declares its permission (auth.needs)"
    missing = sorted({(m, p) for m, p, _ in routes} - {(m, p) for m, p, _ in routes
                                                         if (m == "HEAD" or (m, p) in CALLS)})  # fmt: skip
    assert missing == [], "a new route needs its normal call in CALLS"


def _lacking(perm: Permission) -> str:
    """A user of USERS whose permissions do not satisfy ``perm``."""
    for name, perms in USERS.items():
        if name != "sneaky" and not perm.allows(Identity(name, frozenset(perms))):
            return name
    raise AssertionError(f"every user may {perm}")


def _holding(perm: Permission) -> str:
    for name, perms in USERS.items():
        if name not in ("everything", "sneaky") and perm.allows(Identity(name, frozenset(perms))):
            return name
    return "everything"


def _send(node: LocalNode, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    call = _call(method, path)
    kwargs = dict(call.kwargs)
    kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    return httpx.request(method, f"http://{node.http}{path}", timeout=30, **kwargs)


def _unauthorized(resp: httpx.Response, where: str) -> None:
    assert resp.status_code == 401, (where, resp.status_code, resp.text)
    challenges = resp.headers.get_list("WWW-Authenticate")
    assert any(c.startswith("Basic ") for c in challenges), where
    assert any(c.startswith("Bearer ") for c in challenges), where
    if resp.request.method != "HEAD":
        body = resp.json()
        assert body["retryable"] is False
        assert "Bearer" in body["hint"]


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_every_route_needs_credentials_and_its_permission(
    cluster: tuple[LocalNode, LocalNode], role: str, tmp_path: Path
) -> None:
    primary, replica = cluster
    node = primary if role == "primary" else replica
    open_probes = role == "replica"  # the replica runs with the default: probes open
    token = primary.headers
    for method, path, perm in app_routes(tmp_path):
        assert perm is not None
        where = f"{role} {method} {path}"
        want = getattr(_call(method, path), role)
        bare = _send(node, method, path, {})
        if perm.probe and open_probes:
            assert bare.status_code == want, where
        else:
            _unauthorized(bare, where)
            _unauthorized(_send(node, method, path, {"Authorization": "Bearer " + "x" * 64}),
                          where)  # fmt: skip
            _unauthorized(_send(node, method, path, {"Authorization": basic_header(
                _holding(perm), "wrong password")}), where)  # fmt: skip
            _unauthorized(_send(node, method, path, {"Authorization": "Digest abc"}), where)
            lacking = _lacking(perm)
            denied = _send(node, method, path, {"Authorization": basic_header(lacking, PASSWORD)})
            assert denied.status_code == 403, (where, lacking, denied.text)
            if method != "HEAD":
                assert denied.json()["user"] == lacking
        for headers in (token, {"Authorization": basic_header(_holding(perm), PASSWORD)}):
            got = _send(node, method, path, headers)
            assert got.status_code == want, (where, headers, got.text)
            assert got.status_code not in (401, 403)


def test_unknown_routes_answer_only_authenticated_callers(
    cluster: tuple[LocalNode, LocalNode],
) -> None:
    primary, _ = cluster
    _unauthorized(httpx.get(f"http://{primary.http}/no/such/route"), "unknown route")
    assert httpx.get(f"http://{primary.http}/no/such/route", headers=primary.headers
                     ).status_code == 404  # fmt: skip
    assert httpx.delete(f"http://{primary.http}/db/execute", headers=primary.headers
                        ).status_code == 405  # fmt: skip


def test_a_forwarded_request_is_checked_again_by_the_primary(
    cluster: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = cluster
    sneaky = {"Authorization": basic_header("sneaky", PASSWORD)}
    # The replica's users file lets "sneaky" write; the primary's does not: the write is
    # forwarded with sneaky's own credentials and refused there.
    for path in ("/db/execute", "/db/request"):
        got = httpx.post(f"http://{replica.http}{path}", json=["INSERT INTO t VALUES (666)"],
                         headers=sneaky, timeout=30)  # fmt: skip
        assert got.status_code == 403, got.text
        assert got.json()["user"] == "sneaky"
    write = msgspec.msgpack.encode(ExecRequest([(0, [b"SET", b"k", b"v"])], [], 0, [], False))
    kv = httpx.post(f"http://{replica.http}/kv/exec", content=write, headers=sneaky, timeout=30)
    assert kv.status_code == 403, kv.text
    q = {"q": "SELECT count(*) FROM t WHERE x = 666", "level": "strong"}
    counted = httpx.get(f"http://{primary.http}/db/query", params=q, headers=primary.headers)
    assert counted.json()["results"][0]["values"] == [[0]]
    # A writer on both files writes through the replica, and reads it back there.
    writer = {"Authorization": basic_header("writer", PASSWORD)}
    ok = httpx.post(f"http://{replica.http}/db/execute", json=["INSERT INTO t VALUES (7)"],
                    headers=writer, timeout=30)  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert "error" not in ok.json()["results"][0]


def test_a_queued_write_is_checked_again_by_the_primary(
    cluster: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = cluster
    url = f"http://{replica.http}/db/execute?queue&wait&timeout=20s"
    # The replica lets "sneaky" queue (its users file grants it everything); its drain sends
    # the entry with the replica's token, and the primary checks the user against its own file.
    sneaky = httpx.post(url, json=["INSERT INTO t VALUES (667)"], timeout=30,
                        headers={"Authorization": basic_header("sneaky", PASSWORD)})  # fmt: skip
    assert sneaky.status_code == 403, sneaky.text
    assert sneaky.json()["sequence_number"] > 0
    assert "lacks the execute permission on the primary" in sneaky.json()["error"]
    writer = httpx.post(url, json=["INSERT INTO t VALUES (668)"], timeout=30,
                        headers={"Authorization": basic_header("writer", PASSWORD)})  # fmt: skip
    assert writer.status_code == 200, writer.text
    q = {"q": "SELECT x FROM t WHERE x IN (667, 668)", "level": "strong"}
    got = httpx.get(f"http://{primary.http}/db/query", params=q, headers=primary.headers)
    assert got.json()["results"][0]["values"] == [[668]]
    st = replica.status()["queue"]
    assert st["failed"] == 1
    assert st["queued"] == 0

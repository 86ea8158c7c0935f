"""The front doors against a fake node: each door takes the small protocols it declares, so
its routing and answers are tested here over real sockets and files, without a server.
Also: no module of the server imports the node, and the server's imports have no cycle."""

from __future__ import annotations

import ast
import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from litecluster.engine.position import Position
from litecluster.errors import IndeterminateWriteError, KvRequestError, NotPrimaryError
from litecluster.kv.reply import Reply, loads
from litecluster.kv.wire import ExecRequest, decode_reply
from litecluster.kv.wire import encode as kv_encode
from litecluster.replication.config import Address
from litecluster.server.credentials import Identity
from litecluster.server.forward import Forwarder
from litecluster.server.http.app import make_app
from litecluster.server.kvstore import KvStore, Request
from litecluster.server.metrics import registry_for, render
from litecluster.server.resp.pubsub import PubSub
from litecluster.server.resp.server import RespServer, RespSettings
from support.doors import FakeNode, FakePrimary

SERVER = Path(__file__).resolve().parents[2] / "src" / "litecluster" / "server"


class FakeKv:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def serve(self, body: bytes, caller: Identity) -> bytes:
        self.bodies.append(body)
        if body == b"bad":
            raise KvRequestError("malformed key/value request", hint="send msgpack")
        return b"\x90"


class FakeSwitchover:
    def __init__(self) -> None:
        self.targets: list[str] = []

    async def switchover(self, target: str, timeout: float = 5.0) -> None:
        self.targets.append(target)


def _serve(app: web.Application, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await body(client)

    asyncio.run(run())


def _no_forward(node: FakeNode) -> Forwarder:
    """The forward path of a fake node: to its fake upstream, which no server answers."""
    return Forwarder(upstream=lambda: node.upstream, session=node.http_client, tls=None,
                     timeout=2, wait_applied=node.wait_applied)  # fmt: skip


def _app(node: FakeNode, kv: FakeKv | None = None, switchover: Any = None) -> web.Application:
    return make_app(node.door(switchover), kv or FakeKv(), registry_for(node), _no_forward(node),
                    backups=node)  # fmt: skip


def _database(node: FakeNode) -> None:
    (node.data_dir / "db").mkdir(parents=True)
    with sqlite3.connect(node.data_dir / "db" / "main.db") as conn:
        conn.execute("CREATE TABLE t(v)")
        conn.execute("INSERT INTO t VALUES ('here')")


# ---- the SQL API ---------------------------------------------------------------------------------


def test_a_replica_reads_its_own_file_and_waits_for_a_position(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    _database(node)
    node.applied["main"] = 7

    async def body(client: TestClient[Any, Any]) -> None:
        q = {"q": "SELECT v FROM t", "level": "none"}
        got = await client.get("/db/query", params=q)
        assert (await got.json())["results"][0]["values"] == [["here"]]
        ahead = await client.get("/db/query", params={**q, "min_position": "3:8"})
        assert ahead.status == 503
        assert (await ahead.json())["applied"] == 7
        reached = await client.get("/db/query", params={**q, "min_position": "3:7"})
        assert reached.status == 200
        bare = await client.get("/db/query", params={**q, "min_position": "7"})
        assert bare.status == 200, "a bare txid names no epoch: compared by txid alone"
        node.excluded_epochs.add(2)
        lost = await client.get("/db/query", params={**q, "min_position": "2:5"})
        assert lost.status == 409
        body = await lost.json()
        assert (body["retryable"], body["indeterminate"], body["committed"]) == (
            False, False, False,
        )  # fmt: skip
        assert "excludes" in body["error"]
        assert body["hint"]
        assert body["min_position"] == "2:5"
        bad = await client.get("/db/query", params={**q, "min_position": "x:5"})
        assert bad.status == 400
        missing = await client.get("/db/query", params={**q, "db": "other"})
        assert missing.status == 404

    _serve(_app(node), body)


def test_freshness_is_judged_by_the_upstreams_last_message(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    _database(node)
    q = {"q": "SELECT v FROM t", "level": "none", "freshness": "1s"}

    async def body(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/db/query", params=q)).status == 200
        assert node.upstream is not None
        node.upstream.last_message_at = time.time() - 30
        stale = await client.get("/db/query", params=q)
        assert stale.status == 503
        assert "recently enough" in (await stale.json())["error"]
        node.upstream = None
        lost = await client.get("/db/query", params=q)
        assert "follows no primary" in (await lost.json())["error"]

    _serve(_app(node), body)


def test_freshness_takes_go_durations_and_rqlites_zero_and_strict(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    _database(node)
    q = {"q": "SELECT v FROM t", "level": "none"}

    async def body(client: TestClient[Any, Any]) -> None:
        async def status(**params: str) -> tuple[int, dict[str, Any]]:
            got = await client.get("/db/query", params={**q, **params})
            return got.status, await got.json()

        assert node.upstream is not None
        node.upstream.last_message_at = time.time() - 75
        assert (await status(freshness="1m30s"))[0] == 200
        assert (await status(freshness="1h"))[0] == 200
        assert (await status(freshness="1m"))[0] == 503
        assert (await status(freshness="500ms"))[0] == 503
        assert (await status(freshness="0"))[0] == 200, "0 means no bound, as in rqlite"
        assert (await status(level="auto", freshness="1m"))[0] == 503, "auto reads locally here"
        for bad in ("bogus", "nan", "inf", "-1s", "5", "1e999s", "1 s", ""):
            code, err = await status(freshness=bad)
            assert code == 400, bad
            assert "duration" in err["error"]
        node.upstream.last_message_at = time.time()
        node.applied["main"] = 5
        node.upstream.heads = {"main": 9}
        assert (await status(freshness="1s"))[0] == 200
        code, err = await status(freshness="1s", freshness_strict="true")
        assert code == 503
        assert err["primary_head"] == "9"
        node.applied["main"] = 9
        assert (await status(freshness="1s", freshness_strict="true"))[0] == 200

    _serve(_app(node), body)


def test_a_write_runs_on_the_primary_role_and_names_the_acknowledging_node(
    tmp_path: Path,
) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 42))

    async def body(client: TestClient[Any, Any]) -> None:
        got = await client.post("/db/execute", params={"transaction": "1"},
                                json=["INSERT INTO t VALUES (1)"])  # fmt: skip
        assert got.status == 200
        assert (await got.json())["position"] == {"epoch": 3, "txid": 42, "node": "n-fake"}

    _serve(_app(node), body)
    assert node.primary.writes == [("main", ["INSERT INTO t VALUES (1)"], True)]


def test_readyz_follows_the_role_and_the_upstream(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)

    async def body(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/readyz")).status == 200
        assert node.upstream is not None
        node.upstream.state = "connecting"
        assert (await client.get("/readyz")).status == 503
        node.primary = FakePrimary(Position(3, 1))
        assert (await client.get("/readyz")).status == 200
        node.ready = False
        assert (await client.get("/readyz")).status == 503
        health = await client.get("/health")
        assert (health.status, await health.json()) == (503, {"ok": False, "role": "primary"})

    _serve(_app(node), body)


def test_cluster_operations_go_to_the_ports(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.applied["main"] = 5
    ha = FakeSwitchover()

    async def static(client: TestClient[Any, Any]) -> None:
        refused = await client.post("/switchover", params={"to": "n2"})
        assert refused.status == 400
        assert "--etcd" in (await refused.json())["error"]
        promoted = await client.post("/promote", params={"force": "1"})
        assert await promoted.json() == {"node_id": "n-fake", "epoch": 4,
                                         "listen": "127.0.0.1:4001", "positions": {"main": 5}}  # fmt: skip
        followed = await client.post("/follow", params={"primary": "10.0.0.9:4001"})
        assert (await followed.json())["following"] == "10.0.0.9:4001"
        bad = await client.post("/follow", params={"primary": "nowhere"})
        assert bad.status == 400

    async def elected(client: TestClient[Any, Any]) -> None:
        assert (await client.post("/switchover")).status == 400
        done = await client.post("/switchover", params={"to": "n2"})
        assert (await done.json())["switched_to"] == "n2"

    _serve(_app(node), static)
    _serve(_app(node, switchover=ha), elected)
    assert node.promoted == [True]
    assert node.followed == [Address("10.0.0.9", 4001)]
    assert ha.targets == ["n2"]


def test_status_metrics_and_kv_exec_come_from_their_ports(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    kv = FakeKv()

    async def body(client: TestClient[Any, Any]) -> None:
        status = await (await client.get("/status")).json()
        assert status["node"]["role"] == "replica"
        nodes = await (await client.get("/nodes")).json()
        assert nodes["n-primary"]["leader"] is True
        text = await (await client.get("/metrics")).text()
        assert "litecluster_role_primary 0.0" in text
        assert "litecluster_epoch 3.0" in text
        ok = await client.post("/kv/exec", data=b"\x91")
        assert (ok.status, await ok.read()) == (200, b"\x90")
        bad = await client.post("/kv/exec", data=b"bad")
        assert (bad.status, (await bad.json())["hint"]) == (400, "send msgpack")

    _serve(_app(node, kv), body)
    assert kv.bodies == [b"\x91", b"bad"]


def test_metrics_of_a_primary_role(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 11))
    text = render(registry_for(node)).decode()
    assert "litecluster_role_primary 1.0" in text
    assert 'litecluster_position_txid{db="main"} 11.0' in text
    assert 'litecluster_txlog_bytes{db="main"} 4096.0' in text


# ---- the key/value store -------------------------------------------------------------------------


def test_the_kv_store_reads_here_and_refuses_a_write_with_no_primary(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.upstream = None
    store = KvStore("kv", node.db_path("kv"), node, _no_forward(node))

    async def run() -> None:
        raw = await store.serve(kv_encode(ExecRequest([(0, [b"GET", b"k"])], [], 0, [])))
        reply = decode_reply(raw)
        assert reply.replies is not None
        assert ([loads(r) for r in reply.replies], reply.txid, reply.epoch) == ([None], 0, 3)
        with pytest.raises(NotPrimaryError, match="follows no primary"):
            await store.write(Request([(0, [b"SET", b"k", b"v"])]))

    try:
        asyncio.run(run())
    finally:
        store.close()


# ---- the Redis protocol --------------------------------------------------------------------------


class FakeStore:
    def __init__(self) -> None:
        self.writes: list[Request] = []
        self.fail: Exception | None = None

    async def read(self, commands: list[tuple[int, list[bytes]]], level: str,
                   caller: str | None = None) -> list[Reply]:  # fmt: skip
        return [b"read:" + args[1] for _, args in commands]

    async def write(self, request: Request) -> list[Reply] | None:
        if self.fail is not None:
            raise self.fail
        self.writes.append(request)
        return [b"OK"] * len(request.commands)

    def keyspace(self) -> dict[int, tuple[int, int]]:
        return {0: (4, 1)}

    def applied_txid(self) -> int:
        return 9


def _resp(node: FakeNode, store: FakeStore, *, readonly: bool,
          check: Callable[[redis.Redis], None]) -> None:  # fmt: skip
    settings = RespSettings(Address("127.0.0.1", 0), None, {"default": "sesame"},
                            readonly_replica=readonly)  # fmt: skip
    server = RespServer(node, store, PubSub(), settings)

    async def run() -> None:
        host, _, port = (await server.start()).rpartition(":")
        client = redis.Redis(host=host, port=int(port), password="sesame", socket_timeout=5)
        try:
            await asyncio.to_thread(check, client)
        finally:
            client.close()
            await server.close()

    asyncio.run(run())


def test_resp_answers_readonly_on_a_replica_and_reports_its_role(tmp_path: Path) -> None:
    node, store = FakeNode(tmp_path), FakeStore()

    def check(r: redis.Redis) -> None:
        assert r.get("k") == b"read:k"
        with pytest.raises(redis.exceptions.ReadOnlyError):
            r.set("k", "v")
        info = r.info("replication")
        assert (info["role"], info["master_port"], info["litecluster_epoch"]) == ("slave", 4002, 3)
        assert r.info("keyspace")["db0"]["keys"] == 4

    _resp(node, store, readonly=True, check=check)
    assert store.writes == []


def test_resp_writes_through_the_store_and_maps_an_unknown_outcome(tmp_path: Path) -> None:
    node, store = FakeNode(tmp_path), FakeStore()
    node.primary = FakePrimary(Position(3, 1))

    def check(r: redis.Redis) -> None:
        assert r.set("k", "v") is True
        assert r.info("replication")["role"] == "master"
        store.fail = IndeterminateWriteError("the primary went away")
        with pytest.raises(redis.exceptions.ResponseError, match=r"^INDETERMINATE"):
            r.set("k", "w")

    _resp(node, store, readonly=True, check=check)
    assert [w.commands for w in store.writes] == [[(0, [b"SET", b"k", b"v"])]]


# ---- imports -------------------------------------------------------------------------------------


def _server_imports() -> dict[str, set[str]]:
    """Each module of ``litecluster.server`` and the server modules it imports, counting
    imports under TYPE_CHECKING."""
    modules = {
        ".".join(("litecluster", *p.relative_to(SERVER.parent).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in SERVER.rglob("*.py")
    }
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[name] = {m for m in found if m in modules and m != name}
    return out


def test_no_server_module_but_the_process_imports_the_node() -> None:
    imports = _server_imports()
    assert "litecluster.server.node" in imports
    importers = sorted(m for m, deps in imports.items() if "litecluster.server.node" in deps)
    # The process (event loop, signals, exit code) runs the node; the doors never see it.
    assert importers == ["litecluster.server.process"]


def test_the_servers_imports_have_no_cycle() -> None:
    imports = _server_imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for dep in sorted(imports[module]):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(imports):
        visit(module, [])


def test_strong_and_linearizable_reads_need_the_lease_before_and_after_they_run(
    tmp_path: Path,
) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    _database(node)
    checks: list[str] = []
    real_confirm = node.confirm_leadership

    async def confirm() -> bool:
        checks.append("confirmed")
        return await real_confirm()

    node.confirm_leadership = confirm  # type: ignore[method-assign]

    async def body(client: TestClient[Any, Any]) -> None:
        for level in ("strong", "linearizable", "weak"):
            r = await client.get("/db/query", params={"q": "SELECT v FROM t", "level": level})
            assert r.status == 200, await r.text()
        assert checks == ["confirmed"], "only a linearizable read asks the coordinator"
        node.lease = False  # the lease ran out (a pause past the TTL)
        for level in ("strong", "linearizable"):
            r = await client.get("/db/query", params={"q": "SELECT v FROM t", "level": level})
            assert r.status == 503
            body = await r.json()
            assert (body["retryable"], body["indeterminate"]) == (True, False)
            assert "lease" in body["error"]
            assert body["hint"]
        # A weak read is rqlite's: the node's own belief that it is the primary.
        r = await client.get("/db/query", params={"q": "SELECT v FROM t", "level": "weak"})
        assert r.status == 200
        # Valid when the read starts, lapsed by the time it ran: refused all the same.
        answers = iter([True, False])
        node.lease_valid = lambda: next(answers)  # type: ignore[method-assign]
        r = await client.get("/db/query", params={"q": "SELECT v FROM t", "level": "strong"})
        assert r.status == 503
        assert next(answers, "both used") == "both used"

    _serve(_app(node), body)


ERROR_KEYS = {"error", "retryable", "indeterminate", "committed", "hint"}


def test_every_error_of_the_http_port_is_one_json_body_with_its_flags(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.primary = FakePrimary(Position(3, 5))
    node.upstream = None
    node.excluded_epochs.add(1)
    _database(node)

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug nobody foresaw")

    async def body(client: TestClient[Any, Any]) -> None:
        answers = {
            "unknown route": await client.get("/nope"),
            "wrong method": await client.delete("/db/query"),
            "malformed request": await client.post("/db/execute", data=b"{not json"),
            "bad level": await client.get("/db/query", params={"q": "SELECT 1", "level": "x"}),
            "no database": await client.get("/db/query", params={"q": "SELECT 1", "db": "nope"}),
            "position not reached": await client.get(
                "/db/query",
                params={"q": "SELECT v FROM t", "level": "none", "min_position": "3:99"},
            ),
            "position excluded": await client.get(
                "/db/query",
                params={"q": "SELECT v FROM t", "level": "none", "min_position": "1:2"},
            ),
            "malformed kv request": await client.post("/kv/exec", data=b"bad"),
            "too large": await client.post("/db/execute", data=b"x" * (2 << 20)),
        }
        node.status = broken  # type: ignore[method-assign]
        answers["internal error"] = await client.get("/status")
        for what, r in answers.items():
            assert r.status >= 400, what
            assert r.content_type == "application/json", what
            got = await r.json()
            assert set(got) >= ERROR_KEYS, (what, got)
            assert sum((got["retryable"], got["indeterminate"], got["committed"])) <= 1, what
            assert got["hint"], (what, got)
            assert "Traceback" not in json.dumps(got), what
        assert answers["internal error"].status == 503
        assert answers["position not reached"].status == 503
        assert answers["position excluded"].status == 409

    _serve(_app(node), body)


def test_nodes_in_both_rqlite_shapes_leader_and_redirect(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    _database(node)

    async def replica(client: TestClient[Any, Any]) -> None:
        v1 = await (await client.get("/nodes")).json()
        assert set(v1) == {"n-fake", "n-primary"}
        assert v1["n-primary"] == {"api_addr": "http://127.0.0.1:4002", "addr": "127.0.0.1:4001",
                                   "voter": True, "reachable": True, "leader": True, "time": 0.0}  # fmt: skip
        v2 = await (await client.get("/nodes", params={"ver": "2"})).json()
        assert sorted(n["id"] for n in v2["nodes"]) == ["n-fake", "n-primary"]
        assert (await client.get("/nodes", params={"ver": "3"})).status == 400
        lead = await (await client.get("/leader")).json()
        assert lead["leader"]["id"] == "n-primary"
        for method, path, params in (("POST", "/db/execute", {"redirect": ""}),
                                     ("GET", "/db/query", {"q": "SELECT 1", "redirect": "true"})):  # fmt: skip
            got = await client.request(method, path, params=params, allow_redirects=False,
                                       json=["INSERT INTO t VALUES (1)"])  # fmt: skip
            assert got.status == 301
            assert got.headers["Location"].startswith(f"http://127.0.0.1:4002{path}?")
        local = await client.get("/db/query", allow_redirects=False,
                                 params={"q": "SELECT v FROM t", "redirect": "1", "level": "none"})  # fmt: skip
        assert local.status == 200, "a local read is not redirected"
        node.upstream = None
        assert (await client.get("/leader")).status == 503

    _serve(_app(node), replica)

    primary = FakeNode(tmp_path / "p", node_id="n-p")
    primary.primary = FakePrimary(Position(3, 1))
    primary.upstream = None
    primary.replicas = [
        {"node_id": "r1", "http": "10.0.0.2:4002", "peer": "10.0.0.2:5000", "state": "streaming",
         "counts_for_sync": True},
        {"node_id": "app-7", "http": "", "peer": "10.0.0.9:6000", "state": "disconnected",
         "counts_for_sync": False},
    ]  # fmt: skip

    async def on_primary(client: TestClient[Any, Any]) -> None:
        voters = await (await client.get("/nodes")).json()
        assert set(voters) == {"n-p", "r1"}
        assert voters["n-p"]["leader"] is True
        every = await (await client.get("/nodes", params={"nonvoters": "true"})).json()
        assert every["app-7"] == {"api_addr": "", "addr": "10.0.0.9:6000", "voter": False,
                                  "reachable": False, "leader": False, "time": 0.0}  # fmt: skip
        assert (await (await client.get("/leader")).json())["leader"]["id"] == "n-p"

    _serve(_app(primary), on_primary)

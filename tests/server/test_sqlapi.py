"""The rqlite-compatible SQL API on real nodes: rqlite clients, group commit, forwarding."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyrqlite.dbapi2 as rqlite
import pytest

from support import wait_for
from support.errortree import error_tree
from support.nodes import Nodes, db_file, wait_converged, wait_streaming


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Nodes, str, str]]:
    n = Nodes(tmp_path)
    env = {"LITECLUSTER_READ_WAIT_TIMEOUT": "2", "LITECLUSTER_STATEMENT_TIMEOUT": "1"}
    primary = n.node("p1", env=env)
    replica = n.node("r1", primary, env=env)
    # Started is not streaming yet: a write forwarded before would get a retryable 503.
    wait_streaming(replica)
    yield n, primary.http, replica.http
    n.close()


def _connect(http: str) -> rqlite.Connection:
    host, port = http.rsplit(":", 1)
    return rqlite.connect(host=host, port=int(port))


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_pyrqlite_client_works_against_a_node(cluster: tuple[Nodes, str, str], via: str) -> None:
    _, p_http, r_http = cluster
    conn = _connect(p_http if via == "primary" else r_http)
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)"
    )
    cur.execute("INSERT INTO people(name, age) VALUES(?, ?)", ("fiona", 20))
    assert cur.lastrowid is not None
    cur.executemany("INSERT INTO people(name, age) VALUES(?, ?)", [("bob", 3), ("carol", 41)])
    # Read back from the node the client talks to: forwarded writes are applied there first.
    cur.execute("SELECT name, age FROM people ORDER BY id")
    rows = [tuple(r) for r in cur.fetchall()]
    assert rows == [("fiona", 20), ("bob", 3), ("carol", 41)]
    cur.execute("SELECT count(*) AS n FROM people WHERE age > ?", (10,))
    assert cur.fetchone()[0] == 2
    with pytest.raises(rqlite.Error, match="no such table"):
        cur.execute("INSERT INTO missing VALUES (1)")
    with pytest.raises(rqlite.Error, match="syntax error"):
        cur.execute("SELEKT 1")
    # A transaction (executemany sends ?transaction) with a failing statement applies nothing.
    with pytest.raises(rqlite.Error):
        cur.executemany(
            "INSERT INTO people(name, age) VALUES(?, ?)", [("dave", 1), ("eve", "x", 2)]
        )
    cur.execute("SELECT count(*) FROM people")
    assert cur.fetchone()[0] == 3


def test_32_concurrent_writers_through_primary_and_replica_each_write_exactly_once(
    cluster: tuple[Nodes, str, str],
) -> None:
    nodes, p_http, r_http = cluster
    httpx.post(
        f"http://{p_http}/db/execute", json=["CREATE TABLE t(k TEXT PRIMARY KEY)"]
    ).raise_for_status()
    acked: list[str] = []
    failed_requests = 0
    lock = threading.Lock()

    def client(i: int) -> None:
        nonlocal failed_requests
        target = p_http if i % 2 == 0 else r_http
        with httpx.Client(base_url=f"http://{target}", timeout=30) as c:
            for j in range(25):
                key = f"c{i}-{j}"
                body: list[object] = [["INSERT INTO t(k) VALUES(?)", key]]
                if j % 5 == 0:  # a failing statement in the same (non-transaction) request
                    body.append(["INSERT INTO t(k) VALUES(?)", key])  # duplicate key
                r = c.post("/db/execute", json=body)
                r.raise_for_status()
                res = r.json()["results"]
                assert "error" not in res[0], res
                with lock:
                    acked.append(key)
                    failed_requests += len(res) > 1 and "error" in res[1]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(acked) == 32 * 25
    assert failed_requests == 32 * 5
    primary, replica = nodes.all[0], nodes.all[1]
    wait_converged(primary, [replica])
    for http in (p_http, r_http):
        got = httpx.get(
            f"http://{http}/db/query", params={"q": "SELECT k FROM t", "level": "none"}
        ).json()
        keys = [row[0] for row in got["results"][0]["values"]]
        assert sorted(keys) == sorted(acked), "every acknowledged write exactly once"
    w = primary.status()["writers"]["main"]
    assert w["groups"] < w["requests"], "concurrent requests were committed in groups"


def test_bad_requests_get_clear_errors_and_change_nothing(cluster: tuple[Nodes, str, str]) -> None:
    _, p_http, _ = cluster
    base = f"http://{p_http}"
    httpx.post(f"{base}/db/execute", json=["CREATE TABLE t(x)"]).raise_for_status()
    cases = [
        (b"{not json", "malformed JSON"),
        (b'{"a": 1}', "JSON array"),
        (b"[]", "no statements"),
        (b"[42]", "a statement must be"),
        (b'[["INSERT INTO t VALUES(?)", [1, "x"]]]', "scalars"),  # [1, 2] is a BLOB
        (b"[" + b",".join([b'"SELECT 1"'] * 1001) + b"]", "too many statements"),
    ]
    for body, fragment in cases:
        r = httpx.post(f"{base}/db/execute", content=body)
        assert r.status_code == 400, body[:40]
        assert fragment in r.json()["error"]
    r = httpx.post(f"{base}/db/execute", content=b"[" + b'"x",' * 4_000_000 + b'"x"]')
    assert r.status_code == 413 or "too large" in r.text
    # Writes in a query request, unknown parameters, a statement that runs too long.
    r = httpx.post(f"{base}/db/query", json=["INSERT INTO t VALUES (1)"]).json()
    assert "cannot write" in r["results"][0]["error"]
    r = httpx.post(f"{base}/db/execute", json=[["INSERT INTO t VALUES(:a)", {"b": 1}]]).json()
    assert "error" in r["results"][0]
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    r = httpx.post(f"{base}/db/execute", json=[slow], timeout=30).json()
    assert "timeout" in r["results"][0]["error"]
    got = httpx.get(f"{base}/db/query", params={"q": "SELECT count(*) FROM t"}).json()
    assert got["results"][0]["values"] == [[0]]
    assert (
        httpx.get(f"{base}/db/query", params={"q": "SELECT 1", "level": "bogus"}).status_code == 400
    )


def test_read_your_writes_with_min_position_on_a_replica(cluster: tuple[Nodes, str, str]) -> None:
    _, p_http, r_http = cluster
    w = httpx.post(
        f"http://{p_http}/db/execute", json=["CREATE TABLE t(x)", "INSERT INTO t VALUES (7)"]
    ).json()
    pos = f"{w['position']['epoch']}:{w['position']['txid']}"
    r = httpx.get(f"http://{r_http}/db/query",
                  params={"q": "SELECT x FROM t", "level": "none", "min_position": pos}).json()  # fmt: skip
    assert r["results"][0]["values"] == [[7]]
    far = f"{w['position']['epoch']}:{w['position']['txid'] + 1000}"
    r2 = httpx.get(
        f"http://{r_http}/db/query", params={"q": "SELECT 1", "level": "none", "min_position": far}
    )
    assert r2.status_code == 503
    assert "timed out" in r2.json()["error"]


def test_stdlib_sqlite3_reads_a_replica_file_while_the_node_applies(
    cluster: tuple[Nodes, str, str],
) -> None:
    nodes, p_http, _ = cluster
    replica = nodes.all[1]
    httpx.post(f"http://{p_http}/db/execute", json=["CREATE TABLE t(x INTEGER)"]).raise_for_status()
    wait_converged(nodes.all[0], [replica])  # the table exists on the replica
    reader = subprocess.Popen(
        [sys.executable, "-c", STDLIB_READER, str(db_file(replica))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with httpx.Client(base_url=f"http://{p_http}") as c:
        for i in range(300):
            c.post("/db/execute", json=[["INSERT INTO t VALUES(?)", i]]).raise_for_status()
    wait_converged(nodes.all[0], [replica])
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    counts = [int(x) for x in out.split()]
    assert counts == sorted(counts), "a reader never sees the table go back"
    assert counts[-1] == 300


STDLIB_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
seen = []
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    if not seen or n != seen[-1]:
        seen.append(n)
    if n == 300:
        break
print(" ".join(map(str, seen)))
"""


def test_replica_without_its_primary_gives_retryable_errors_and_honours_freshness(
    cluster: tuple[Nodes, str, str],
) -> None:
    nodes, p_http, r_http = cluster
    primary, replica = nodes.all[0], nodes.all[1]
    httpx.post(
        f"http://{p_http}/db/execute", json=["CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"]
    ).raise_for_status()
    wait_converged(primary, [replica])
    fresh = httpx.get(f"http://{r_http}/db/query",
                      params={"q": "SELECT x FROM t", "level": "none", "freshness": "5s"})  # fmt: skip
    assert fresh.json()["results"][0]["values"] == [[1]]
    primary.kill()
    w = httpx.post(f"http://{r_http}/db/execute", json=["INSERT INTO t VALUES (2)"])
    assert w.status_code == 503
    assert w.json()["retryable"] is True
    # Stale reads are still served when asked for (level=none), refused past freshness.
    q = {"q": "SELECT x FROM t", "level": "none"}
    assert httpx.get(f"http://{r_http}/db/query", params=q).json()["results"][0]["values"] == [[1]]
    stale = httpx.get(f"http://{r_http}/db/query", params={**q, "freshness": "1ms"})
    assert stale.status_code == 503
    assert "recently enough" in stale.json()["error"]
    wait_for(lambda: httpx.get(f"http://{r_http}/readyz").status_code == 503, 30, "not ready")


def test_a_write_to_a_new_database_creates_it_and_it_reaches_replicas(
    cluster: tuple[Nodes, str, str],
) -> None:
    nodes, _, r_http = cluster
    w = httpx.post(f"http://{r_http}/db/execute", params={"db": "flags"},
                   json=["CREATE TABLE f(name TEXT PRIMARY KEY)", "INSERT INTO f VALUES ('beta')"])  # fmt: skip
    assert w.status_code == 200, w.text
    assert "error" not in w.json()["results"][1]
    # Forwarded by the replica, which answered once it had the write: read it back there.
    got = httpx.get(f"http://{r_http}/db/query",
                    params={"db": "flags", "q": "SELECT name FROM f", "level": "none"}).json()  # fmt: skip
    assert got["results"][0]["values"] == [["beta"]]
    wait_converged(nodes.all[0], [nodes.all[1]], "flags")
    bad = httpx.post(f"http://{r_http}/db/execute", params={"db": "../etc"}, json=["SELECT 1"])
    assert bad.status_code == 400


# ---- error bodies: retryable versus indeterminate -----------------------------------------------


def _error_body(exc: Exception) -> tuple[int, dict[str, object]]:
    """The status and JSON body the SQL API's error middleware makes of ``exc``."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from litecluster.server.http import sql as sqlapi
    from support.doors import FakeNode, FakeUpstream

    async def fail(request: web.Request) -> web.Response:
        raise exc

    async def run() -> tuple[int, dict[str, object]]:
        app = web.Application(middlewares=[sqlapi.request_errors])
        node = FakeNode(Path("unused"))
        node.upstream = FakeUpstream(http="10.0.0.1:4001")
        app[sqlapi.DOOR] = node.door()
        app.router.add_post("/db/execute", fail)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/db/execute")
            return resp.status, await resp.json()

    return asyncio.run(run())


def test_an_unacknowledged_sync_write_is_indeterminate_not_retryable() -> None:
    from litecluster.errors import SyncTimeoutError

    status, body = _error_body(SyncTimeoutError("too few replicas acknowledged", position="1:7"))
    assert status == 503
    assert body["retryable"] is False
    assert body["indeterminate"] is True
    assert "may or may not have been applied" in str(body["hint"])
    assert body["position"] == "1:7"


def test_a_lease_lost_during_the_commit_is_indeterminate() -> None:
    from litecluster.errors import LeadershipLostError, NotPrimaryError

    _, body = _error_body(LeadershipLostError("leadership was lost while committing", epoch=3))
    assert (body["retryable"], body["indeterminate"]) == (False, True)
    assert "may or may not have been applied" in str(body["hint"])
    assert body["primary"] == "10.0.0.1:4001"
    _, refused = _error_body(NotPrimaryError("this node is no longer the primary", epoch=3))
    assert (refused["retryable"], refused["indeterminate"]) == (True, False)


def test_an_errors_context_never_overrides_the_fixed_keys() -> None:
    from litecluster.errors import NotPrimaryError, RequestError, SyncTimeoutError, WalError

    _, body = _error_body(SyncTimeoutError("late", retryable=True, error="x", indeterminate=0))
    assert body["error"] == "late"
    assert (body["retryable"], body["indeterminate"]) == (False, True)
    _, body = _error_body(NotPrimaryError("refused", hint="h", retryable=False, detail=1))
    assert (body["error"], body["retryable"], body["hint"], body["detail"]) == (
        "refused", True, "h", "1",
    )  # fmt: skip
    _, body = _error_body(WalError("broken", retryable=True, committed=True))
    assert (body["retryable"], body["indeterminate"], body["committed"]) == (False, False, False)
    status, body = _error_body(RequestError("bad request", error="other"))
    assert (status, body["error"]) == (400, "bad request")


def test_every_error_is_answered_with_its_classs_properties() -> None:
    from litecluster.errors import (
        AuthError,
        ExcludedByNewerHistoryError,
        PermissionDeniedError,
        RequestError,
    )

    answered = 0
    for cls in error_tree():
        status, body = _error_body(cls("it failed"))
        props = (cls.retryable, cls.indeterminate, cls.committed)
        assert (body["retryable"], body["indeterminate"], body["committed"]) == props, cls
        want = (403 if issubclass(cls, PermissionDeniedError) else 401
                if issubclass(cls, AuthError) else 409 if issubclass(cls, ExcludedByNewerHistoryError)
                else 400 if issubclass(cls, RequestError) else 503)  # fmt: skip
        assert status == want, cls
        assert ("primary" in body) == (cls.retryable or cls.indeterminate), cls
        answered += 1
    assert answered > 40

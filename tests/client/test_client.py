"""The Python client: remote mode, embedded replica mode, and the DB-API module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import litecluster
import litecluster.dbapi as dbapi
from litecluster.cli.localcluster import LocalNode
from litecluster.engine.position import Position
from litecluster.replication.history import Reach
from support import wait_for
from support.nodes import Nodes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Nodes, LocalNode, LocalNode]]:
    n = Nodes(tmp_path)
    primary = n.node("p1")
    replica = n.node("r1", primary)
    yield n, primary, replica
    n.close()


def test_remote_client_writes_reads_and_reports_sql_errors(
    cluster: tuple[Nodes, LocalNode, LocalNode],
) -> None:
    _, _primary, replica = cluster
    with litecluster.connect(replica.http) as c:  # a replica forwards the writes
        c.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)")
        r = c.execute("INSERT INTO kv VALUES (?, ?)", ("a", "1"))
        assert r.rows_affected == 1
        assert r.position is not None
        assert r.position.txid > 0
        c.executemany(
            "INSERT INTO kv VALUES (:k, :v)", [{"k": "b", "v": "2"}, {"k": "c", "v": "3"}]
        )
        got = c.query("SELECT k, v FROM kv ORDER BY k", level="none")
        assert got.columns == ["k", "v"]
        assert got.rows == [("a", "1"), ("b", "2"), ("c", "3")]
        with pytest.raises(litecluster.ClientError, match="UNIQUE constraint") as info:
            c.execute("INSERT INTO kv VALUES ('a', 'again')")
        assert info.value.context["sql_error"]
        # An atomic group with a failing statement applies nothing.
        with pytest.raises(litecluster.ClientError):
            c.transaction(
                [("INSERT INTO kv VALUES ('d', '4')", None), ("INSERT INTO nope VALUES (1)", None)]
            )
        assert c.query("SELECT count(*) FROM kv").rows == [(3,)]
    with pytest.raises(litecluster.ClientError) as down:
        litecluster.connect("127.0.0.1:1", timeout=2).execute("SELECT 1")
    assert down.value.retryable


def test_embedded_replica_reads_its_writes_locally_and_sees_other_writers(
    cluster: tuple[Nodes, LocalNode, LocalNode], tmp_path: Path
) -> None:
    nodes, primary, _ = cluster
    client = litecluster.connect(
        primary.http, replica=tmp_path / "app-replica", primary=primary.listen,
        token_file=nodes.token_file,
    )  # fmt: skip
    try:
        client.execute("CREATE TABLE sessions(id INTEGER PRIMARY KEY, user TEXT)")
        for i in range(50):
            client.execute("INSERT INTO sessions(id, user) VALUES (?, ?)", (i, f"u{i}"))
            # Read-your-writes from the local file, immediately.
            assert client.query("SELECT user FROM sessions WHERE id = ?", (i,)).rows == [(f"u{i}",)]
        assert (tmp_path / "app-replica" / "db" / "main.db").exists()
        # Another process writes through the node; the write appears in the local replica.
        subprocess.run(
            [sys.executable, "-c",
             "import litecluster, sys; litecluster.connect(sys.argv[1]).execute("
             "\"INSERT INTO sessions(id, user) VALUES (1000, 'other')\")", primary.http],
            check=True, timeout=60,
        )  # fmt: skip
        wait_for(
            lambda: client.query("SELECT count(*) FROM sessions WHERE id = 1000").rows == [(1,)],
            30, "the other process's write locally",
        )  # fmt: skip
        # Reads are local: they keep working while the primary is down.
        primary.kill()
        assert client.query("SELECT count(*) FROM sessions").rows == [(51,)]
        with pytest.raises(litecluster.ClientError) as info:
            client.execute("INSERT INTO sessions(id, user) VALUES (2000, 'x')")
        assert info.value.retryable
    finally:
        client.close()


def test_dbapi_module_switches_from_sqlite3_with_one_line(
    cluster: tuple[Nodes, LocalNode, LocalNode],
) -> None:
    _, primary, _ = cluster
    conn = dbapi.connect(primary.http)
    cur = conn.cursor()
    cur.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    cur.execute("INSERT INTO t(name) VALUES (?)", ("x",))
    assert cur.lastrowid == 1
    assert cur.rowcount == 1
    cur.executemany("INSERT INTO t(name) VALUES (?)", [("y",), ("z",)])
    cur.execute("SELECT id, name FROM t ORDER BY id")
    assert [d[0] for d in cur.description or ()] == ["id", "name"]
    assert cur.fetchone() == (1, "x")
    assert cur.fetchall() == [(2, "y"), (3, "z")]
    with pytest.raises(dbapi.IntegrityError):
        cur.execute("INSERT INTO t(name) VALUES ('x')")
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELEKT 1")
    conn.commit()
    conn.close()


def test_async_client_writes_and_reads_its_write_on_a_replica(
    cluster: tuple[Nodes, LocalNode, LocalNode],
) -> None:
    import asyncio

    from litecluster.client import aio as aclient

    _, primary, replica = cluster

    async def main() -> list[tuple[object, ...]]:
        async with aclient.connect(primary.http) as p, aclient.connect(replica.http) as r:
            await p.execute("CREATE TABLE t(x INTEGER)")
            results = await asyncio.gather(
                *(p.execute("INSERT INTO t VALUES (?)", (i,)) for i in range(20))
            )
            last = max((res.position for res in results if res.position), key=lambda q: q.txid)
            got = await r.query("SELECT count(*) FROM t", level="none", min_position=last)
            with pytest.raises(litecluster.ClientError, match="no such table"):
                await p.query("SELECT * FROM missing")
            return got.rows

    assert asyncio.run(main()) == [(20,)]


# ---- retryable versus indeterminate failures (no cluster: a mocked transport) -------------------


def _client_answering(handler: object) -> litecluster.Client:
    import httpx

    client = litecluster.connect("http://node.invalid:4002")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return client


def test_a_write_without_a_response_is_indeterminate_and_a_refused_connection_retryable() -> None:
    import httpx

    calls: list[str] = []

    def timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("no answer", request=request)

    client = _client_answering(timeout)
    with pytest.raises(litecluster.ClientError) as write:
        client.execute("INSERT INTO t VALUES (1)")
    assert (write.value.retryable, write.value.indeterminate) == (False, True)
    assert "may or may not have been applied" in write.value.hint
    with pytest.raises(litecluster.ClientError) as read:
        client.query("SELECT 1")
    assert (read.value.retryable, read.value.indeterminate) == (True, False)
    assert calls == ["/db/execute", "/db/query"], "the client never retries by itself"

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(litecluster.ClientError) as down:
        _client_answering(refused).execute("INSERT INTO t VALUES (1)")
    assert (down.value.retryable, down.value.indeterminate) == (True, False)


def test_an_indeterminate_error_response_is_not_retryable() -> None:
    import httpx

    body = {"error": "too few replicas acknowledged", "retryable": False, "indeterminate": True,
            "hint": "the write may or may not have been applied"}  # fmt: skip
    calls: list[str] = []

    def sync_timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, json=body)

    client = _client_answering(sync_timeout)
    with pytest.raises(litecluster.ClientError) as info:
        client.execute("INSERT INTO t VALUES (1)")
    assert (info.value.retryable, info.value.indeterminate) == (False, True)
    assert info.value.hint == body["hint"]
    from litecluster.client.kv import KvError

    with pytest.raises(KvError) as kv:
        client.kv.set("k", "v")
    assert (kv.value.retryable, kv.value.indeterminate) == (False, True)
    assert calls == ["/db/execute", "/kv/exec"], "no retries"

    def not_primary(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "not the primary", "retryable": True})

    with pytest.raises(KvError) as refused:
        _client_answering(not_primary).kv.set("k", "v")
    assert (refused.value.retryable, refused.value.indeterminate) == (True, False)


def test_the_flags_are_the_servers_not_the_status() -> None:
    import httpx

    answers = {
        "/db/execute": (503, {"error": "the txlog is damaged", "retryable": False,
                              "indeterminate": False, "committed": False}),
        "/db/query": (503, {"error": "overloaded"}),  # no flags: not from litecluster's tree
    }  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = answers[request.url.path]
        return httpx.Response(status, json=body)

    client = _client_answering(answer)
    with pytest.raises(litecluster.ClientError) as failed:
        client.execute("INSERT INTO t VALUES (1)")
    assert (failed.value.retryable, failed.value.indeterminate) == (False, False)
    with pytest.raises(litecluster.ClientError) as busy:
        client.query("SELECT 1")
    assert busy.value.retryable


class _Tracker:
    primary_http = "node.invalid:80"


class _LateReplica:
    """An embedded replica that never applies the write in time."""

    follower = None
    tracker = _Tracker()
    reach = Reach.NOT_YET

    def wait_for(self, db: str, position: Position, timeout: float) -> Reach:
        return self.reach

    def close(self) -> None:
        pass


def _committing(request: httpx.Request) -> httpx.Response:
    from litecluster.kv.reply import OK, dumps
    from litecluster.kv.wire import ExecReply, encode

    if request.url.path == "/kv/exec":
        return httpx.Response(200, content=encode(ExecReply([dumps(OK)], 9, 1)))
    return httpx.Response(200, json={"results": [{"rows_affected": 1}],
                                     "position": {"epoch": 1, "txid": 9}})  # fmt: skip


def test_a_committed_write_succeeds_and_the_next_local_read_waits_for_it() -> None:
    from litecluster.client.kv import KvError

    client = _client_answering(_committing)
    client._embedded = _LateReplica()  # type: ignore[assignment]
    r = client.execute("INSERT INTO t VALUES (1)")
    assert r.position == Position(1, 9), "committed: success with its position, not an error"
    with pytest.raises(litecluster.LocalCopyBehindError) as info:
        client.query("SELECT * FROM t")
    assert (info.value.retryable, info.value.indeterminate, info.value.committed) == (
        True, False, False,
    )  # fmt: skip
    assert info.value.context["position"] == "1:9"
    assert client.kv.set("k", "v") is True
    with pytest.raises(KvError) as kv:
        client._settle(client.kv_db, KvError)
    assert isinstance(kv.value, litecluster.LocalCopyBehindError)
    assert kv.value.retryable
    client._embedded = None


def test_a_write_the_local_replicas_newer_history_excludes_is_lost_not_committed() -> None:
    from litecluster.client.kv import KvError

    client = _client_answering(_committing)
    lost = _LateReplica()
    lost.reach = Reach.EXCLUDED
    client._embedded = lost  # type: ignore[assignment]
    client.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(litecluster.ClientError) as info:
        client.query("SELECT * FROM t")
    flags = (info.value.retryable, info.value.indeterminate, info.value.committed)
    assert flags == (False, False, False), "known lost: neither retry blindly nor check"
    assert info.value.context == {"status": 409, "position": "1:9"}
    assert "lost" in info.value.message
    assert client._pending == {}, "said once: the next read is served"
    client.kv.set("k", "v")
    with pytest.raises(KvError) as kv:
        client._settle(client.kv_db, KvError)
    assert (kv.value.committed, kv.value.context["status"]) == (False, 409)
    client._embedded = None


def test_dbapi_errors_are_in_the_tree_and_keep_the_requests_flags() -> None:
    import httpx

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    conn = dbapi.connect("http://node.invalid:4002")
    conn._client._http = httpx.Client(base_url=conn._client.url,
                                      transport=httpx.MockTransport(timeout))  # fmt: skip
    with pytest.raises(dbapi.OperationalError) as write:
        conn.execute("INSERT INTO t VALUES (1)")
    assert isinstance(write.value, litecluster.LiteclusterError)
    assert (write.value.retryable, write.value.indeterminate) == (False, True)
    with pytest.raises(dbapi.Error) as read:
        conn.execute("SELECT 1")
    assert (read.value.retryable, read.value.indeterminate) == (True, False)
    assert str(read.value) == read.value.message, "str() is the message alone, as in sqlite3"


def test_an_embedded_replica_that_cannot_reach_its_primary_is_retryable_and_lets_go(
    tmp_path: Path,
) -> None:
    import socket

    from litecluster.client.embedded import EmbeddedReplica
    from litecluster.client.join import join_settings
    from litecluster.errors import NodeError

    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        primary = f"127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(litecluster.ClientError) as info:
            litecluster.connect(
                "127.0.0.1:1", replica=tmp_path / "r", primary=primary, token="t" * 32,
                timeout=0.5, ready_timeout=0.5,
            )  # fmt: skip
        assert info.value.retryable
        assert f"not ready after 0.5 s ({primary})" in str(info.value)
        # The failed client released the data directory: another replica may open it.
        join = join_settings(tmp_path / "r", seeds=[], etcd=None, primary=primary,
                             cluster=None, token="t" * 32, ca=None, headers={}, node_id=None,
                             auth=None)  # fmt: skip
        replica = EmbeddedReplica(join)
        try:
            assert replica.wait_ready(0.2, allow_stale=False) is not None
            assert replica.connection("main") is None
            assert replica.applied("main") == 0
            with pytest.raises(NodeError, match="another node is running") as second:
                EmbeddedReplica(join)
            assert "one process per replica directory" in second.value.hint
        finally:
            replica.close()


def test_a_remote_client_given_several_nodes_moves_on_from_one_it_cannot_reach() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.invalid":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"results": [{"columns": ["1"], "values": [[1]]}]})

    client = litecluster.connect(["http://down.invalid:4002", "http://up.invalid:4002"])
    client._http = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(litecluster.ClientError) as down:
        client.query("SELECT 1")
    assert down.value.retryable, "the failed request is not retried behind the caller's back"
    assert client.query("SELECT 1").rows == [(1,)]
    assert client.url == "http://up.invalid:4002"
    client.close()

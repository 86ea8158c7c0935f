"""The Redis-protocol server of a node, driven by redis-py (sync and asyncio) and redis-cli:
connection commands, reads on replicas, forwarded writes, pipelines, MULTI/EXEC with WATCH
across nodes, pub/sub across nodes, expiry, SCAN, and bad clients."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from litecluster.cli.localcluster import LocalNode, free_port
from litecluster.errors import PermissionDeniedError
from support import wait_for
from support.errortree import error_tree
from support.nodes import Nodes


@dataclass
class Pair:
    primary: LocalNode
    replica: LocalNode
    pport: int
    rport: int
    token: str

    def client(self, node: str = "primary", **kw: object) -> redis.Redis:
        port = self.pport if node == "primary" else self.rport
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(port=port, password=self.token, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    n = Nodes(tmp_path_factory.mktemp("resp"))
    pport, rport = free_port(), free_port()
    try:
        p = n.node("p", args=["--resp", f"127.0.0.1:{pport}"])
        r = n.node("r", p, args=["--resp", f"127.0.0.1:{rport}"])
        pair = Pair(p, r, pport, rport, n.token_file.read_text())
        c = pair.client()
        c.set("warmup", "1")
        # The kv database reaches the replica once: from then on it follows it.
        wait_for(lambda: pair.client("replica").get("warmup") == b"1", 30, "the replica")
        yield pair
    finally:
        n.close()


def test_auth_is_required_and_checked(pair: Pair) -> None:
    once = Retry(NoBackoff(), 0)  # redis-py retries authentication errors by default
    anon = redis.Redis(port=pair.pport, retry=once)
    with pytest.raises(redis.AuthenticationError):
        anon.get("x")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=pair.pport, password="wrong" * 8, retry=once).ping()
    assert pair.client().ping()


def test_hello_3_select_client_and_info(pair: Pair) -> None:
    c = pair.client(protocol=3)
    assert c.ping()
    c.client_setname("app-1")
    assert c.client_getname() == b"app-1"
    assert isinstance(c.client_id(), int)
    c.set("sel", "db0")
    c.execute_command("SELECT", 3)
    assert c.get("sel") is None, "DB index 3 is another keyspace"
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        c.execute_command("SELECT", 99)
    info = pair.client("replica").info("replication")
    assert info["role"] == "slave"
    assert info["master_link_status"] == "up"
    assert pair.client().info("replication")["role"] == "master"
    assert pair.client().execute_command("COMMAND COUNT") > 100


def test_unknown_commands_and_arity_get_redis_error_shapes(pair: Pair) -> None:
    c = pair.client()
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command("NOSUCH", "a", "b")
    assert str(e.value) == "unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command("GET")
    assert str(e.value) == "wrong number of arguments for 'get' command"
    # Commands the server answers itself are held to their arity too, as redis-server does.
    for bad in (["MULTI", "x"], ["DISCARD", "x"], ["UNWATCH", "x"], ["RESET", "x"], ["ECHO"],
                ["SELECT"], ["WATCH"], ["PUBLISH", "ch"], ["SUBSCRIBE"], ["CLIENT"]):  # fmt: skip
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command(*bad)
        assert str(e.value) == f"wrong number of arguments for '{bad[0].lower()}' command"
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'exec'"):
        c.execute_command("EXEC", "x")
    assert c.execute_command("GET", "arity-probe") is None, "MULTI x did not start a transaction"


def test_writes_on_a_replica_are_forwarded_and_read_back_there(pair: Pair) -> None:
    rep = pair.client("replica")
    assert rep.set("fw", "v1")
    assert rep.get("fw") == b"v1", "the replica answers once it has the write itself"
    assert pair.client().get("fw") == b"v1"
    assert rep.incr("fw-counter") == 1
    assert rep.hset("fw-h", mapping={"a": "1", "b": "2"}) == 2
    assert rep.hgetall("fw-h") == {b"a": b"1", b"b": b"2"}


def test_a_pipeline_of_writes_and_reads_answers_in_order(pair: Pair) -> None:
    p = pair.client("replica").pipeline(transaction=False)
    for i in range(200):
        p.set(f"pl{i}", i)
        p.get(f"pl{i}")
    p.incr("pl-count")
    got = p.execute()
    assert got[:-1] == [x for i in range(200) for x in (True, str(i).encode())]
    assert got[-1] == 1


def test_multi_exec_with_watch_aborts_when_another_node_changed_the_key(pair: Pair) -> None:
    rep, prim = pair.client("replica"), pair.client()
    rep.set("balance", 100)
    with rep.pipeline() as p:
        p.watch("balance")
        current = int(p.get("balance") or 0)
        prim.set("balance", 5)  # a write elsewhere after the WATCH
        p.multi()
        p.set("balance", current - 10)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert prim.get("balance") == b"5"
    with rep.pipeline() as p:  # unchanged: EXEC runs all of it in one transaction
        p.watch("balance")
        p.multi()
        p.decrby("balance", 2)
        p.rpush("ledger", "-2")
        assert p.execute() == [3, 1]


def test_exec_with_a_queuing_error_runs_nothing(pair: Pair) -> None:
    c = pair.client()
    c.delete("tx-n")
    p = c.pipeline()
    p.incr("tx-n")
    p.execute_command("GET")  # wrong arity: the whole transaction is discarded
    with pytest.raises(redis.ResponseError):
        p.execute()
    assert c.get("tx-n") is None


def test_pubsub_reaches_subscribers_on_every_node(pair: Pair) -> None:
    subs = []
    for node in ("primary", "replica"):
        ps = pair.client(node).pubsub()
        ps.subscribe("news")
        ps.psubscribe("n*")
        subs.append(ps)
    for ps in subs:
        assert ps.get_message(timeout=5)["type"] == "subscribe"
        assert ps.get_message(timeout=5)["type"] == "psubscribe"
    pair.client("replica").publish("news", "hello")  # published through a replica
    for ps in subs:
        got = [ps.get_message(timeout=10) for _ in range(2)]
        kinds = sorted((m["type"], m["data"]) for m in got if m)
        assert kinds == [("message", b"hello"), ("pmessage", b"hello")]
        ps.close()


def test_keyspace_notifications_on_a_replica(pair: Pair) -> None:
    rep = pair.client("replica")
    rep.config_set("notify-keyspace-events", "KEA")
    assert rep.config_get("notify-keyspace-events")["notify-keyspace-events"] == "AKE"
    ps = rep.pubsub()
    ps.psubscribe("__keyspace@0__:ks-*")
    assert ps.get_message(timeout=5)["type"] == "psubscribe"
    pair.client().set("ks-1", "x")
    msg = ps.get_message(timeout=10)
    assert msg is not None
    assert (msg["channel"], msg["data"]) == (b"__keyspace@0__:ks-1", b"set")
    ps.close()
    rep.config_set("notify-keyspace-events", "")


def test_expired_keys_vanish_everywhere_and_are_deleted(pair: Pair) -> None:
    c = pair.client()
    c.set("short", "x", px=300)
    c.set("long", "y", ex=100)
    assert 0 < c.pttl("short") <= 300
    # Both keys reach the replica first: a replica that has not applied them yet would also
    # answer None for "short" and say nothing about expiry.
    wait_for(lambda: pair.client("replica").get("long") == b"y", 10, "replication of the keys")
    wait_for(lambda: pair.client("replica").get("short") is None, 10, "expiry on the replica")
    # The primary deletes it in the background (a replicated deletion).
    wait_for(lambda: not pair.client("replica").exists("short"), 10, "the deletion")
    assert pair.client("replica").get("long") == b"y"


def test_scan_returns_every_key_present_for_the_whole_scan(pair: Pair) -> None:
    c = pair.client()
    c.execute_command("SELECT", 0)
    stable = {f"scan:{i}" for i in range(500)}
    pair.client("replica").mset({k: 1 for k in stable})  # answered once the replica has them
    seen: set[bytes] = set()
    cursor = 0
    churn = 0
    while True:
        cursor, keys = pair.client("replica").scan(cursor, match="scan:*", count=50)
        seen.update(keys)
        c.set(f"scan:new{churn}", 1)  # keys come and go during the scan
        c.delete(f"scan:new{churn - 1}")
        churn += 1
        if cursor == 0:
            break
    assert {k.encode() for k in stable} <= seen


def test_readonly_replica_mode_refuses_writes(tmp_path: Path) -> None:
    n = Nodes(tmp_path)
    try:
        pport, rport = free_port(), free_port()
        p = n.node("p", args=["--resp", f"127.0.0.1:{pport}"])
        n.node("r", p, args=["--resp", f"127.0.0.1:{rport}"],
               env={"LITECLUSTER_RESP_REPLICA_WRITES": "readonly"})  # fmt: skip
        c = redis.Redis(port=rport, password=n.token_file.read_text())
        with pytest.raises(redis.ReadOnlyError):
            c.set("x", 1)
        assert c.get("x") is None
    finally:
        n.close()


def test_asyncio_client_pipeline_and_pubsub(pair: Pair) -> None:
    async def run() -> None:
        c = redis.asyncio.Redis(port=pair.rport, password=pair.token)
        try:
            async with c.pipeline(transaction=True) as p:
                p.set("aio", "1").incr("aio").get("aio")
                assert await p.execute() == [True, 2, b"2"]
            ps = c.pubsub()
            await ps.subscribe("aio-ch")
            await pair_publish(pair, "aio-ch", "m")
            got = None
            for _ in range(50):
                got = await ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if got:
                    break
            assert got is not None
            assert got["data"] == b"m"
            await ps.aclose()
        finally:
            await c.aclose()

    async def pair_publish(p: Pair, channel: str, msg: str) -> None:
        await asyncio.to_thread(p.client().publish, channel, msg)

    asyncio.run(run())


def test_redis_cli_works_against_a_node(pair: Pair) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (Debian package redis-tools)")
    base = [cli, "-p", str(pair.rport), "--no-auth-warning", "-a", pair.token]
    out = subprocess.run([*base, "SET", "cli-key", "hello"], capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert out.stdout.strip() == "OK", out.stderr
    out = subprocess.run([*base, "GET", "cli-key"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "hello"
    out = subprocess.run([*base], input="HSET h f v\nHGETALL h\n", capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert out.stdout.split() == ["1", "f", "v"]


def _raw(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_protocol_garbage_and_huge_lengths_are_refused_without_harm(pair: Pair) -> None:
    assert _raw(pair.pport, b"*1\r\n$-5\r\n").startswith(b"-ERR Protocol error")
    assert _raw(pair.pport, b"*1\r\n$99999999999\r\n").startswith(b"-ERR Protocol error")
    assert _raw(pair.pport, b"*3000000000\r\n").startswith(b"-ERR Protocol error")
    _raw(pair.pport, b"*2\r\n$3\r\nGET\r\n$10\r\nhal", read=False)  # half-sent, then gone
    assert pair.client().ping()


def test_a_client_that_never_reads_does_not_hold_the_server(pair: Pair) -> None:
    c = pair.client()
    c.set("big", b"x" * 1_000_000)
    s = socket.create_connection(("127.0.0.1", pair.pport))
    s.settimeout(2)  # the server stops reading from it: sends then time out, ending the flood
    s.sendall(b"AUTH %b\r\n" % pair.token.encode())
    stop = threading.Event()

    def flood() -> None:
        try:
            while not stop.is_set():
                s.sendall(b"GET big\r\n" * 50)
        except OSError:
            pass

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # the flood runs while others are served
        assert pair.client().get("warmup") == b"1"
    stop.set()
    s.close()
    t.join(10)


def test_redis_benchmark_runs_without_errors(pair: Pair) -> None:
    bench = shutil.which("redis-benchmark")
    if bench is None:
        pytest.skip("redis-benchmark is not installed (Debian package redis-tools)")
    for port in (pair.pport, pair.rport):
        out = subprocess.run(
            [bench, "-p", str(port), "-a", pair.token, "-t", "set,get,incr,lpush,hset,sadd",
             "-n", "300", "-c", "10", "-q"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "rror" not in out.stdout + out.stderr
        for test in ("SET", "GET", "INCR", "LPUSH", "HSET", "SADD"):
            assert f"{test}: " in out.stdout
    assert int(pair.client().llen("mylist")) >= 600, "every LPUSH was applied"


def test_concurrent_watch_multi_exec_increments_lose_no_update(pair: Pair) -> None:
    """Optimistic increments from many clients: every successful EXEC counts exactly once,
    also when the primary commits several EXECs in one group."""
    pair.client().set("occ", 0)
    done: list[int] = []

    def worker() -> None:
        c = pair.client("replica" if threading.get_ident() % 2 else "primary")
        ok = 0
        for _ in range(25):
            with c.pipeline() as p:
                try:
                    p.watch("occ")
                    value = int(p.get("occ") or 0)
                    p.multi()
                    p.set("occ", value + 1)
                    p.execute()
                    ok += 1
                except redis.WatchError:
                    pass
        done.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(done) == 8
    assert int(pair.client().get("occ") or 0) == sum(done) > 0


# ---- failures: retryable, indeterminate and committed answered apart ---------------------------


def test_a_failure_is_answered_by_its_classs_properties() -> None:
    from litecluster.server.resp.server import _failure

    for cls in error_tree():
        text = _failure(cls("it failed\r\nhere")).text
        assert not {"\r", "\n"} & set(text), cls
        if cls.indeterminate:
            assert text.startswith("INDETERMINATE "), cls
            assert "may or may not have been applied" in text
        elif cls.committed:
            assert text.startswith("COMMITTED "), cls
        elif cls.retryable:
            assert text.startswith("TRYAGAIN "), cls
        elif issubclass(cls, PermissionDeniedError):  # the primary refused a forwarded command
            assert text.startswith("NOPERM "), cls
        else:
            assert text.startswith("ERR "), cls
        assert text.endswith("it failed  here"), cls


def test_a_lease_lost_during_a_write_is_not_answered_tryagain() -> None:
    from litecluster.errors import LeadershipLostError, NotPrimaryError
    from litecluster.server.resp.server import _failure

    lost = _failure(LeadershipLostError("leadership was lost while the write committed")).text
    assert lost.startswith("INDETERMINATE "), lost
    assert _failure(NotPrimaryError("this node is not the primary")).text.startswith("TRYAGAIN ")


def test_an_unacknowledged_sync_write_is_answered_indeterminate(tmp_path: Path) -> None:
    n = Nodes(tmp_path)
    try:
        port = free_port()
        n.node("p", args=["--resp", f"127.0.0.1:{port}", "--sync-replicas", "1"],
               env={"LITECLUSTER_SYNC_TIMEOUT": "0.3"})  # fmt: skip
        c = redis.Redis(port=port, password=n.token_file.read_text(), socket_timeout=10)
        with pytest.raises(redis.ResponseError) as info:
            c.set("unacked", "1")  # no replica can acknowledge it
        assert str(info.value).startswith("INDETERMINATE "), info.value
        assert "TRYAGAIN" not in str(info.value)
        assert c.get("unacked") == b"1", "durable on the primary: the outcome was unknown"
    finally:
        n.close()


@pytest.mark.parametrize("size", [65535, 65536, 65537, 1 << 20, 16 << 20])
def test_replies_of_any_size_reach_a_pipelining_client(pair: Pair, size: int) -> None:
    """Replies past the flush size, more of them than the socket takes at once: the server
    writes while the client has not read yet (this dropped the client with BufferError)."""
    c = pair.client(socket_timeout=60)
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    c.set(f"big:{size}", value)
    pipe = c.pipeline(transaction=False)
    for _ in range(8):
        pipe.get(f"big:{size}")
    pipe.ping()
    got = pipe.execute()
    assert got[:8] == [value] * 8
    assert got[8] is True
    assert c.ping()


def test_a_pathological_pattern_does_not_hold_the_node(pair: Pair) -> None:
    c = pair.client()
    c.set("a" * 40, 1)
    other = pair.client()
    for _ in range(3):
        assert c.keys("a*" * 20 + "b") == []
        assert list(c.scan_iter(match="a*" * 20 + "b")) == []
        assert other.ping()

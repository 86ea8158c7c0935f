"""The Python key/value API (``client.kv``) with an embedded replica, and the session, flag and
configuration helpers, against a real primary and replica."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import litecluster
from litecluster.cli.localcluster import LocalNode
from litecluster.client.helpers import bucket
from litecluster.client.kv import KvError
from support import wait_for
from support.nodes import Nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nodes, LocalNode]]:
    n = Nodes(tmp_path_factory.mktemp("kvclient"))
    try:
        p = n.node("p")
        n.node("r", p)
        yield n, p
    finally:
        n.close()


@pytest.fixture
def client(cluster: tuple[Nodes, LocalNode], tmp_path: Path) -> Iterator[litecluster.Client]:
    nodes, primary = cluster
    c = litecluster.connect(primary.http, replica=tmp_path / "app", primary=primary.listen,
                            token_file=nodes.token_file)  # fmt: skip
    try:
        yield c
    finally:
        c.close()


def test_reads_come_from_the_embedded_replica_and_see_own_writes(
    client: litecluster.Client, cluster: tuple[Nodes, LocalNode]
) -> None:
    kv = client.kv
    assert kv.set("user:1", "ann")
    assert kv.get("user:1") == "ann"  # read-your-writes from the local file
    assert kv.incr("visits") >= 1
    assert kv.hset("h:1", {"a": 1, "b": "x"}) == 2
    assert kv.hgetall("h:1") == {"a": "1", "b": "x"}
    assert kv.sadd("s:1", "x", "y") == 2
    assert kv.smembers("s:1") == {"x", "y"}
    assert kv.rpush("l:1", 1, 2, 3) == 3
    assert kv.lrange("l:1") == ["1", "2", "3"]
    # Another client, remote only, writes through the node: the local copy follows it.
    remote = litecluster.connect(cluster[1].http)
    try:
        remote.kv.set("from-elsewhere", "v")
        assert remote.kv.get("from-elsewhere") == "v"
    finally:
        remote.close()
    wait_for(lambda: kv.get("from-elsewhere") == "v", 30, "the other write locally")
    with pytest.raises(KvError, match="WRONGTYPE"):
        kv.lpush("user:1", "x")


def test_ttl_expire_and_scan(client: litecluster.Client) -> None:
    kv = client.kv
    kv.set("tmp:short", "x", ttl=0.3)
    left = kv.ttl("tmp:short")
    assert left is not None
    assert 0 < left <= 0.3
    assert kv.ttl("tmp:none") == -2.0
    wait_for(lambda: kv.get("tmp:short") is None, 10, "the expiry")
    for i in range(120):
        kv.set(f"scan:{i}", i)
    assert set(kv.scan(match="scan:*", count=25)) == {f"scan:{i}" for i in range(120)}


def test_atomic_blocks_apply_all_or_nothing(client: litecluster.Client) -> None:
    kv = client.kv
    kv.set("acct:a", 100)
    kv.set("acct:b", 0)
    with kv.atomic() as tx:
        tx.incr("acct:a", -30).incr("acct:b", 30).rpush("acct:ledger", "a->b 30")
    assert tx.results == [70, 30, 1]
    with pytest.raises(KvError, match="nothing was applied"), kv.atomic() as tx2:
        tx2.incr("acct:a", -30).execute("LPUSH", "acct:a", "oops")  # WRONGTYPE on the 2nd
    assert kv.mget("acct:a", "acct:b") == ["70", "30"]


def test_watch_fires_after_the_change_is_visible_locally(
    client: litecluster.Client, cluster: tuple[Nodes, LocalNode]
) -> None:
    seen: list[list[str]] = []
    visible: list[str | None] = []
    fired = threading.Event()

    def on_change(keys: list[str]) -> None:
        seen.append(keys)
        visible.append(client.kv.get("cfg:color"))
        fired.set()

    stop = client.kv.watch("cfg:*", on_change)
    remote = litecluster.connect(cluster[1].http)
    try:
        remote.kv.set("other:key", "ignored")
        remote.kv.set("cfg:color", "blue")
        assert fired.wait(10)
        assert seen[0] == ["cfg:color"]
        assert visible[0] == "blue", "the callback runs once the change is readable here"
        stop()
        fired.clear()
        remote.kv.set("cfg:color", "red")
        wait_for(lambda: client.kv.get("cfg:color") == "red", 10, "the change")
        assert not fired.is_set()
    finally:
        remote.close()


def test_a_blocked_watch_callback_holds_up_neither_replication_nor_its_own_writes(
    client: litecluster.Client, cluster: tuple[Nodes, LocalNode]
) -> None:
    """Callbacks run on the client's dispatcher thread, not on the replica's apply loop: one
    that writes (and waits to read its write back) and then blocks leaves replication going,
    and watches stop safely from any thread while a delivery is under way."""
    follower = client._embedded.follower  # type: ignore[union-attr]
    listeners_before = len(follower.on_annotations)
    release, wrote = threading.Event(), threading.Event()
    calls: list[list[str]] = []
    other_calls: list[list[str]] = []
    errors: list[BaseException] = []

    def slow(keys: list[str]) -> None:
        calls.append(keys)
        if len(calls) == 1:
            try:
                client.kv.set("echo:1", "from the callback")  # read-your-writes wait
            except BaseException as exc:
                errors.append(exc)
            wrote.set()
            release.wait(30)

    stop_slow = client.kv.watch("w:*", slow)
    stop_other = client.kv.watch("w:*", other_calls.append)
    assert len(follower.on_annotations) == listeners_before + 1
    remote = litecluster.connect(cluster[1].http)
    try:
        remote.kv.set("w:a", "1")
        assert wrote.wait(10), "the callback's own write did not come back"
        assert errors == []
        # The callback is blocked: later writes still reach the local replica.
        remote.kv.set("x:later", "applied")
        wait_for(lambda: client.kv.get("x:later") == "applied", 10, "replication")
        remote.kv.set("w:b", "2")
        wait_for(lambda: client.kv.get("w:b") == "2", 10, "replication")
        # Stop a watch from this thread while the dispatcher delivers w:a (and holds w:b).
        stop_other()
        extra = [client.kv.watch("w:*", lambda keys: None) for _ in range(20)]
        for stop in extra:
            stop()
        assert len(follower.on_annotations) == listeners_before + 1, "one stable listener"
        release.set()
        wait_for(lambda: len(calls) == 2, 10, "the next delivery")
        assert calls == [["w:a"], ["w:b"]], "delivered in order"
        assert ["w:b"] not in other_calls, "a stopped watch is not called again"
        stop_slow()
        remote.kv.set("w:c", "3")
        wait_for(lambda: client.kv.get("w:c") == "3", 10, "replication")
    finally:
        release.set()
        remote.close()
    thread = client.kv._watches._thread
    assert thread is not None
    client.kv.close()
    assert not thread.is_alive(), "close stops the dispatcher"
    assert calls == [["w:a"], ["w:b"]]


def test_watch_needs_an_embedded_replica(cluster: tuple[Nodes, LocalNode]) -> None:
    remote = litecluster.connect(cluster[1].http)
    try:
        with pytest.raises(KvError, match="embedded replica"):
            remote.kv.watch("*", lambda keys: None)
    finally:
        remote.close()


def test_session_store_slides_its_expiry(client: litecluster.Client) -> None:
    sessions = litecluster.SessionStore(client.kv, ttl=2.0)
    sid = sessions.create({"user": "ann"})
    assert sessions.get(sid) == {"user": "ann"}
    client.kv.expire(f"session:{sid}", 0.8)  # less than half the TTL left
    assert sessions.get(sid) == {"user": "ann"}
    left = client.kv.ttl(f"session:{sid}")
    assert left is not None
    assert left > 1.5, "reading it renewed the expiry"
    sessions.destroy(sid)
    assert sessions.get(sid) is None


def test_feature_flags_roll_out_by_a_stable_hash(client: litecluster.Client) -> None:
    flags = litecluster.FeatureFlags(client.kv)
    assert not flags.is_enabled("new-ui", "u1")
    flags.set("new-ui", percent=30, allow=["vip"])
    subjects = [f"u{i}" for i in range(2000)]
    on = {s for s in subjects if flags.is_enabled("new-ui", s)}
    assert on == {s for s in subjects if bucket("new-ui", s) < 30}
    assert 450 < len(on) < 750
    assert flags.is_enabled("new-ui", "vip")
    flags.set("new-ui", percent=60)
    assert on <= {s for s in subjects if flags.is_enabled("new-ui", s)}, "raising only adds"
    flags.set("new-ui", on=False, percent=100)
    assert not flags.is_enabled("new-ui", "u1")
    with pytest.raises(KvError):
        flags.set("bad", percent=150)


def test_config_values_have_typed_getters(client: litecluster.Client) -> None:
    config = litecluster.ConfigValues(client.kv)
    config.set("max_upload_mb", 25)
    config.set("maintenance", False)
    config.set("regions", ["eu", "us"])
    assert config.get_int("max_upload_mb") == 25
    assert config.get_float("max_upload_mb") == 25.0
    assert config.get_bool("maintenance") is False
    assert config.get_json("regions") == ["eu", "us"]
    assert config.get_int("missing", 7) == 7
    config.set("broken", "abc")
    with pytest.raises(KvError, match="does not parse as int"):
        config.get_int("broken")


def test_reads_before_the_local_copy_has_key_value_tables_see_an_empty_store(
    tmp_path: Path,
) -> None:
    """On a new cluster the embedded copy of the key/value database is first missing, then
    (created by SQL) without the key/value tables: reads answer as an empty Redis DB, GET's
    fast path and the generic path alike, until the first key/value write arrives."""
    nodes = Nodes(tmp_path)
    c: litecluster.Client | None = None
    try:
        primary = nodes.node("p")
        c = litecluster.connect(primary.http, db="kv", replica=tmp_path / "app",
                                primary=primary.listen, token_file=nodes.token_file)  # fmt: skip
        kv = c.kv

        def empty() -> None:
            assert kv.get("k") is None
            assert kv.mget("k", "j") == [None, None]
            assert kv.exists("k") == 0
            assert kv.execute("DBSIZE") == 0
            assert list(kv.scan()) == []
            assert kv.hgetall("h") == {}

        empty()  # no local file at all
        c.execute("CREATE TABLE t(x)")
        c.execute("INSERT INTO t VALUES (1)")
        assert c.query("SELECT count(*) FROM t").rows == [(1,)]  # the local file, SQL only
        empty()
        assert kv.set("k", "v")
        assert kv.get("k") == "v"
        assert kv.mget("k", "j") == ["v", None]
        assert kv.execute("DBSIZE") == 1
        with pytest.raises(KvError, match="WRONGTYPE"):
            kv.hgetall("k")
    finally:
        if c is not None:
            c.close()
        nodes.close()


def test_a_first_atomic_block_that_fails_leaves_the_store_usable(tmp_path: Path) -> None:
    """The key/value tables are created inside the first write's transaction; when that write
    is rolled back the tables go with it, and the next write must create them again."""
    n = Nodes(tmp_path)
    try:
        p = n.node("p")
        c = litecluster.connect(p.http, token_file=n.token_file)
        try:
            with pytest.raises(KvError, match="nothing was applied"), c.kv.atomic() as tx:
                tx.incr("n").execute("LPUSH", "n", "oops")
            assert c.kv.set("after", "ok")
            assert c.kv.get("after") == "ok"
        finally:
            c.close()
    finally:
        n.close()

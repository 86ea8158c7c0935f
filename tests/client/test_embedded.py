"""The embedded replica against real nodes: ready means caught up, it finds the primary from
any node, starts from its local copy while every node is down, keeps its identity, and the
primary forgets the replicas that went away."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

import litecluster
from litecluster.cli.localcluster import LocalNode
from litecluster.client.sync import Client, Params
from litecluster.errors import ConfigError
from support import wait_for
from support.nodes import AUTH_ON, Nodes

RETENTION = 2.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Nodes, LocalNode, LocalNode]]:
    n = Nodes(tmp_path)
    env = {"LITECLUSTER_REPLICA_RETENTION": str(RETENTION)}
    primary = n.node("p1", env=env)
    replica = n.node("r1", primary, env=env)
    yield n, primary, replica
    n.close()


def _embedded(nodes: Nodes, seeds: list[str], directory: Path, **kwargs: object) -> Client:
    return litecluster.connect(seeds, replica=directory, token_file=nodes.token_file,
                               timeout=5, **kwargs)  # fmt: skip


def test_connect_on_an_empty_directory_is_ready_with_what_was_committed_before(
    cluster: tuple[Nodes, LocalNode, LocalNode], tmp_path: Path
) -> None:
    nodes, primary, replica = cluster
    with litecluster.connect(primary.http) as remote:
        remote.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        for start in range(0, 2000, 500):
            rows: list[Params] = [(i, "x" * 200) for i in range(start, start + 500)]
            remote.executemany("INSERT INTO t VALUES (?, ?)", rows)
        remote.kv.set("flag", "on")
    # Seeded with the replica's address only: it names the primary, which is followed.
    client = _embedded(nodes, [replica.http], tmp_path / "app")
    try:
        assert client.query("SELECT count(*) FROM t").rows == [(2000,)], "the first read"
        assert client.kv.get("flag") == "on"
        assert client.ready
        assert client.lag.records == 0
        assert client.status()["primary"] == primary.listen
        client.execute("INSERT INTO t VALUES (5000, 'mine')")  # routed to the primary
        assert client.query("SELECT v FROM t WHERE k = 5000").rows == [("mine",)]
    finally:
        client.close()


def test_pointed_at_a_replicas_replication_port_it_follows_the_primary(
    cluster: tuple[Nodes, LocalNode, LocalNode], tmp_path: Path
) -> None:
    nodes, primary, replica = cluster
    with litecluster.connect(primary.http) as remote:
        remote.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
    client = _embedded(nodes, [], tmp_path / "app", primary=replica.listen)
    try:
        assert client.status()["primary"] == primary.listen
        client.execute("INSERT INTO t VALUES (1)")
        assert client.query("SELECT k FROM t").rows == [(1,)]
    finally:
        client.close()


def test_a_populated_directory_serves_reads_while_every_node_is_down(
    cluster: tuple[Nodes, LocalNode, LocalNode], tmp_path: Path
) -> None:
    nodes, primary, replica = cluster
    seeds = [primary.http, replica.http]
    with _embedded(nodes, seeds, tmp_path / "app") as first:
        first.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        first.execute("INSERT INTO t VALUES (1)")
        assert first.query("SELECT k FROM t").rows == [(1,)]
        node_id = first.status()["node_id"]
    replica.stop()
    primary.stop()
    started = time.monotonic()
    client = _embedded(nodes, seeds, tmp_path / "app", ready_timeout=30)
    try:
        assert time.monotonic() - started < 10, "no wait for a primary that is down"
        assert client.query("SELECT k FROM t").rows == [(1,)]
        status = client.status()
        assert status["node_id"] == node_id, "the identity is kept in the directory"
        assert not status["ready"]
        assert status["state"] != "streaming"
        assert status["stale_seconds"] > 0
        with pytest.raises(litecluster.ClientError) as down:
            client.execute("INSERT INTO t VALUES (2)")
        assert down.value.retryable
        primary.start()

        def written() -> bool:
            try:
                client.execute("INSERT OR IGNORE INTO t VALUES (2)")
            except litecluster.ClientError as exc:
                failures.append(exc)
                return False
            return True

        failures: list[litecluster.ClientError] = []
        wait_for(written, 30, "a write once the primary is back, without reconnecting")
        assert all(f.retryable for f in failures), [str(f) for f in failures if not f.retryable]
        assert client.query("SELECT k FROM t ORDER BY k").rows == [(1,), (2,)]
        client.wait_ready(10)
        assert client.status()["ready"]
    finally:
        client.close()


def test_settings_are_checked_with_a_clear_error(tmp_path: Path) -> None:
    token = "t" * 32
    with pytest.raises(ConfigError, match="cluster token or a user's login") as no_token:
        litecluster.connect("127.0.0.1:1", replica=tmp_path / "a")
    assert "join-read-only" in no_token.value.hint
    with pytest.raises(ConfigError, match="user's login") as no_password:
        litecluster.connect("127.0.0.1:1", replica=tmp_path / "a", auth=("ann", ""))
    assert no_password.value.context["field"] == "auth"
    with pytest.raises(ConfigError, match="too short"):
        litecluster.connect("127.0.0.1:1", replica=tmp_path / "a", token="short")
    with pytest.raises(ConfigError, match="CA file") as ca:
        litecluster.connect("127.0.0.1:1", replica=tmp_path / "a", token=token,
                            ca=str(tmp_path / "nope.pem"))  # fmt: skip
    assert ca.value.context["field"] == "ca"
    with pytest.raises(ConfigError, match="cluster name"):
        litecluster.connect("127.0.0.1:1", replica=tmp_path / "a", token=token, cluster="a/b")
    with pytest.raises(ConfigError, match="find the primary"):
        litecluster.connect([], replica=tmp_path / "a", token=token)
    with pytest.raises(ConfigError, match="settings of an embedded replica"):
        litecluster.connect("127.0.0.1:1", etcd=["http://127.0.0.1:2379"])
    with pytest.raises(ConfigError, match="etcd endpoint"):
        litecluster.connect([], replica=tmp_path / "a", token=token, etcd=["127.0.0.1:2379"])


def test_a_named_cluster_is_joined_by_name_and_refuses_another(tmp_path: Path) -> None:
    nodes = Nodes(tmp_path)
    try:
        primary = nodes.node("p1", args=["--cluster", "shop"])
        with litecluster.connect(primary.http) as remote:
            remote.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        with _embedded(nodes, [primary.http], tmp_path / "app", cluster="shop") as client:
            assert client.query("SELECT count(*) FROM t").rows == [(0,)]
        with pytest.raises(litecluster.ClientError, match="cluster 'shop'"):
            _embedded(nodes, [primary.http], tmp_path / "other", ready_timeout=3)
    finally:
        nodes.close()


_CHILD = """
import sys, time, litecluster
c = litecluster.connect(sys.argv[1], replica=sys.argv[2], token_file=sys.argv[3])
print(c.status()["node_id"], flush=True)
time.sleep(600)
"""


def test_the_primary_forgets_closed_and_vanished_clients(
    cluster: tuple[Nodes, LocalNode, LocalNode], tmp_path: Path
) -> None:
    nodes, primary, _ = cluster
    with litecluster.connect(primary.http) as remote:
        remote.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
    ids: set[str] = set()
    for i in range(16):  # closed cleanly: deregistered at once
        with _embedded(nodes, [primary.http], tmp_path / f"app{i}") as client:
            ids.add(client.status()["node_id"])
    again = _embedded(nodes, [primary.http], tmp_path / "app0")
    assert again.status()["node_id"] in ids, "the id is stable across restarts"
    again.close()
    named = _embedded(nodes, [primary.http], tmp_path / "named", node_id="web-1")
    assert named.status()["node_id"] == "web-1"
    named.close()
    ids.add("web-1")
    children = []
    for i in range(4):  # gone without a goodbye (kill -9): kept for the retention only
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, primary.http, str(tmp_path / f"gone{i}"),
             str(nodes.token_file)], stdout=subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None
        ids.add(child.stdout.readline().decode().strip())
        children.append(child)
    for child in children:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    def listed() -> set[str]:
        return {r["node_id"] for r in primary.status()["replicas"]} & ids

    def in_metrics() -> set[str]:
        text = httpx.get(primary.url + "/metrics", headers=primary.headers).text
        return {i for i in ids if f'replica="{i}"' in text}

    wait_for(lambda: len(listed()) == 4, 10, "the killed clients listed as disconnected")
    assert len(in_metrics()) == 4
    wait_for(lambda: not listed(), RETENTION + 10, "every client gone from the status")
    assert not in_metrics()
    stats = primary.status()["stats"]
    assert stats["replicas_left"] >= 18, stats
    assert stats["replicas_expired"] >= 4, stats


PASSWORD = "correct horse battery staple"


def test_a_users_file_login_joins_without_the_cluster_token(tmp_path: Path) -> None:
    users = [
        {"username": name, "perms": perms,
         "password": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}
        for name, perms in (("app", ["join-read-only", "query", "execute", "status"]),
                            ("web", ["query", "execute", "status"]))
    ]  # fmt: skip
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps(users))
    nodes = Nodes(tmp_path)
    try:
        primary = nodes.node("p1", env={**AUTH_ON, "LITECLUSTER_USERS_FILE": str(users_file)})
        with litecluster.connect(primary.http, token_file=nodes.token_file) as remote:
            remote.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        app = litecluster.connect([primary.http], replica=tmp_path / "app", auth=("app", PASSWORD))
        try:
            app.execute("INSERT INTO t VALUES (1)")  # HTTP Basic as app: execute
            assert app.query("SELECT k FROM t").rows == [(1,)]  # the stream, as app
        finally:
            app.close()
        with pytest.raises(litecluster.ClientError, match="may not join"):
            litecluster.connect([primary.http], replica=tmp_path / "web", auth=("web", PASSWORD),
                                ready_timeout=3)  # fmt: skip
        assert "auth.refused" in primary.log_text
        assert "reason=bad_user" in primary.log_text
    finally:
        nodes.close()

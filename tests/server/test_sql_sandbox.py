"""The SQL sandbox on real nodes: ATTACH, VACUUM INTO, load_extension and state-changing
PRAGMAs sent through every SQL route, to the primary and through a replica, are refused per
statement, create no file anywhere, leave no pooled connection changed, and fail alone in
their group commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.nodes import Nodes, wait_converged, wait_streaming

Cluster = tuple[Nodes, str, str, Path]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    n = Nodes(tmp_path)
    env = {"LITECLUSTER_READ_WAIT_TIMEOUT": "2", "LITECLUSTER_SQL_ALLOW_PRAGMA": "user_version"}
    primary = n.node("p1", env=env)
    replica = n.node("r1", primary, env=env)
    wait_streaming(replica)
    httpx.post(f"http://{primary.http}/db/execute",
               json=["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"]).raise_for_status()  # fmt: skip
    targets = tmp_path / "targets"
    targets.mkdir()
    yield n, primary.http, replica.http, targets
    n.close()


def _attacks(targets: Path) -> list[tuple[str, str]]:
    return [
        (f"ATTACH '{targets}/attached.db' AS x", "ATTACH"),
        (f"ATTACH DATABASE 'file:{targets}/uri.db?mode=rwc' AS y", "ATTACH"),
        (f"VACUUM INTO '{targets}/copy.db'", "VACUUM"),
        (f"  ; vacuum main INTO '{targets}/copy2.db'", "VACUUM"),
        (f"SELECT load_extension('{targets}/ext.so')", "load_extension"),
        ("PRAGMA journal_mode=DELETE", "journal_mode"),
        ("PRAGMA writable_schema=1", "writable_schema"),
        ("PRAGMA wal_checkpoint(TRUNCATE)", "wal_checkpoint"),
        ("SELECT * FROM sqlite_dbpage", "sqlite_dbpage"),
    ]


def _files(root: Path) -> set[str]:
    # Node logs grow, and SQLite's WAL files and the nodes' files replaced through a
    # temporary copy come and go; every other path of the test's directory (the data
    # directories, the targets) must stay as it was.
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.suffix not in (".log", ".tmp") and not p.name.endswith(("-wal", "-shm"))
    }


def _send(http: str, route: str, sql: str, **params: str) -> list[dict[str, Any]]:
    method, path = route.split()
    if method == "GET":
        r = httpx.get(f"http://{http}{path}", params={"q": sql, **params}, timeout=10)
    else:
        r = httpx.post(f"http://{http}{path}", json=[sql], params=params, timeout=10)
    assert r.status_code == 200, (route, sql, r.status_code, r.text)
    results: list[dict[str, Any]] = r.json()["results"]
    return results


ROUTES = ["GET /db/query", "POST /db/query", "POST /db/execute", "POST /db/request"]


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_every_attack_through_every_route_is_refused_and_creates_no_file(
    cluster: Cluster, via: str
) -> None:
    nodes, p_http, r_http, targets = cluster
    http = p_http if via == "primary" else r_http
    wait_converged(nodes.all[0], [nodes.all[1]])
    before = _files(nodes.root)
    # On a replica a query is forwarded (weak) or read locally (none).
    levels: list[dict[str, str]] = [{}] if via == "primary" else [{}, {"level": "none"}]
    for route in ROUTES:
        for sql, word in _attacks(targets):
            for params in levels if "query" in route else [{}]:
                results = _send(http, route, sql, **params)
                assert len(results) == 1
                error = results[0].get("error", "")
                assert error.startswith("not authorized: "), (route, sql, params, results)
                assert word in error, (route, sql, error)
    assert sorted(p.name for p in targets.iterdir()) == [], "no target file was created"
    assert _files(nodes.root) == before, "no file appeared in any data directory"
    # The pooled read connections (one per executor thread) are not left attached.
    for _ in range(20):
        got = _send(http, "GET /db/query", "SELECT count(*) FROM x.sqlite_master", level="none")
        assert got[0]["error"] == "no such table: x.sqlite_master"
    # And the primary's file kept its journal mode.
    got = _send(p_http, "GET /db/query", "PRAGMA journal_mode")
    assert got[0]["values"] == [["wal"]]


def test_an_allowed_pragma_sets_on_the_writer_and_replicates_but_not_from_a_query(
    cluster: Cluster,
) -> None:
    nodes, p_http, r_http, _ = cluster
    for http in (p_http, r_http):
        got = _send(http, "POST /db/query", "PRAGMA user_version=9")
        assert "readonly" in got[0]["error"] or "cannot write" in got[0]["error"], got
    assert "error" not in _send(r_http, "POST /db/execute", "PRAGMA user_version=7")[0]
    wait_converged(nodes.all[0], [nodes.all[1]])
    for http in (p_http, r_http):
        got = _send(http, "GET /db/query", "PRAGMA user_version", level="none")
        assert got[0]["values"] == [[7]]
    error = _send(p_http, "POST /db/execute", "PRAGMA application_id=7")[0]["error"]
    assert "--sql-allow-pragma application_id" in error


def test_a_query_cannot_write_or_end_its_snapshot(cluster: Cluster) -> None:
    _, p_http, r_http, _ = cluster
    for http, params in ((p_http, {}), (r_http, {"level": "none"})):
        for sql in ("INSERT INTO t(v) VALUES ('q')", "CREATE TABLE u(x)", "DROP TABLE t",
                    "CREATE TEMP TABLE scratch(x)", "COMMIT", ";ROLLBACK", "BEGIN"):  # fmt: skip
            got = _send(http, "POST /db/query", sql, **params)
            assert "error" in got[0], (sql, got)
        got = _send(http, "GET /db/query", "SELECT count(*) FROM t", **params)
        assert got[0]["values"] == [[0]]


def test_refused_requests_fail_alone_in_their_group_commits(cluster: Cluster) -> None:
    nodes, p_http, r_http, targets = cluster
    good: list[str] = []
    problems: list[Any] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        http = p_http if i % 2 == 0 else r_http
        with httpx.Client(base_url=f"http://{http}", timeout=30) as c:
            for j in range(15):
                key = f"c{i}-{j}"
                bad = _attacks(targets)[(i + j) % len(_attacks(targets))][0]
                body = [["INSERT INTO t(v) VALUES(?)", key], bad]
                r = c.post("/db/execute", json=body if j % 3 else [bad])
                res = r.json().get("results", [])
                with lock:
                    if r.status_code != 200 or "error" not in res[-1]:
                        problems.append((r.status_code, r.text))
                    elif j % 3:
                        if "error" in res[0]:
                            problems.append(res)
                        good.append(key)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert problems == []
    wait_converged(nodes.all[0], [nodes.all[1]])
    for http in (p_http, r_http):
        got = _send(http, "GET /db/query", "SELECT v FROM t", level="none")
        assert sorted(row[0] for row in got[0].get("values", [])) == sorted(good)
    w = nodes.all[0].status()["writers"]["main"]
    assert w["groups"] < w["requests"], "refused and good requests were committed in groups"
    assert list(targets.iterdir()) == []

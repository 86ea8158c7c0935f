"""Hostile requests with a valid token (issue 26), on a primary and through a replica: each is
refused on its own, and after it a fresh client finds every connection as it was (PRAGMA
values, schema, writability), and a runaway write holds the writer no longer than its budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.nodes import Nodes, wait_converged, wait_streaming

BUDGET = 0.5
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nodes, str, str]]:
    n = Nodes(tmp_path_factory.mktemp("hostile"))
    env = {"LITECLUSTER_WRITE_TIMEOUT": str(BUDGET), "LITECLUSTER_READ_WAIT_TIMEOUT": "5"}
    try:
        p = n.node("p1", env=env)
        r = n.node("r1", p, env=env)
        wait_streaming(r)
        _post(p.http, "/db/execute", ["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"])
        yield n, p.http, r.http
    finally:
        n.close()


def _post(http: str, path: str, body: list[Any], **params: str) -> list[dict[str, Any]]:
    got = httpx.post(f"http://{http}{path}", json=body, params=params, timeout=30)
    assert got.status_code == 200, got.text
    results: list[dict[str, Any]] = got.json()["results"]
    return results


PROBES = ["PRAGMA query_only", "PRAGMA recursive_triggers", "PRAGMA cache_size",
          "PRAGMA writable_schema", "SELECT group_concat(sql, ';') FROM sqlite_schema",
          "PRAGMA database_list"]  # fmt: skip


def _state(http: str, path: str, **params: str) -> list[Any]:
    return [r.get("values") for r in _post(http, path, PROBES, **params)]


HOSTILE = [
    ["PRAGMA query_only=ON"],
    ["PRAGMA query_only=OFF"],
    ["PRAGMA recursive_triggers=ON"],
    ["PRAGMA cache_size=1"],
    ["PRAGMA writable_schema=ON", "UPDATE sqlite_schema SET sql = 'CREATE TABLE t(x)'"],
    ["UPDATE sqlite_master SET sql = replace(sql, 'v TEXT', 'v BLOB')"],
    ["ATTACH ':memory:' AS x", "COMMIT", "CREATE TABLE x.t(x)", "INSERT INTO x.t VALUES (1)"],
    ["COMMIT"], ["ROLLBACK"], ["END"],
]  # fmt: skip


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_hostile_statements_are_refused_and_change_nothing_for_later_requests(
    cluster: tuple[Nodes, str, str], via: str
) -> None:
    nodes, p_http, r_http = cluster
    http = p_http if via == "primary" else r_http
    local = {} if via == "primary" else {"level": "none"}
    # Through every route and connection kind: the writer, and the read pool's connections
    # (a few requests each, so that several pooled connections see them).
    before = {path: _state(http, path) for path in ("/db/execute", "/db/query")}
    before_local = _state(http, "/db/query", **local)
    for body in HOSTILE:
        for path, params in (("/db/execute", {}), ("/db/request", {}), ("/db/query", {}),
                             ("/db/query", local)):  # fmt: skip
            for _ in range(3):
                results = _post(http, path, body, **params)
                assert any("error" in r for r in results), (path, body, results)
                written = [r for r in results if r.get("rows_affected")]
                assert written == [], (path, body, results)
    assert {path: _state(http, path) for path in before} == before
    for _ in range(5):
        assert _state(http, "/db/query", **local) == before_local
    # A fresh client's write and read behave as before: the database is writable.
    key = f"after-{via}"
    assert "error" not in _post(http, "/db/execute", [["INSERT INTO t(v) VALUES (?)", key]])[0]
    wait_converged(nodes.all[0], [nodes.all[1]])
    got = _post(http, "/db/query", [["SELECT v FROM t WHERE v = ?", key]], **local)
    assert got[0]["values"] == [[key]]


def test_a_runaway_write_holds_the_writer_for_its_budget_and_reads_never_wait(
    cluster: tuple[Nodes, str, str],
) -> None:
    _, p_http, r_http = cluster
    answer: list[dict[str, Any]] = []
    runaway = threading.Thread(
        target=lambda: answer.extend(_post(p_http, "/db/execute", [FOREVER]))
    )
    started = time.monotonic()
    runaway.start()
    try:
        # A read on either node is answered while the writer is busy.
        for http, params in ((p_http, {}), (r_http, {"level": "none"})):
            t0 = time.monotonic()
            _post(http, "/db/query", ["SELECT count(*) FROM t"], **params)
            assert time.monotonic() - t0 < BUDGET, "the read did not queue behind the write"
        # Another client's write waits at most the budget (plus its own commit).
        t0 = time.monotonic()
        res = _post(p_http, "/db/execute", [["INSERT INTO t(v) VALUES (?)", "behind"]])
        waited = time.monotonic() - t0
    finally:
        runaway.join(30)
    assert "error" not in res[0]
    assert waited < 4 * BUDGET, f"the good write waited {waited:.2f} s behind a runaway one"
    assert answer, "the runaway write was answered"
    assert answer[0]["error"] == f"statement timeout ({BUDGET:g} s)"
    assert time.monotonic() - started < 10 * BUDGET

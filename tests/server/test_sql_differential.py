"""A differential test of the SQL API against its documented rqlite semantics (issue 17):
hypothesis draws requests (writes that succeed or fail, reads, bad SQL, the transaction
flag) for ``/db/execute``, ``/db/query`` and ``/db/request``, sends them to a real primary and
through a real replica, and replays them on a model: an in-memory SQLite database driven by
the rules of docs/http-api.md ("Writes: group commit and isolation", "Responses"). Every
answer must match the model's: status, the shape of each result, values, types, errors, and
the table's contents after each request."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.nodes import Nodes, wait_streaming

_tables = itertools.count()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    n = Nodes(tmp_path_factory.mktemp("differential"))
    try:
        p = n.node("p1", env={"LITECLUSTER_READ_WAIT_TIMEOUT": "10"})
        r = n.node("r1", p, env={"LITECLUSTER_READ_WAIT_TIMEOUT": "10"})
        wait_streaming(r)
        yield p.http, r.http
    finally:
        n.close()


keys = st.integers(0, 4)
words = st.sampled_from(["a", "b", "c"])
# (sql, params, is_write): {t} is the example's table.
writes = st.one_of(
    st.tuples(keys, words).map(lambda a: ("INSERT INTO {t}(k, v) VALUES (?, ?)", list(a), True)),
    st.tuples(words, keys).map(lambda a: ("UPDATE {t} SET v = ? WHERE k = ?", list(a), True)),
    keys.map(lambda k: ("DELETE FROM {t} WHERE k = ?", [k], True)),
    st.just(("INSERT INTO nowhere VALUES (1)", [], True)),
    st.just(("INSERT INTO {t}(k, v) VALUES ('x', 'y')", [], True)),  # datatype mismatch
)
reads = st.one_of(
    st.just(("SELECT k, v FROM {t} ORDER BY k", [], False)),
    st.just(("SELECT count(*) AS n, max(v) AS top FROM {t}", [], False)),
    keys.map(lambda k: ("SELECT v FROM {t} WHERE k = ?", [k], False)),
    st.just(("SELEKT 1", [], False)),
)
requests = st.tuples(
    st.sampled_from(["/db/execute", "/db/query", "/db/request"]),
    st.booleans(),
    st.lists(st.one_of(writes, reads), min_size=1, max_size=5),
).filter(lambda r: r[0] != "/db/execute" or all(s[2] for s in r[2]))


class Model:
    """The documented semantics, on an in-memory SQLite database."""

    def __init__(self, table: str) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.execute(f"CREATE TABLE {table}(k INTEGER PRIMARY KEY, v TEXT UNIQUE)")

    def run(self, path: str, transaction: bool, stmts: list[tuple[str, list[Any], bool]]
            ) -> list[dict[str, Any]]:  # fmt: skip
        out: list[dict[str, Any]] = []
        # A query reads one snapshot and writes nothing: its transaction flag changes nothing.
        transaction = transaction and path != "/db/query"
        self.db.execute("SAVEPOINT req")
        for sql, params, is_write in stmts:
            if path == "/db/query" and is_write:
                out.append({"error": ...})  # a query cannot write (any message)
                if transaction:
                    break
                continue
            self.db.execute("SAVEPOINT stmt")
            try:
                cur = self.db.execute(sql, params)
                rows = cur.fetchall()
            except sqlite3.Error as exc:
                self.db.execute("ROLLBACK TO stmt")
                self.db.execute("RELEASE stmt")
                out.append({"error": str(exc)})
                if transaction:
                    self.db.execute("ROLLBACK TO req")
                    break
                continue
            self.db.execute("RELEASE stmt")
            if cur.description is not None:
                res: dict[str, Any] = {"columns": [d[0] for d in cur.description],
                                       "values": [list(r) for r in rows]}  # fmt: skip
                out.append(res)
            else:
                res = {"rows_affected": cur.rowcount}
                if sql.startswith("INSERT"):
                    res["last_insert_id"] = cur.lastrowid
                out.append(res)
        self.db.execute("RELEASE req")
        return out

    def contents(self, table: str) -> list[list[Any]]:
        return [list(r) for r in self.db.execute(f"SELECT k, v FROM {table} ORDER BY k")]


def _same(got: dict[str, Any], want: dict[str, Any], what: Any) -> None:
    if "error" in want:
        assert "error" in got, what
        if want["error"] is not ...:
            assert got["error"] == want["error"], what
        assert set(got) == {"error"}, what
    elif "columns" in want:
        assert got["columns"] == want["columns"], what
        assert got.get("values", []) == want["values"], what
        assert len(got["types"]) == len(want["columns"]), what
        for t, col in zip(got["types"], zip(*want["values"], strict=True) or [], strict=False):
            kinds = {type(v) for v in col if v is not None}
            assert t in ({"integer"} if kinds == {int} else {"text"} if kinds == {str}
                         else {"integer", "text", ""}), what  # fmt: skip
    else:
        assert got["rows_affected"] == want["rows_affected"], what
        if "last_insert_id" in want:
            assert got["last_insert_id"] == want["last_insert_id"], what


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(st.lists(requests, min_size=1, max_size=6), st.booleans())
def test_the_sql_api_answers_as_its_documented_model(
    nodes: tuple[str, str], script: list[Any], via_replica: bool
) -> None:
    primary, replica = nodes
    http = replica if via_replica else primary
    table = f"d{next(_tables)}"
    model = Model(table)
    with httpx.Client(base_url=f"http://{http}", timeout=30) as c:
        made = c.post("/db/execute", json=[f"CREATE TABLE {table}(k INTEGER PRIMARY KEY, "
                                           "v TEXT UNIQUE)"])  # fmt: skip
        assert made.status_code == 200, made.text
        for path, transaction, stmts in script:
            body = [[sql.format(t=table), *params] for sql, params, _ in stmts]
            model_stmts = [(sql.format(t=table), params, w) for sql, params, w in stmts]
            params = {"transaction": "true"} if transaction else {}
            got = c.post(path, json=body, params=params)
            assert got.status_code == 200, (path, body, got.text)
            want = model.run(path, transaction, model_stmts)
            results = got.json()["results"]
            what = (path, transaction, body, results, want)
            assert len(results) == len(want), what
            for g, w in zip(results, want, strict=True):
                _same(g, w, what)
            now = c.post("/db/query", json=[f"SELECT k, v FROM {table} ORDER BY k"])
            assert now.json()["results"][0].get("values", []) == model.contents(table), what

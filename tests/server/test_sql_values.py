"""Values in and out of the SQL API as rqlite clients send and read them: BLOB parameters as
arrays of byte values or ``X'hex'`` strings, ``?blob_array``, and numbers JSON cannot carry,
on the primary and through a replica (which forwards what it parsed)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.nodes import Nodes, wait_streaming


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    n = Nodes(tmp_path_factory.mktemp("values"))
    try:
        p = n.node("p1", env={"LITECLUSTER_READ_WAIT_TIMEOUT": "5"})
        r = n.node("r1", p, env={"LITECLUSTER_READ_WAIT_TIMEOUT": "5"})
        wait_streaming(r)
        yield p.http, r.http
    finally:
        n.close()


def _post(http: str, path: str, body: Any, **params: str) -> httpx.Response:
    return httpx.post(f"http://{http}{path}", json=body, params=params, timeout=30)


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_blob_parameters_are_stored_as_blobs_and_read_back_both_ways(
    nodes: tuple[str, str], via: str
) -> None:
    http = nodes[0] if via == "primary" else nodes[1]
    table = f"b_{via}"
    got = _post(http, "/db/execute", [
        f"CREATE TABLE {table}(id INTEGER PRIMARY KEY, b BLOB)",
        [f"INSERT INTO {table}(id, b) VALUES (1, ?)", [0, 1, 254, 255]],
        [f"INSERT INTO {table}(id, b) VALUES (2, ?)", "X'DEADbeef'"],
        [f"INSERT INTO {table}(id, b) VALUES (:id, :b)", {"id": 3, "b": [104, 105]}],
        [f"INSERT INTO {table}(id, b) VALUES (4, ?)", "X'not hex'"],
    ])  # fmt: skip
    assert got.status_code == 200, got.text
    assert all("error" not in r for r in got.json()["results"])
    q = [f"SELECT id, b, typeof(b) FROM {table} ORDER BY id"]
    rows = _post(http, "/db/query", q).json()["results"][0]
    assert [r[2] for r in rows["values"]] == ["blob", "blob", "blob", "text"]
    assert rows["types"][1] == "blob"
    want = [bytes([0, 1, 254, 255]), bytes.fromhex("deadbeef"), b"hi"]
    assert [base64.b64decode(r[1]) for r in rows["values"][:3]] == want
    arrays = _post(http, "/db/query", q, blob_array="true").json()["results"][0]["values"]
    assert [r[1] for r in arrays[:3]] == [list(b) for b in want]
    assert arrays[3][1] == "X'not hex'", "a string that is not X'hex' stays text"


@pytest.mark.parametrize(
    "param", [[1, 256], [1, -1], [1.5], ["a"], [True], {"a": [1.5]}, [[1]]], ids=repr
)
def test_a_parameter_that_is_no_value_is_a_400(nodes: tuple[str, str], param: Any) -> None:
    for http in nodes:
        got = _post(http, "/db/execute", [["SELECT ?", param]])
        assert got.status_code == 400, got.text
        assert "parameter" in got.json()["error"]


def test_numbers_json_cannot_carry_are_refused_in_and_null_out(nodes: tuple[str, str]) -> None:
    for http in nodes:
        for raw in ('[["SELECT ?", 1e999]]', '[["SELECT ?", NaN]]', '[["SELECT ?", -Infinity]]'):
            got = httpx.post(f"http://{http}/db/query", content=raw,
                             headers={"Content-Type": "application/json"})  # fmt: skip
            assert got.status_code == 400, (raw, got.text)
            assert got.json()["error"]
        got = _post(http, "/db/query", ["SELECT 1e999, -1e999, 1.5"])
        assert got.status_code == 200
        assert "Infinity" not in got.text
        assert got.json()["results"][0]["values"] == [[None, None, 1.5]]


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_types_are_the_declared_ones_and_dates_come_as_rfc3339(
    nodes: tuple[str, str], via: str
) -> None:
    http = nodes[0] if via == "primary" else nodes[1]
    table = f"typed_{via}"
    got = _post(http, "/db/execute", [
        f"CREATE TABLE {table}(id INTEGER PRIMARY KEY, name VARCHAR(20), at DATETIME, "
        "day DATE, ts TIMESTAMP, loose, price NUMERIC)",
        [f"INSERT INTO {table} VALUES (1, 'ann', '2024-01-02 03:04:05.120', '2024-01-02', "
         "0, 7, 1.5)"],
        [f"INSERT INTO {table} VALUES (2, 'bob', 'not a date', NULL, 1700000000, 'x', 2)"],
    ])  # fmt: skip
    assert got.status_code == 200, got.text
    for path in ("/db/query", "/db/request"):
        q = [[f"SELECT id, name, at, day, ts, loose, price, count(*) OVER () AS n, "
              f"upper(name) AS shout FROM {table} WHERE id >= ? ORDER BY id", 1]]  # fmt: skip
        res = _post(http, path, q).json()["results"][0]
        assert res["types"] == ["integer", "varchar(20)", "datetime", "date", "timestamp",
                                "integer", "numeric", "integer", "text"], path  # fmt: skip
        assert res["values"][0][2:5] == ["2024-01-02T03:04:05.12Z", "2024-01-02T00:00:00Z",
                                         "1970-01-01T00:00:00Z"]  # fmt: skip
        assert res["values"][1][2:5] == ["not a date", None, "2023-11-14T22:13:20Z"]
    # A statement that is no plain query keeps the values' storage classes.
    pragma = _post(http, "/db/query", [f"PRAGMA table_info({table})"]).json()["results"][0]
    assert pragma["types"][:2] == ["integer", "text"]


def test_pyrqlite_reads_declared_dates_as_datetimes(nodes: tuple[str, str]) -> None:
    import datetime as dt

    import pyrqlite.dbapi2 as rqlite

    host, port = nodes[0].rsplit(":", 1)
    conn = rqlite.connect(host=host, port=int(port))
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, at TIMESTAMP)")
    cur.execute("INSERT INTO events(at) VALUES (?)", ("2024-05-06 07:08:09",))
    cur.execute("SELECT at FROM events")
    (at,) = cur.fetchone()
    assert at == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=at.tzinfo)


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_raw_sql_in_a_text_plain_body(nodes: tuple[str, str], via: str) -> None:
    http = nodes[0] if via == "primary" else nodes[1]
    table = f"raw_{via}"
    sql = f"CREATE TABLE {table}(x); INSERT INTO {table} VALUES (1); INSERT INTO {table} VALUES (2)"
    got = httpx.post(f"http://{http}/db/execute", content=sql.encode(),
                     headers={"Content-Type": "text/plain; charset=utf-8"})  # fmt: skip
    assert got.status_code == 200, got.text
    assert [r.get("rows_affected") for r in got.json()["results"]] == [0, 1, 1]
    read = httpx.post(f"http://{http}/db/query", content=f"SELECT sum(x) FROM {table}",
                      headers={"Content-Type": "text/plain"})  # fmt: skip
    assert read.json()["results"][0]["values"] == [[3]]
    for bad in (b"\xff\xfe", b"   "):
        refused = httpx.post(f"http://{http}/db/execute", content=bad,
                             headers={"Content-Type": "text/plain"})  # fmt: skip
        assert refused.status_code == 400, refused.text

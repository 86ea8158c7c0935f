"""``GET /db/backup`` on real nodes: a 100 MB database backed up under write load from the
primary and from a replica is a valid SQLite file whose database checksum is the one of the
position it names; a SQL dump round-trips; both compress."""

from __future__ import annotations

import gzip
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import checksum, wait_for
from support.nodes import Nodes, wait_converged, wait_streaming

Cluster = tuple[Any, Any]
TEN_MB = (
    "INSERT INTO big(b) SELECT randomblob(1000000) FROM "
    "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10) SELECT x FROM c)"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    n = Nodes(tmp_path_factory.mktemp("backup"))
    try:
        p = n.node("p1")
        r = n.node("r1", p)
        wait_streaming(r)
        yield p, r
    finally:
        n.close()


def _exec(http: str, body: list[Any], db: str = "main") -> int:
    """Run a write; its txid."""
    got = httpx.post(f"http://{http}/db/execute", json=body, params={"db": db}, timeout=60)
    assert got.status_code == 200, got.text
    assert all("error" not in res for res in got.json()["results"]), got.text
    txid: int = got.json()["position"]["txid"]
    return txid


def _backup(http: str, dest: Path, **params: str) -> httpx.Headers:
    with httpx.stream("GET", f"http://{http}/db/backup", params=params, timeout=120) as got:
        assert got.status_code == 200, got.read()
        with open(dest, "wb") as f:
            for chunk in got.iter_bytes():
                f.write(chunk)
        return got.headers


def test_a_backup_under_write_load_is_the_database_at_the_position_it_names(
    cluster: Cluster, tmp_path: Path
) -> None:
    p, r = cluster
    _exec(p.http, ["CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)",
                   "CREATE TABLE log(id INTEGER PRIMARY KEY, at TEXT)"])  # fmt: skip
    loaded = max(_exec(p.http, [TEN_MB]) for _ in range(10))
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                c.post(f"http://{p.http}/db/execute",
                       json=["INSERT INTO log(at) VALUES (datetime('now'))"]).raise_for_status()  # fmt: skip

    writer = threading.Thread(target=load)
    writer.start()
    try:
        wait_for(lambda: r.status()["databases"]["main"]["txid"] >= loaded, 120,
                 "the replica to hold the 100 MB")  # fmt: skip
        for node in (p, r):
            dest = tmp_path / f"{node.node_id}.db"
            headers = _backup(node.http, dest)
            epoch, _, txid = headers["X-Litecluster-Position"].partition(":")
            assert int(epoch) >= 1
            assert int(txid) > 10
            assert dest.stat().st_size > 100_000_000
            assert f"{checksum(dest):016x}" == headers["X-Litecluster-Checksum"]
            conn = sqlite3.connect(dest)
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("SELECT count(*) FROM big").fetchone() == (100,)
            conn.close()
    finally:
        stop.set()
        writer.join()
    # With the writes stopped, both nodes stand at one position: one database, one checksum.
    wait_converged(p, [r])
    pair = [_backup(n.http, tmp_path / f"{n.node_id}-still.db") for n in (p, r)]
    assert pair[0]["X-Litecluster-Position"] == pair[1]["X-Litecluster-Position"]
    assert pair[0]["X-Litecluster-Checksum"] == pair[1]["X-Litecluster-Checksum"]


def test_a_sql_dump_round_trips_and_both_formats_compress(cluster: Cluster, tmp_path: Path) -> None:
    p, r = cluster
    _exec(p.http, [
        "CREATE TABLE shop(id INTEGER PRIMARY KEY, name TEXT, price REAL, img BLOB, n)",
        "CREATE INDEX shop_name ON shop(name)",
        ["INSERT INTO shop(name, price, img, n) VALUES (?, ?, ?, ?)", "it's", 1.5, [0, 255], None],
        ["INSERT INTO shop(name, price, img, n) VALUES (?, ?, ?, ?)", "ünï\ncode", -2.0, [], 7],
    ], db="shop")  # fmt: skip
    wait_converged(p, [r], "shop")
    want = sqlite3.connect(p.data_dir / "db" / "shop.db").execute(
        "SELECT * FROM shop ORDER BY id").fetchall()  # fmt: skip
    for node in (p, r):
        dump = tmp_path / f"{node.node_id}.sql.gz"
        _backup(node.http, dump, db="shop", fmt="sql", compress="true")
        copy = sqlite3.connect(tmp_path / f"{node.node_id}-restored.db")
        copy.executescript(gzip.decompress(dump.read_bytes()).decode())
        assert copy.execute("SELECT * FROM shop ORDER BY id").fetchall() == want
        assert copy.execute("SELECT name FROM sqlite_schema WHERE type='index'").fetchall() == [
            ("shop_name",)
        ]
        packed = tmp_path / f"{node.node_id}.db.gz"
        headers = _backup(node.http, packed, db="shop", compress="1")
        (tmp_path / "unpacked.db").write_bytes(gzip.decompress(packed.read_bytes()))
        assert f"{checksum(tmp_path / 'unpacked.db'):016x}" == headers["X-Litecluster-Checksum"]


def test_bad_backup_requests_get_clear_errors(cluster: Cluster) -> None:
    p, r = cluster
    for node in (p, r):
        missing = httpx.get(f"http://{node.http}/db/backup", params={"db": "nothing_here"})
        assert missing.status_code == 404
        assert missing.json()["hint"]
        bad = httpx.get(f"http://{node.http}/db/backup", params={"fmt": "csv"})
        assert bad.status_code == 400
        assert "fmt" in bad.json()["error"]
        assert httpx.get(f"http://{node.http}/db/backup", params={"db": "../x"}).status_code == 400

"""The local reader: reads on a copy of the key/value database, before and after its first
write, without ever creating anything in it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from litecluster import kv
from litecluster.engine.sqlite import Connection, connect
from litecluster.kv import LocalReader
from litecluster.kv.errors import WRONGTYPE
from litecluster.kv.reply import Err, Map, Reply, Simple
from support.kv_harness import args_of

NOW = 1_700_000_000_000
KEYSPACE = "SELECT db, count(*), count(expire_at) FROM kv_keys GROUP BY db"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "kv.db"


@pytest.fixture
def reader(path: Path) -> Iterator[LocalReader]:
    r = LocalReader(path)
    yield r
    r.close()


def reads(reader: LocalReader, *commands: list[str], db: int = 0) -> list[Reply]:
    return reader.read([(db, args_of(c)) for c in commands], NOW)


def primary_of(path: Path) -> Connection:
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def write(conn: Connection, *parts: str | int, db: int = 0, now: int = NOW) -> Reply:
    return kv.execute(conn, db, now, args_of(list(parts))).reply


def assert_empty(reader: LocalReader) -> None:
    assert reads(reader, ["GET", "k"], ["MGET", "k", "j"], ["EXISTS", "k"], ["DBSIZE"],
                 ["SCAN", "0"], ["HGETALL", "h"], ["ZRANGE", "z", "0", "-1"], ["TTL", "k"],
                 ["TYPE", "k"]) == [
        None, [None, None], 0, 0, [b"0", []], Map([]), [], -2, Simple("none"),
    ]  # fmt: skip
    assert reader.get(0, b"k", NOW) is None
    assert reader.select(KEYSPACE) == []


def test_a_missing_file_reads_as_an_empty_store_and_is_not_created(
    reader: LocalReader, path: Path
) -> None:
    assert_empty(reader)
    assert not path.exists()


def test_a_file_without_key_value_tables_reads_as_empty_until_the_first_write(
    reader: LocalReader, path: Path
) -> None:
    primary = primary_of(path)
    primary.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY)")
    assert_empty(reader)
    assert not kv.has_schema(primary), "a read created the key/value tables"
    # The first write creates the tables; the reader's open connection sees them.
    assert write(primary, "SET", "k", "v") == Simple("OK")
    assert write(primary, "HSET", "h", "f", "1") == 1
    assert reads(reader, ["GET", "k"], ["MGET", "k", "j"], ["DBSIZE"], ["HGETALL", "h"]) == [
        b"v", [b"v", None], 2, Map([(b"f", b"1")])
    ]  # fmt: skip
    assert reader.get(0, b"k", NOW) == b"v"
    assert reader.select(KEYSPACE) == [(0, 2, 0)]
    primary.close()


def test_replies_are_redis_s_and_expiry_is_judged_by_the_caller_s_clock(
    reader: LocalReader, path: Path
) -> None:
    primary = primary_of(path)
    write(primary, "SET", "s", "v", "PX", 1000)
    write(primary, "RPUSH", "l", "a", "b")
    write(primary, "SET", "other-db", "x", db=3)
    assert reader.get(0, b"l", NOW) == Err(WRONGTYPE)
    assert reads(reader, ["LRANGE", "l", "0", "-1"], ["GET", "l"], ["GET", "other-db"]) == [
        [b"a", b"b"], Err(WRONGTYPE), None
    ]  # fmt: skip
    assert reads(reader, ["GET", "other-db"], db=3) == [b"x"]
    assert reader.get(0, b"s", NOW + 999) == b"v"
    assert reader.get(0, b"s", NOW + 1001) is None
    assert reader.read([(0, args_of(["EXISTS", "s"]))], NOW + 1001) == [0]
    primary.close()


def test_what_is_not_a_read_gets_an_error_and_runs_nothing(reader: LocalReader, path: Path) -> None:
    primary = primary_of(path)
    write(primary, "SET", "k", "v")
    got = reads(reader, ["SET", "k", "w"], ["DEL", "k"], ["MULTI"], ["NOSUCH", "a"], ["GET"])
    assert got == [
        Err("ERR 'set' writes: it runs on the primary, not on a local copy"),
        Err("ERR 'del' writes: it runs on the primary, not on a local copy"),
        Err("ERR 'multi' is a connection command: the server answers it"),
        Err("ERR unknown command 'NOSUCH', with args beginning with: 'a' "),
        Err("ERR wrong number of arguments for 'get' command"),
    ]
    assert reads(reader, ["GET", "k"], ["PING"]) == [b"v", Simple("PONG")]
    primary.close()


def test_threads_share_one_reader(reader: LocalReader, path: Path) -> None:
    primary = primary_of(path)
    for i in range(50):
        write(primary, "SET", f"k{i}", i)
    failures: list[object] = []

    def worker() -> None:
        for i in range(200):
            n = i % 50
            got = reads(reader, ["GET", f"k{n}"], ["EXISTS", f"k{n}"])
            if got != [str(n).encode(), 1] or reader.get(0, f"k{n}".encode(), NOW) != got[0]:
                failures.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    primary.close()

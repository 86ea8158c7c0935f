"""The command catalog says what redis-server 7 says of the same commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.kv import COMMANDS
from litecluster.kv.catalog import CATALOG, REDIS_ONLY
from litecluster.kv.reply import Map, Reply, SetReply, Simple
from support.kv_harness import RawClient, RedisServer

SERVER_ANSWERED = {
    "auth", "select", "quit", "client", "info", "command", "hello", "multi", "exec", "discard",
    "watch", "unwatch", "publish", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
    "pubsub", "reset",
}  # fmt: skip


def plain(r: Reply) -> object:
    if isinstance(r, bytes):
        return r.decode()
    if isinstance(r, Simple):
        return r.text
    if isinstance(r, SetReply):
        return [plain(i) for i in r.items]
    if isinstance(r, Map):
        return {plain(k): plain(v) for k, v in r.items}  # type: ignore[misc]
    if isinstance(r, list):
        return [plain(i) for i in r]
    return r


@pytest.fixture(scope="module")
def redis_info(redis_server: RedisServer) -> dict[str, list[object]]:
    client = RawClient(redis_server.port, 3)
    try:
        out: dict[str, list[object]] = {}
        for item in plain(client.call("COMMAND", "INFO", *[n for n in CATALOG if "|" not in n])):  # type: ignore[union-attr]
            out[item[0]] = item  # type: ignore[index]
            for sub in item[9]:  # type: ignore[index]
                out[sub[0]] = sub
        return out
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_entry_matches_redis(name: str, redis_info: dict[str, list[object]]) -> None:
    info, theirs = CATALOG[name], redis_info[name]
    assert (info.arity, info.first_key, info.last_key, info.key_step) == (
        theirs[1], theirs[3], theirs[4], theirs[5]
    )  # fmt: skip
    assert list(info.flags) == theirs[2]
    assert list(info.acl_categories) == theirs[6]


def test_every_command_is_implemented_answered_by_the_server_or_refused(
    redis_server: RedisServer,
) -> None:
    implemented = {c.name for c in COMMANDS.values() if c.handler is not None}
    answered = {c.name for c in COMMANDS.values() if c.handler is None}
    assert answered == SERVER_ANSWERED
    client = RawClient(redis_server.port, 3)
    try:
        everything = {n for n in plain(client.call("COMMAND", "LIST")) if "|" not in n}  # type: ignore[union-attr]
    finally:
        client.close()
    assert everything == implemented | answered | REDIS_ONLY
    assert not (implemented & REDIS_ONLY)


def test_docs_list_every_implemented_command() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "kv.md").read_text()
    listed = {c.name.upper() for c in COMMANDS.values()}
    missing = sorted(n for n in listed if n not in doc)
    assert missing == [], f"docs/kv.md does not name {missing}"

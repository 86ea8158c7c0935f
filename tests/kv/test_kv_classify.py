"""The one command classifier: every catalogued command gets a kind that follows its Redis
flags, and unknown commands and wrong numbers of arguments get redis-server's exact errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litecluster import kv
from litecluster.kv import COMMANDS, Kind, classify
from litecluster.kv.catalog import CATALOG, REDIS_ONLY
from litecluster.kv.reply import Err
from support.kv_harness import RawClient, RedisServer, args_of

NAMES = sorted(n.decode() for n in COMMANDS)


def fitting(name: str) -> list[bytes]:
    """A call of ``name`` with as many arguments as its arity asks for (at least)."""
    arity = CATALOG[name].arity
    return [name.encode()] + [b"x"] * (abs(arity) - 1)


def wrong_counts(name: str) -> list[int]:
    """Argument counts (the name included) that ``name``'s arity refuses."""
    arity = CATALOG[name].arity
    if arity > 0:
        return [n for n in (arity - 1, arity + 1) if n >= 1]
    return [n for n in (-arity - 1,) if n >= 1]


@pytest.fixture(scope="module")
def redis(redis_server: RedisServer) -> Iterator[RawClient]:
    client = RawClient(redis_server.port, 2)
    yield client
    client.close()


@pytest.mark.parametrize("name", NAMES)
def test_every_command_gets_the_kind_its_flags_say(name: str) -> None:
    info = CATALOG[name]
    want = Kind.READ if info.readonly else Kind.WRITE if info.write else Kind.SPECIAL
    assert classify(fitting(name)) is want
    assert classify([name.upper().encode(), *fitting(name)[1:]]) is want
    assert COMMANDS[name.encode()].kind is want


def test_the_kinds_split_the_catalog_as_routing_needs() -> None:
    by_kind: dict[Kind, set[str]] = {k: set() for k in Kind}
    for cmd in COMMANDS.values():
        by_kind[cmd.kind].add(cmd.name)
    # Reads and writes are the executor's; what it has no handler for, a server answers.
    assert all(COMMANDS[n.encode()].handler is not None for n in by_kind[Kind.READ])
    assert all(COMMANDS[n.encode()].handler is not None for n in by_kind[Kind.WRITE])
    no_handler = {c.name for c in COMMANDS.values() if c.handler is None}
    assert by_kind[Kind.SPECIAL] == no_handler | {"ping", "echo"}
    assert {"get", "mget", "scan", "hgetall", "zrange", "dbsize", "touch"} <= by_kind[Kind.READ]
    assert {"set", "del", "getdel", "getex", "spop", "flushall", "copy"} <= by_kind[Kind.WRITE]


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_number_of_arguments_is_answered_as_redis_server_does(
    name: str, redis: RawClient
) -> None:
    for argc in wrong_counts(name):
        args = [name.upper().encode()] + [b"x"] * (argc - 1)
        theirs = redis.call(*args)
        assert isinstance(theirs, Err), (args, theirs)
        assert classify(args) == theirs, args
        assert kv.lookup(args) == theirs, args


def test_unknown_commands_are_answered_as_redis_server_does(redis: RawClient) -> None:
    for parts in (["NOSUCH"], ["nosuch", "a", "b"], ["x" * 200, "y" * 200, "z"], ["g\x00et", "k"]):
        args = args_of(parts)
        theirs = redis.call(*args)
        assert isinstance(theirs, Err), (parts, theirs)
        assert classify(args) == theirs, parts


def test_redis_commands_litecluster_lacks_are_refused_by_name() -> None:
    for name in ("blpop", "xadd", "eval"):
        assert name in REDIS_ONLY
        assert classify(args_of([name.upper(), "k", "0"])) == Err(
            f"ERR command '{name}' is not supported by litecluster"
            " (see docs/kv.md for the supported commands)"
        )

"""The RESP codec: request parsing (against redis-server's own parser where it has an
opinion), limits, reply encoding and the reply parser."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.kv.errors import RespProtocolError
from litecluster.kv.reply import (
    NULL_ARRAY,
    OK,
    Double,
    Err,
    Map,
    Pairs,
    Push,
    Reply,
    SetReply,
    Simple,
    Verbatim,
    dumps,
    loads,
)
from litecluster.kv.resp import (
    INLINE_MAX,
    ReplyParser,
    RequestParser,
    encode,
    encode_command,
    split_inline,
)
from support.kv_harness import RawClient, RedisServer


def parse_all(data: bytes, chunk: int = 0, **limits: int) -> list[list[bytes]]:
    p = RequestParser(**limits)  # type: ignore[arg-type]
    out: list[list[bytes]] = []
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    for piece in pieces:
        p.feed(piece)
        while (cmd := p.get()) is not None:
            out.append(cmd)
    return out


COMMANDS = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), max_size=6)


@given(COMMANDS, st.integers(1, 17))
def test_pipelines_parse_the_same_whatever_the_chunking(
    commands: list[list[bytes]], chunk: int
) -> None:
    data = b"".join(encode_command(c) for c in commands)
    assert parse_all(data) == commands
    assert parse_all(data, chunk) == commands


def test_empty_commands_are_skipped_and_inline_lines_split() -> None:
    data = b"*0\r\n*-1\r\n\r\n  \r\nPING\r\nSET k \"a b\\x41\\n\" 'c\\'d'\nGET k\r\n"
    assert parse_all(data) == [[b"PING"], [b"SET", b"k", b"a bA\n", b"c'd"], [b"GET", b"k"]]
    assert parse_all(data, 1) == parse_all(data)


def test_the_parser_reads_nothing_twice() -> None:
    # A 1 MiB argument sent in 1 KiB pieces: the parser keeps its place instead of re-parsing.
    big = b"x" * (1 << 20)
    p = RequestParser()
    data = encode_command([b"SET", b"k", big])
    for i in range(0, len(data), 1024):
        p.feed(data[i : i + 1024])
        got = p.get()
    assert got == [b"SET", b"k", big]
    assert p.buffered == 0


def redis_reply_to(port: int, data: bytes) -> bytes:
    """What redis-server answers to ``data`` on a fresh connection (until it closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


BAD_REQUESTS = [
    b"*x\r\n", b"*-\r\n", b"*3000000000\r\n", b"*1\r\n:1\r\n", b"*1\r\n*1\r\n", b"*1\r\n$-5\r\n",
    b"*1\r\n$x\r\n", b"*1\r\n$999999999999\r\n", b"*1\r\n$+1\r\n", b'GET "a\r\n', b"GET 'a'b\r\n",
    b"*" + b"1" * (INLINE_MAX + 10), b"G" * (INLINE_MAX + 10), b"*2\r\n$3\r\nGET\r\n" + b"$" * (INLINE_MAX + 10),
]  # fmt: skip


@pytest.mark.parametrize("data", BAD_REQUESTS, ids=lambda d: repr(d[:24]))
def test_protocol_errors_match_redis(redis_server: RedisServer, data: bytes) -> None:
    theirs = redis_reply_to(redis_server.port, data)
    with pytest.raises(RespProtocolError) as info:
        parse_all(data)
    assert theirs == encode(Err(info.value.reply_text))


# No NUL byte: redis-server looks for the line's end with strchr, which stops at a NUL, and
# waits for more input; litecluster splits the line up to it (docs/kv.md).
INLINE = st.lists(
    st.sampled_from(
        [b"a", b"b c", b'"', b"'", b"\\", b"\\x41", b"\\xZZ", b"\\n", b" ", b"\t", b'"x y"',
         b"'x y'", b"\\'", b'\\"', b"z", b"\xff"]
    ),
    max_size=8,
).map(b"".join)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(INLINE)
def test_inline_commands_split_like_redis(redis_server: RedisServer, line: bytes) -> None:
    """RPUSH the inline arguments into a list, read it back: the same split as ours."""
    client = RawClient(redis_server.port)
    try:
        client.call("DEL", "inl")
        ours = split_inline(b"RPUSH inl " + line)
        reply, _ = client.send_raw(b"RPUSH inl " + line + b"\r\n")
        if ours is None:
            assert reply == Err("ERR Protocol error: unbalanced quotes in request")
            return
        if len(ours) < 3:
            assert isinstance(reply, Err)
            return
        assert client.call("LRANGE", "inl", "0", "-1") == ours[2:]
    finally:
        client.close()


def test_limits_are_checked_before_allocating() -> None:
    with pytest.raises(RespProtocolError, match="invalid bulk length"):
        parse_all(b"*1\r\n$2000\r\n", max_bulk_len=1000)
    with pytest.raises(RespProtocolError, match="invalid multibulk length"):
        parse_all(b"*1001\r\n", max_args=1000)
    with pytest.raises(RespProtocolError, match="query buffer limit"):
        parse_all(encode_command([b"SET", b"k", b"x" * 5000]), max_query_bytes=4096)
    p = RequestParser(authenticated=False)
    p.feed(b"*11\r\n")
    with pytest.raises(RespProtocolError, match="unauthenticated multibulk length"):
        p.get()
    p = RequestParser(authenticated=False)
    p.feed(b"*1\r\n$16385\r\n")
    with pytest.raises(RespProtocolError, match="unauthenticated bulk length"):
        p.get()


ENCODED = [
    (b"x", b"$1\r\nx\r\n", b"$1\r\nx\r\n"),
    (-5, b":-5\r\n", b":-5\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
    ([b"a", 1], b"*2\r\n$1\r\na\r\n:1\r\n", b"*2\r\n$1\r\na\r\n:1\r\n"),
    (OK, b"+OK\r\n", b"+OK\r\n"),
    (Err("ERR bad\r\nthing"), b"-ERR bad  thing\r\n", b"-ERR bad  thing\r\n"),
    (Double(0.1), b"$19\r\n0.10000000000000001\r\n", b",0.10000000000000001\r\n"),
    (Double(float("-inf")), b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (Map([(b"k", 1)]), b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
    (SetReply([b"a"]), b"*1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n"),
    (Pairs([(b"m", Double(2))]), b"*2\r\n$1\r\nm\r\n$1\r\n2\r\n", b"*1\r\n*2\r\n$1\r\nm\r\n,2\r\n"),
    (Verbatim(b"hi"), b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
    (Push([b"message"]), b"*1\r\n$7\r\nmessage\r\n", b">1\r\n$7\r\nmessage\r\n"),
]


@pytest.mark.parametrize(("reply", "resp2", "resp3"), ENCODED, ids=lambda v: repr(v)[:30])
def test_encoding(reply: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode(reply, 2) == resp2
    assert encode(reply, 3) == resp3
    p = ReplyParser()
    p.feed(resp3)
    back = p.get()
    if not isinstance(reply, Pairs):  # RESP3 cannot tell pairs from nested arrays
        assert encode(back, 3) == resp3  # type: ignore[arg-type]


REPLIES: st.SearchStrategy[Reply] = st.recursive(
    st.one_of(
        st.binary(max_size=8), st.integers(-(2**63), 2**63 - 1), st.none(), st.just(NULL_ARRAY),
        st.text(max_size=8).filter(lambda t: "\r" not in t and "\n" not in t).map(Simple),
        st.floats(allow_nan=False).map(Double), st.text(max_size=8).map(lambda t: Err("ERR " + t)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(SetReply),
        st.lists(st.tuples(inner, inner), max_size=3).map(Map),
        st.lists(st.tuples(inner, inner), max_size=3).map(Pairs),
    ),
    max_leaves=12,
)  # fmt: skip


@given(REPLIES)
def test_replies_survive_the_trip_between_nodes(reply: Reply) -> None:
    assert loads(dumps(reply)) == reply


@given(REPLIES, st.integers(1, 7))
def test_reply_parser_reads_what_the_encoder_writes(reply: Reply, chunk: int) -> None:
    data = encode(reply, 3)
    p = ReplyParser()
    got: object = ReplyParser
    for i in range(0, len(data), chunk):
        assert got is ReplyParser
        p.feed(data[i : i + chunk])
        got = p.get()
    assert encode(got, 3) == encode(_unpair(reply), 3)  # type: ignore[arg-type]


def _unpair(reply: Reply) -> Reply:
    if isinstance(reply, Pairs):
        return [[_unpair(k), _unpair(v)] for k, v in reply.items]
    if isinstance(reply, list):
        return [_unpair(r) for r in reply]
    if isinstance(reply, SetReply):
        return SetReply([_unpair(r) for r in reply.items])
    if isinstance(reply, Map):
        return Map([(_unpair(k), _unpair(v)) for k, v in reply.items])
    return reply


def test_reply_parser_bounds_depth_and_skips_attributes() -> None:
    p = ReplyParser(max_depth=3)
    p.feed(b"*1\r\n" * 4 + b":1\r\n")
    with pytest.raises(RespProtocolError, match="nested too deeply"):
        p.get()
    p = ReplyParser()
    p.feed(b"|1\r\n+key\r\n+value\r\n:7\r\n#t\r\n(12345678901234567890\r\n")
    assert [p.get(), p.get(), p.get()] == [7, 1, 12345678901234567890]

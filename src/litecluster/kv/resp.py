"""The Redis protocol (RESP2 and RESP3): requests in, replies out, and replies in for clients.

* :class:`RequestParser` turns the bytes a client sends into commands (``list[bytes]``),
  incrementally: a half-sent command stays buffered, a pipeline yields one command at a time,
  and nothing already parsed is read twice. It accepts what redis-server accepts (arrays of
  bulk strings, and inline commands split like ``sdssplitargs``), refuses the rest with
  redis-server's exact ``Protocol error: ...`` texts, and bounds every length before
  allocating for it (argument count, bulk length, unterminated lines, total query size).
* :func:`encode` writes a :mod:`~litecluster.kv.reply` value in RESP2 or RESP3, byte for byte
  as redis-server 7.0 writes the same reply.
* :class:`ReplyParser` reads RESP2/RESP3 replies back into the reply model (the tests read
  redis-server with it; a node may use it to talk to Redis-protocol peers), with a bound on
  nesting depth, aggregate lengths and bulk lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from litecluster.kv.errors import RespProtocolError
from litecluster.kv.reply import (
    NULL_ARRAY,
    Double,
    Err,
    Map,
    Pairs,
    Push,
    Reply,
    SetReply,
    Simple,
    Verbatim,
)

INLINE_MAX: Final = 64 * 1024
"""Longest header or inline line without its end (PROTO_INLINE_MAX_SIZE)."""

_SPACE: Final = frozenset(b" \t\n\v\f\r")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_INT64_MAX: Final = 2**63 - 1


def parse_ll(raw: bytes | bytearray) -> int | None:
    """Redis's ``string2ll``: a canonical decimal int64 ("-0", "+1", "01", " 1" are not)."""
    n = len(raw)
    if n == 0 or n > 20:
        return None
    if n == 1 and raw[0] == 0x30:
        return 0
    start = 1 if raw[0] == 0x2D else 0
    if start == n or not 0x31 <= raw[start] <= 0x39:
        return None
    for c in raw[start + 1 :]:
        if not 0x30 <= c <= 0x39:
            return None
    value = int(raw)
    if value > _INT64_MAX or value < -_INT64_MAX - 1:
        return None
    return value


def _line_end(buf: bytearray, pos: int, end: bytes, too_long: Callable[[], Exception]) -> int:
    """Where the line at ``pos`` ends (the index of ``end``), -1 while that has not arrived;
    ``too_long()`` is raised once more than INLINE_MAX bytes of it wait without an end (how
    both parsers bound what they buffer for one line)."""
    found = buf.find(end, pos)
    if found < 0 and len(buf) - pos > INLINE_MAX:
        raise too_long()
    return found


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like redis-server's ``sdssplitargs`` (None: unbalanced quotes).

    The line is a C string there: it ends at its first NUL byte.
    """
    end = line.find(b"\0")
    if end >= 0:
        line = line[:end]
    n = len(line)

    def at(i: int) -> int:
        return line[i] if i < n else 0

    args: list[bytes] = []
    p = 0
    while True:
        while p < n and line[p] in _SPACE:
            p += 1
        if p >= n:
            return args
        cur = bytearray()
        quote = 0  # the open quote: 0x22 ("), 0x27 ('), or 0 outside quotes
        while True:
            c = at(p)
            escaped = at(p + 1) if c == 0x5C else 0  # the byte after a backslash
            if quote == 0x22 and escaped == 0x78 and at(p + 2) in _HEX and at(p + 3) in _HEX:
                cur.append(int(line[p + 2 : p + 4], 16))
                p += 3
            elif quote == 0x22 and escaped:
                p += 1
                cur.append(_ESCAPES.get(line[p], line[p]))
            elif quote == 0x27 and escaped == 0x27:
                p += 1
                cur.append(0x27)
            elif quote and c == quote:  # closing quote: followed by a space or nothing
                if at(p + 1) and at(p + 1) not in _SPACE:
                    return None
                p += 1
                break
            elif quote:
                if not c:
                    return None
                cur.append(c)
            elif c in (0x20, 0x0A, 0x0D, 0x09, 0):
                if c:
                    p += 1
                break
            elif c in (0x22, 0x27):
                quote = c
            else:
                cur.append(c)
            if c:
                p += 1
        args.append(bytes(cur))


class RequestParser:
    """Incremental parser of client requests (one per connection).

    ``feed(data)`` appends bytes; ``get()`` returns the next complete command or None when more
    bytes are needed. Empty commands (a blank inline line, ``*0``) are skipped as redis-server
    skips them. A :class:`RespProtocolError` is final: answer its message and close.
    """

    def __init__(
        self,
        *,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_args: int = 1024 * 1024,
        max_query_bytes: int = 1024 * 1024 * 1024,
        authenticated: bool = True,
    ) -> None:
        self.max_bulk_len = max_bulk_len
        self.max_args = max_args
        self.max_query_bytes = max_query_bytes
        self.authenticated = authenticated
        """False until AUTH: at most 10 arguments of 16 KiB each, as redis-server allows."""
        self._buf = bytearray()
        self._pos = 0
        self._remaining = 0  # arguments still to read of the current multibulk command
        self._bulk = -1  # length of the bulk being read, -1 while its header is not read
        self._args: list[bytes] = []
        self._arg_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as commands (plus the current command's)."""
        return len(self._buf) - self._pos + self._arg_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        if self.buffered > self.max_query_bytes:
            raise RespProtocolError("Protocol error: query buffer limit exceeded")

    def _fail(self, text: str) -> RespProtocolError:
        self._remaining = 0
        self._buf.clear()
        self._pos = 0
        return RespProtocolError(text)

    def _compact(self) -> None:
        if self._pos and (self._pos >= len(self._buf) or self._pos > 65536):
            del self._buf[: self._pos]
            self._pos = 0

    def get(self) -> list[bytes] | None:
        buf = self._buf
        while True:
            if self._remaining == 0:
                if self._pos >= len(buf):
                    self._compact()
                    return None
                if buf[self._pos] != 0x2A:  # not '*': an inline command
                    args = self._inline()
                    if args is None:
                        self._compact()
                        return None
                    if args:
                        return args
                    continue
                if not self._multibulk_header():
                    self._compact()
                    return None
                if self._remaining == 0:
                    continue  # *0 or *-1: nothing to run
            if not self._read_bulks():
                self._compact()
                return None
            args, self._args, self._arg_bytes = self._args, [], 0
            return args

    def _inline(self) -> list[bytes] | None:
        buf, pos = self._buf, self._pos
        nl = _line_end(
            buf, pos, b"\n", lambda: self._fail("Protocol error: too big inline request")
        )
        if nl < 0:
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        args = split_inline(bytes(buf[pos:end]))
        if args is None:
            raise self._fail("Protocol error: unbalanced quotes in request")
        self._pos = nl + 1
        return args

    def _line(self, too_big: str) -> int:
        """Position of the '\\r' ending the header at ``_pos``, or -1 if not all here yet."""
        cr = _line_end(self._buf, self._pos, b"\r", lambda: self._fail(too_big))
        if cr < 0 or cr + 1 >= len(self._buf):  # the byte after '\r' must be here too (not checked)
            return -1
        return cr

    def _multibulk_header(self) -> bool:
        cr = self._line("Protocol error: too big mbulk count string")
        if cr < 0:
            return False
        count = parse_ll(self._buf[self._pos + 1 : cr])
        if count is None or count > min(self.max_args, 2**31 - 1):
            raise self._fail("Protocol error: invalid multibulk length")
        if count > 10 and not self.authenticated:
            raise self._fail("Protocol error: unauthenticated multibulk length")
        self._pos = cr + 2
        self._remaining = max(count, 0)
        return True

    def _read_bulks(self) -> bool:
        buf = self._buf
        while self._remaining:
            if self._bulk < 0:
                cr = self._line("Protocol error: too big bulk count string")
                if cr < 0:
                    return False
                if buf[self._pos] != 0x24:  # '$'
                    got = chr(buf[self._pos])
                    raise self._fail(f"Protocol error: expected '$', got '{got}'")
                n = parse_ll(buf[self._pos + 1 : cr])
                if n is None or n < 0 or n > self.max_bulk_len:
                    raise self._fail("Protocol error: invalid bulk length")
                if n > 16384 and not self.authenticated:
                    raise self._fail("Protocol error: unauthenticated bulk length")
                self._pos = cr + 2
                self._bulk = n
            if len(buf) - self._pos < self._bulk + 2:
                return False
            end = self._pos + self._bulk
            self._args.append(bytes(buf[self._pos : end]))
            self._arg_bytes += self._bulk
            self._pos = end + 2  # the two bytes after the data are not checked (as Redis)
            self._bulk = -1
            self._remaining -= 1
        return True


# ---- encoding replies ----------------------------------------------------------------------


def format_double(value: float) -> str:
    """How redis-server 7.0 prints a double reply (``%.17g``, ``inf``, ``-inf``)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.17g}"


def _error_text(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape").replace(b"\r", b" ").replace(b"\n", b" ")
    return raw if raw else b"ERR"


def encode_into(out: bytearray, reply: Reply, proto: int = 2) -> None:
    """Append ``reply`` in RESP``proto`` (2 or 3) to ``out``."""
    if isinstance(reply, bytes):
        out += b"$%d\r\n%b\r\n" % (len(reply), reply)
    elif isinstance(reply, int):
        out += b":%d\r\n" % reply
    elif reply is None:
        out += b"_\r\n" if proto == 3 else b"$-1\r\n"
    elif isinstance(reply, list):
        out += b"*%d\r\n" % len(reply)
        for item in reply:
            encode_into(out, item, proto)
    elif isinstance(reply, Simple):
        out += b"+%b\r\n" % reply.text.encode("utf-8", "surrogateescape")
    elif isinstance(reply, Err):
        out += b"-%b\r\n" % _error_text(reply.text)
    elif isinstance(reply, Double):
        text = format_double(reply.value).encode()
        out += b",%b\r\n" % text if proto == 3 else b"$%d\r\n%b\r\n" % (len(text), text)
    elif isinstance(reply, Map | Pairs):
        nested = proto == 3 and isinstance(reply, Pairs)
        if proto == 3 and isinstance(reply, Map):
            out += b"%%%d\r\n" % len(reply.items)
        else:
            out += b"*%d\r\n" % (len(reply.items) * (1 if nested else 2))
        for key, value in reply.items:
            if nested:
                out += b"*2\r\n"
            encode_into(out, key, proto)
            encode_into(out, value, proto)
    elif isinstance(reply, SetReply | Push):
        mark = b"*" if proto == 2 else (b"~" if isinstance(reply, SetReply) else b">")
        out += b"%b%d\r\n" % (mark, len(reply.items))
        for item in reply.items:
            encode_into(out, item, proto)
    elif isinstance(reply, Verbatim):
        if proto == 3:
            body = reply.format.encode() + b":" + reply.text
            out += b"=%d\r\n%b\r\n" % (len(body), body)
        else:
            out += b"$%d\r\n%b\r\n" % (len(reply.text), reply.text)
    elif reply is NULL_ARRAY:
        out += b"_\r\n" if proto == 3 else b"*-1\r\n"
    else:
        raise TypeError(f"not a reply: {reply!r}")


def encode(reply: Reply, proto: int = 2) -> bytes:
    out = bytearray()
    encode_into(out, reply, proto)
    return bytes(out)


def encode_command(args: list[bytes]) -> bytes:
    """A request as clients send it (an array of bulk strings)."""
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        out += b"$%d\r\n%b\r\n" % (len(arg), arg)
    return bytes(out)


# ---- parsing replies (the client's side) ---------------------------------------------------

_AGGREGATES: Final = frozenset(b"*%~>|")


class ReplyParser:
    """Incremental parser of RESP2/RESP3 replies into the reply model.

    RESP3 attributes (``|``) are read and dropped; booleans become 1/0 and big numbers ints.
    A RESP3 array of 2-element arrays stays a list (the wire cannot tell it from
    :class:`~litecluster.kv.reply.Pairs`).
    """

    def __init__(
        self, *, max_depth: int = 32, max_len: int = 16 * 1024 * 1024, max_bulk_len: int = 2**31
    ) -> None:
        self.max_depth = max_depth
        self.max_len = max_len
        self.max_bulk_len = max_bulk_len
        self._buf = bytearray()
        self._pos = 0
        # Open aggregates: [kind byte, items still expected, items so far].
        self._stack: list[tuple[int, list[int], list[Reply]]] = []

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def _fail(self, text: str) -> RespProtocolError:
        self._buf.clear()
        self._pos = 0
        self._stack.clear()
        return RespProtocolError(f"Protocol error: {text}")

    def get(self) -> Reply | type[ReplyParser]:
        """The next complete reply, or the class itself (``ReplyParser``) if more bytes are
        needed (``None`` is a valid reply)."""
        while True:
            got = self._token()
            if got is ReplyParser:
                if self._pos > 65536 or self._pos >= len(self._buf):
                    del self._buf[: self._pos]
                    self._pos = 0
                return ReplyParser
            value: Reply = got  # type: ignore[assignment]
            while True:
                if not self._stack:
                    return value
                kind, left, items = self._stack[-1]
                if kind != 0x7C:  # attributes are dropped
                    items.append(value)
                left[0] -= 1
                if left[0] > 0:
                    break
                self._stack.pop()
                if kind == 0x7C:
                    break  # the attribute is done; the annotated reply follows
                value = self._aggregate(kind, items)

    @staticmethod
    def _aggregate(kind: int, items: list[Reply]) -> Reply:
        if kind == 0x25:  # '%'
            return Map(list(zip(items[0::2], items[1::2], strict=True)))
        if kind == 0x7E:  # '~'
            return SetReply(items)
        if kind == 0x3E:  # '>'
            return Push(items)
        return items

    def _token(self) -> Reply | type[ReplyParser]:
        buf, pos = self._buf, self._pos
        cr = _line_end(buf, pos, b"\r\n", lambda: self._fail("too long reply line"))
        if cr < 0:
            return ReplyParser
        kind, line = buf[pos], bytes(buf[pos + 1 : cr])
        after = cr + 2
        if kind in (0x24, 0x21, 0x3D):  # '$' '!' '=': a length, then data
            n = _int(line)
            if n is None or n < -1 or n > self.max_bulk_len:
                raise self._fail("invalid bulk length")
            if n == -1:
                self._pos = after
                return None
            if len(buf) - after < n + 2:
                return ReplyParser
            data = bytes(buf[after : after + n])
            self._pos = after + n + 2
            if kind == 0x21:
                return Err(data.decode("utf-8", "surrogateescape"))
            if kind == 0x3D:
                return Verbatim(data[4:], data[:3].decode())
            return data
        self._pos = after
        if kind in _AGGREGATES:
            n = _int(line)
            if n is None or n < -1 or n > self.max_len:
                raise self._fail("invalid aggregate length")
            if n == -1:
                return NULL_ARRAY
            count = n * 2 if kind in (0x25, 0x7C) else n
            if count == 0:
                return self._aggregate(kind, [])
            if len(self._stack) >= self.max_depth:
                raise self._fail("replies nested too deeply")
            self._stack.append((kind, [count], []))
            return self._token()
        if kind == 0x2B:  # '+'
            return Simple(line.decode("utf-8", "surrogateescape"))
        if kind == 0x2D:  # '-'
            return Err(line.decode("utf-8", "surrogateescape"))
        if kind in (0x3A, 0x28):  # ':' '('
            n = _int(line)
            if n is None:
                raise self._fail("invalid integer")
            return n
        if kind == 0x5F:  # '_'
            return None
        if kind == 0x2C:  # ','
            try:
                return Double(float(line))
            except ValueError:
                raise self._fail("invalid double") from None
        if kind == 0x23:  # '#'
            return 1 if line == b"t" else 0
        raise self._fail(f"unknown reply type {chr(kind)!r}")


def _int(raw: bytes) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None

"""The replication protocol: framed, versioned messages between a primary and its replicas.

Every frame is ``length u32 | type u8 | body``, the body a msgpack map decoded by msgspec into
the message class of that type. A connection starts with the replica's :class:`Hello`; the
primary answers :class:`Welcome` or :class:`Refuse`. Then the primary sends, per database,
:class:`Records` (txlog records exactly as stored, each carrying its own checksum) or a snapshot
(:class:`SnapshotStart`, :class:`SnapshotChunk` ..., :class:`SnapshotEnd`), and a
:class:`Heartbeat` when idle; the replica sends :class:`Ack` after each apply and
:class:`NeedSnapshot` when its copy cannot follow the stream.

Anything that does not decode into the expected message is a :class:`ProtocolError`: the
connection is dropped and nothing is applied. Frames are bounded by :data:`MAX_FRAME` (and the
first one, which comes from a peer that has not authenticated yet, by :data:`MAX_HELLO`), so a
peer speaking garbage cannot make a node allocate without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
from typing import Any, TypeAlias

import msgspec

from litecluster.engine.position import Position
from litecluster.engine.record import FRAME, FRAME_SIZE, TRAILER_SIZE, TxRecord, decode, parse_frame
from litecluster.errors import ProtocolError

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">IB")
MAX_FRAME = 64 * 1024 * 1024
MAX_HELLO = 64 * 1024


class MsgType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    RECORDS = 4
    SNAPSHOT_START = 5
    SNAPSHOT_CHUNK = 6
    SNAPSHOT_END = 7
    HEARTBEAT = 8
    ACK = 9
    NEED_SNAPSHOT = 10
    BYE = 11


class Pos(msgspec.Struct, array_like=True, frozen=True):
    epoch: int
    txid: int
    checksum: int

    @classmethod
    def of(cls, p: Position) -> Pos:
        return cls(p.epoch, p.txid, p.checksum)

    def position(self) -> Position:
        return Position(self.epoch, self.txid, self.checksum)


class Hello(msgspec.Struct, frozen=True):
    version: int
    cluster: str
    node_id: str
    token: str
    positions: dict[str, Pos]
    http: str = ""
    """Where the replica serves status, so that the primary can list it."""
    kind: str = "node"
    """``node``: a ``litecluster serve`` replica that may be promoted; ``embedded``: a copy
    inside an application, never promoted."""
    durable: bool = True
    """Whether the replica fsyncs what it applies before acknowledging it."""
    nofailover: bool = False
    """A node that never runs for primary."""
    user: str = ""
    """An embedded replica's users-file login: ``token`` is then its password."""

    @property
    def promotable(self) -> bool:
        """Whether this replica's acknowledgements may count in synchronous mode: only a
        durable node that can be promoted holds an acknowledged write through a failover."""
        return self.kind == "node" and self.durable and not self.nofailover


class Welcome(msgspec.Struct, frozen=True):
    node_id: str
    epoch: int
    databases: list[str]
    http: str = ""


class Refuse(msgspec.Struct, frozen=True):
    code: str
    """``auth``, ``version``, ``cluster``, ``not_primary`` or ``busy``."""
    reason: str


class Records(msgspec.Struct, frozen=True):
    db: str
    data: bytes
    """Consecutive framed txlog records, concatenated."""


class SnapshotStart(msgspec.Struct, frozen=True):
    db: str
    position: Pos
    size: int
    """Bytes of the snapshot stream that follow in chunks."""
    diverged: bool = False
    """The replica's position is not in the primary's history: it holds writes no one else
    has (a deposed primary's tail), which it sets aside before installing."""
    unverified: bool = False
    """With ``diverged``: the position is older than the primary's txlog and could not be
    shown to be on its history either way; the copy is set aside in case it holds such
    writes, though it may be clean."""
    history: tuple[tuple[int, int], ...] = ()
    """The primary's epoch history up to the snapshot's txid: (epoch, base) entries, see
    node/history.py. Empty from a primary that keeps none."""


class SnapshotChunk(msgspec.Struct, frozen=True):
    db: str
    data: bytes


class SnapshotEnd(msgspec.Struct, frozen=True):
    db: str


class Heartbeat(msgspec.Struct, frozen=True):
    epoch: int
    heads: dict[str, int]
    """The primary's newest durable txid per database."""
    round: int = 0
    """Nonzero: a round of a static primary's linearizable read; the replica answers at once
    with an :class:`Ack` that carries it. Optional: older peers ignore it and send 0."""


class Ack(msgspec.Struct, frozen=True):
    positions: dict[str, Pos]
    round: int = 0
    """The newest :attr:`Heartbeat.round` this replica received on this connection."""


class NeedSnapshot(msgspec.Struct, frozen=True):
    db: str
    reason: str


class Bye(msgspec.Struct, frozen=True):
    """The replica closes for good (an embedded replica's clean close): the primary forgets
    it at once instead of listing it as disconnected."""


Message: TypeAlias = (
    Hello
    | Welcome
    | Refuse
    | Records
    | SnapshotStart
    | SnapshotChunk
    | SnapshotEnd
    | Heartbeat
    | Ack
    | NeedSnapshot
    | Bye
)

_TYPES: dict[MsgType, type[Any]] = {
    MsgType.HELLO: Hello,
    MsgType.WELCOME: Welcome,
    MsgType.REFUSE: Refuse,
    MsgType.RECORDS: Records,
    MsgType.SNAPSHOT_START: SnapshotStart,
    MsgType.SNAPSHOT_CHUNK: SnapshotChunk,
    MsgType.SNAPSHOT_END: SnapshotEnd,
    MsgType.HEARTBEAT: Heartbeat,
    MsgType.ACK: Ack,
    MsgType.NEED_SNAPSHOT: NeedSnapshot,
    MsgType.BYE: Bye,
}
_CODES: dict[type[Any], MsgType] = {cls: t for t, cls in _TYPES.items()}
_DECODERS = {t: msgspec.msgpack.Decoder(cls) for t, cls in _TYPES.items()}
_ENCODER = msgspec.msgpack.Encoder()


def encode_message(msg: Message) -> bytes:
    body = _ENCODER.encode(msg)
    return HEADER.pack(len(body), _CODES[type(msg)]) + body


def decode_body(code: int, body: bytes) -> Message:
    try:
        kind = MsgType(code)
    except ValueError:
        raise ProtocolError("unknown message type", type=code) from None
    try:
        msg: Message = _DECODERS[kind].decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        # msgspec reports invalid UTF-8 in a string as UnicodeDecodeError, not DecodeError.
        raise ProtocolError(f"malformed {kind.name} message: {exc}") from None
    return msg


def decode_frames(buf: bytes, *, max_frame: int = MAX_FRAME) -> tuple[list[Message], int]:
    """Decode the complete frames at the start of ``buf``; returns them and the bytes used.

    The pure form of :func:`read_message`, for tests and fuzzing.
    """
    out: list[Message] = []
    pos = 0
    while len(buf) - pos >= HEADER.size:
        length, code = HEADER.unpack_from(buf, pos)
        if length > max_frame:
            raise ProtocolError("frame too large", length=length, limit=max_frame)
        if len(buf) - pos - HEADER.size < length:
            break
        start = pos + HEADER.size
        out.append(decode_body(code, buf[start : start + length]))
        pos = start + length
    return out, pos


async def refuse(writer: asyncio.StreamWriter, code: str, reason: str) -> None:
    """Answer a connection with REFUSE and close it (the peer may be gone already)."""
    writer.write(encode_message(Refuse(code, reason)))
    with contextlib.suppress(Exception):
        await writer.drain()
    writer.close()


async def read_message(reader: asyncio.StreamReader, *, max_frame: int = MAX_FRAME) -> Message:
    """The next message; ``asyncio.IncompleteReadError`` when the peer closed the connection."""
    head = await reader.readexactly(HEADER.size)
    length, code = HEADER.unpack(head)
    if length > max_frame:
        raise ProtocolError("frame too large", length=length, limit=max_frame)
    body = await reader.readexactly(length)
    return decode_body(code, body)


def split_records(data: bytes, *, where: str = "<stream>") -> list[TxRecord]:
    """Decode the concatenated records of a :class:`Records` message, verifying each."""
    out: list[TxRecord] = []
    pos = 0
    mv = memoryview(data)
    while pos < len(data):
        if len(data) - pos < FRAME_SIZE:
            raise ProtocolError("records message ends inside a record frame", offset=pos)
        body = parse_frame(bytes(mv[pos : pos + FRAME.size]), where=where, offset=pos)
        end = pos + FRAME_SIZE + body + TRAILER_SIZE
        if end > len(data):
            raise ProtocolError("records message ends inside a record", offset=pos)
        out.append(decode(mv[pos:end], where=where, offset=pos))
        pos = end
    return out

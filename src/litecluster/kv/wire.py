"""What the key/value store sends between processes: ``POST /kv/exec`` requests and replies
(msgpack), and the change annotations a write puts on its txlog record.

Shared by the node (:mod:`litecluster.server.kvstore`) and the Python client
(:mod:`litecluster.client.kv`), which must agree on them byte for byte.
"""

from __future__ import annotations

import msgspec


class ExecRequest(msgspec.Struct, array_like=True):
    """The body of ``POST /kv/exec``: commands as (DB index, arguments), what EXEC watched."""

    commands: list[tuple[int, list[bytes]]]
    watch: list[tuple[int, bytes]]
    since: int
    """The txid the watched keys were read at."""
    publish: list[tuple[bytes, bytes]]
    all_or_nothing: bool = False
    level: str = ""
    """A read's level: ``none`` or empty (this node's copy; on the primary under its lease),
    ``strong`` or ``linearizable`` (answered by the primary under its lease; see docs/kv.md).
    A trailing optional field, as ``ExecReply.warning``."""


class ExecReply(msgspec.Struct, array_like=True):
    """The answer: serialised replies (None when a watched key aborted EXEC), and the txid at
    which the result is visible on the answering node."""

    replies: list[bytes] | None
    txid: int
    epoch: int
    warning: str = ""
    """Non-empty when the write is committed on the primary but the answering replica had
    not applied it when it answered (a read there may not show it yet). A trailing optional
    field: peers that predate it ignore it, and their replies decode with it empty."""


class Changes(msgspec.Struct, frozen=True, array_like=True):
    """What one write procedure changed: the annotation on its txlog record."""

    events: list[tuple[str, int, bytes]] = []
    """Keyspace events: (event, DB index, key)."""
    flushed: list[int] = []
    messages: list[tuple[bytes, bytes]] = []
    """Published (channel, message) pairs."""

    def changed_keys(self) -> list[tuple[int, bytes]]:
        return [(db, key) for _, db, key in self.events]


encode = msgspec.msgpack.Encoder().encode
_decode_changes = msgspec.msgpack.Decoder(Changes).decode
decode_request = msgspec.msgpack.Decoder(ExecRequest).decode
decode_reply = msgspec.msgpack.Decoder(ExecReply).decode


def decode_changes(raw: bytes) -> Changes | None:
    try:
        return _decode_changes(raw)
    except msgspec.DecodeError:
        return None  # an annotation of something else

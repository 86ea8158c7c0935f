"""The reply model of the key/value commands, independent of the wire protocol.

Commands build replies from Python values and a few wrappers; :mod:`litecluster.kv.resp`
encodes them in RESP2 or RESP3 the way redis-server does. The common shapes are plain Python
values so that the hot path allocates nothing extra:

=================  =======================  ====================================
reply              RESP2                    RESP3
=================  =======================  ====================================
``bytes``          bulk string ``$``        bulk string ``$``
``int``            integer ``:``            integer ``:``
``None``           null bulk ``$-1``        null ``_``
``list``           array ``*``              array ``*``
:class:`Simple`    simple string ``+``      simple string ``+``
:class:`Err`       error ``-``              error ``-``
:class:`Double`    bulk string (``%.17g``)  double ``,``
:class:`Map`       flat array, 2n items     map ``%``
:class:`SetReply`  array                    set ``~``
:class:`Pairs`     flat array, 2n items     array of 2-element arrays
``NULL_ARRAY``     null array ``*-1``       null ``_``
:class:`Verbatim`  bulk string              verbatim ``=``
:class:`Push`      array                    push ``>``
=================  =======================  ====================================

:func:`dumps` / :func:`loads` carry a reply between nodes (a replica forwards a write to the
primary and answers its client in the client's protocol) without losing the distinctions that
RESP2 erases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgspec


@dataclass(frozen=True, slots=True)
class Simple:
    """A simple string (``+OK``); ``text`` has no CR or LF."""

    text: str


@dataclass(frozen=True, slots=True)
class Err:
    """An error reply; ``text`` starts with its code (``ERR``, ``WRONGTYPE``, ...)."""

    text: str

    @property
    def code(self) -> str:
        return self.text.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Double:
    value: float


@dataclass(frozen=True, slots=True)
class Map:
    items: list[tuple[Reply, Reply]]


@dataclass(frozen=True, slots=True)
class SetReply:
    items: list[Reply]


@dataclass(frozen=True, slots=True)
class Pairs:
    """Pairs such as member/score: flat in RESP2, nested 2-element arrays in RESP3."""

    items: list[tuple[Reply, Reply]]


@dataclass(frozen=True, slots=True)
class Verbatim:
    text: bytes
    format: str = "txt"


@dataclass(frozen=True, slots=True)
class Push:
    items: list[Reply]


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = _NullArray()
"""The null array of RESP2 (``*-1``): LPOP/RPOP with a count on a missing key."""

Reply: TypeAlias = (
    "bytes | int | list[Reply] | Simple | Err | Double | Map | SetReply | Pairs"
    " | _NullArray | Verbatim | Push | None"
)

OK: Final = Simple("OK")
PONG: Final = Simple("PONG")
QUEUED: Final = Simple("QUEUED")


def is_error(reply: Reply) -> bool:
    return isinstance(reply, Err)


# ---- carrying replies between nodes --------------------------------------------------------
# Natives stay natives (msgpack bin, int, nil); every other shape is a list whose first item
# is a str tag, which no native bytes value can be confused with.


def _to_plain(reply: Reply) -> Any:
    if reply is None or isinstance(reply, bytes | int):
        return reply
    if isinstance(reply, list):
        return ["*", *(_to_plain(r) for r in reply)]
    if isinstance(reply, Simple):
        return ["+", reply.text]
    if isinstance(reply, Err):
        return ["-", reply.text]
    if isinstance(reply, Double):
        return [",", reply.value]
    if isinstance(reply, Map):
        return ["%", *(_to_plain(x) for kv in reply.items for x in kv)]
    if isinstance(reply, Pairs):
        return ["P", *(_to_plain(x) for kv in reply.items for x in kv)]
    if isinstance(reply, SetReply):
        return ["~", *(_to_plain(r) for r in reply.items)]
    if isinstance(reply, Verbatim):
        return ["=", reply.format, reply.text]
    if isinstance(reply, Push):
        return [">", *(_to_plain(r) for r in reply.items)]
    return ["_"]  # NULL_ARRAY


def _pairs(items: list[Any]) -> list[tuple[Reply, Reply]]:
    flat = [_from_plain(x) for x in items]
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _from_plain(obj: Any) -> Reply:
    if obj is None or isinstance(obj, bytes | int):
        return obj
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise ValueError(f"not a serialised reply: {obj!r}")
    tag, rest = obj[0], obj[1:]
    if tag == "*":
        return [_from_plain(x) for x in rest]
    if tag == "+":
        return Simple(str(rest[0]))
    if tag == "-":
        return Err(str(rest[0]))
    if tag == ",":
        return Double(float(rest[0]))
    if tag == "%":
        return Map(_pairs(rest))
    if tag == "P":
        return Pairs(_pairs(rest))
    if tag == "~":
        return SetReply([_from_plain(x) for x in rest])
    if tag == "=":
        return Verbatim(bytes(rest[1]), str(rest[0]))
    if tag == ">":
        return Push([_from_plain(x) for x in rest])
    if tag == "_":
        return NULL_ARRAY
    raise ValueError(f"unknown reply tag {tag!r}")


def dumps(reply: Reply) -> bytes:
    """A compact msgpack form of ``reply`` that :func:`loads` turns back into it."""
    return msgspec.msgpack.encode(_to_plain(reply))


def loads(data: bytes) -> Reply:
    return _from_plain(msgspec.msgpack.decode(data))

"""Errors of the key/value layer, and the texts of redis-server 7's error replies.

A command that fails raises :class:`CommandError` with the exact text redis-server answers
(``WRONGTYPE ...``, ``ERR syntax error``); the executor rolls the command back and turns it
into an error reply. :class:`RespProtocolError` is bad input on the wire: the server answers it
and closes the connection, as redis-server does.
"""

from __future__ import annotations

from typing import Final

from litecluster.errors import LiteclusterError


class KvModelError(LiteclusterError):
    """Root of the key/value model's errors (the client's are ``client.errors.KvError``)."""


class CommandError(KvModelError):
    """A command failed; ``message`` is the error reply's text, code first."""

    default_hint = "see docs/kv.md for the supported commands and their arguments"


class RespProtocolError(KvModelError):
    """A client sent bytes that are not a valid request; ``message`` is Redis's text
    (``Protocol error: ...``)."""

    default_hint = "the client is not speaking RESP (or sent more than the configured limits)"

    @property
    def reply_text(self) -> str:
        """The error reply redis-server sends before it closes the connection."""
        return f"ERR {self.message}"


class SchemaError(KvModelError):
    """The key/value tables of a database are missing or of another version."""

    default_hint = "the database holds a different litecluster key/value schema; upgrade the node"


WRONGTYPE: Final = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER: Final = "ERR value is not an integer or out of range"
NOT_FLOAT: Final = "ERR value is not a valid float"
SYNTAX: Final = "ERR syntax error"
NO_SUCH_KEY: Final = "ERR no such key"
OVERFLOW: Final = "ERR increment or decrement would overflow"
NAN_OR_INF: Final = "ERR increment would produce NaN or Infinity"
OUT_OF_RANGE_POSITIVE: Final = "ERR value is out of range, must be positive"
INDEX_OUT_OF_RANGE: Final = "ERR index out of range"
MIN_MAX_NOT_FLOAT: Final = "ERR min or max is not a float"
MIN_MAX_NOT_LEX: Final = "ERR min or max not valid string range item"
NOT_A_STRING_HASH_VALUE: Final = "ERR hash value is not an integer"
NOT_A_FLOAT_HASH_VALUE: Final = "ERR hash value is not a float"
STRING_TOO_LONG: Final = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"


def fail(text: str) -> CommandError:
    """The exception for an error reply with ``text`` (``raise fail(SYNTAX)``)."""
    return CommandError(text)

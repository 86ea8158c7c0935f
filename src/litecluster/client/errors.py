"""The Python client's errors and the mapping of failed requests onto them.

Shared by the sync, asyncio and key/value clients. A failed request becomes a
:class:`ClientError` (:class:`KvError` for ``client.kv``) whose ``retryable``, ``indeterminate``
and ``committed`` are the properties of the server's error (the HTTP API sends them with every
error, see docs/http-api.md), or what the client itself knows: whether a request that got no
response had left before the failure.
"""

from __future__ import annotations

from typing import Any

import httpx

from litecluster.errors import COMMITTED_HINT, EXCLUDED_HINT, INDETERMINATE_HINT, LiteclusterError
from litecluster.replication.history import Reach

_FLAGS = ("retryable", "indeterminate", "committed")


class ClientError(LiteclusterError):
    """A request failed: an SQL error (``sql_error`` is the database's message), a refused
    request, or no node reachable.

    ``retryable``: nothing was applied, sending the request again is safe. ``indeterminate``:
    a write whose outcome is unknown (the connection broke after sending it, sync replicas did
    not acknowledge it in time, the primary lost its lease while committing it); it may or may
    not have been applied, so check before retrying. ``committed``: the write was applied on
    the primary but the embedded replica had not applied it in time; do not send it again. At
    most one of them is true (an indeterminate error is never retryable). The client never
    retries by itself.
    """

    def __init__(
        self, message: str, *, retryable: bool = False, indeterminate: bool = False,
        committed: bool = False, **context: Any,
    ) -> None:  # fmt: skip
        super().__init__(message, **context)
        # Per instance: the same request fails in any of the ways, as the server reports.
        self.indeterminate = indeterminate
        self.committed = committed and not indeterminate
        self.retryable = retryable and not (indeterminate or committed)


class KvError(ClientError):
    """A key/value command failed: ``message`` is Redis's error text (WRONGTYPE ...), or the
    request did (``retryable``, ``indeterminate`` and ``committed`` as for :class:`ClientError`)."""


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request left: safe to retry even for a write."""


def transport_error(
    url: str, exc: httpx.HTTPError, *, write: bool, cls: type[ClientError] = ClientError
) -> ClientError:
    """The error for a request that got no response: a write that may have reached the node
    (timeout or broken connection after sending) has an unknown outcome, not a retryable one."""
    if write and not isinstance(exc, _NOT_SENT):
        return cls(f"no response from {url} to a write: {exc}", indeterminate=True,
                   hint=INDETERMINATE_HINT)  # fmt: skip
    return cls(f"cannot reach {url}: {exc}", retryable=True)


def response_error(
    status: int, data: dict[str, Any], cls: type[ClientError] = ClientError
) -> ClientError:
    """The error an HTTP error response (a JSON body with ``error``) stands for: the flags the
    server sent, or, from something that sends none (a proxy, an overloaded server), retryable
    for a 5xx status."""
    extra: dict[str, Any] = {"hint": str(data["hint"])} if data.get("hint") else {}
    if any(flag in data for flag in _FLAGS):
        flags = {flag: data.get(flag) is True for flag in _FLAGS}
    else:
        flags = {"retryable": status >= 500}
    return cls(str(data.get("error", status)), status=status, **flags, **extra)


def not_visible_error(cls: type[ClientError] = ClientError, **context: Any) -> ClientError:
    """The error for a write the primary committed that the embedded replica had not applied
    when the read-your-writes wait ended."""
    return cls("the write committed but the local replica did not apply it in time",
               committed=True, hint=COMMITTED_HINT, **context)  # fmt: skip


def excluded_error(cls: type[ClientError] = ClientError, **context: Any) -> ClientError:
    """The error for a write acknowledged by a primary that was deposed before the write
    reached the embedded replica's history (a newer epoch took over below its txid): lost,
    neither retryable nor indeterminate, as the server's 409 says."""
    return cls("the write is lost: a newer primary's history, which the local replica follows, "
               "does not hold it", status=409, hint=EXCLUDED_HINT, **context)  # fmt: skip


class LocalCopyBehindError(ClientError):
    """A local read of the embedded replica waited for this client's last write (session
    consistency) and the local copy had not applied it in time: retryable (the write
    committed; the read may be sent again, or sent to the primary with ``level="strong"``)."""


class LocalCopyBehindKvError(LocalCopyBehindError, KvError):
    """:class:`LocalCopyBehindError` of ``client.kv``."""


def stale_read_error(cls: type[ClientError] = ClientError, **context: Any) -> ClientError:
    """The error for a local read that waited in vain for the client's last write."""
    kind = LocalCopyBehindKvError if issubclass(cls, KvError) else LocalCopyBehindError
    return kind("the local replica has not applied this client's last write yet",
                retryable=True, hint="retry the read, or read from the primary "
                "(level='strong')", **context)  # fmt: skip


def settle_error(
    got: Reach, cls: type[ClientError] = ClientError, **context: Any
) -> ClientError | None:
    """The error for the end of a read-your-writes wait on the embedded replica (None: the
    write is visible there)."""
    if got is Reach.REACHED:
        return None
    if got is Reach.EXCLUDED:
        return excluded_error(cls, **context)
    return not_visible_error(cls, **context)

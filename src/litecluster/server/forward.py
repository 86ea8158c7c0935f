"""The one forward-to-primary of a replica's front doors (the SQL API, ``/kv/exec``, RESP).

A replica runs no writes itself: it sends them to the primary's HTTP port and answers its
client once it has applied the result too, so the client reads its own write on this node.
:class:`Forwarder` is that step, shared by every front door, with three policies in one place:

- TLS: the client context is built once, through
  :func:`litecluster.replication.tls.client_context` (the cluster CA, TLS 1.2 minimum); the
  primary is reached over ``https`` exactly when there is one, as the replication stream is.
- Failures map onto the error tree (:func:`transport_failure`, :func:`refusal`): nothing sent
  is retryable; a request the primary may have received leaves a write's outcome unknown
  (:class:`~litecluster.errors.IndeterminateWriteError`) and a read retryable; a primary's
  error answer keeps its own flags.
- Identity: a forwarded request carries its caller's credentials (``authorization``), so the
  primary authenticates the caller and checks its permission again; a caller that held a
  cluster token (or a node with authentication off) is forwarded with this node's token.
- Read-your-writes (:meth:`Forwarder.settle`): wait, bounded, until this node has applied the
  primary's position (epoch, txid, judged by this node's epoch history). When the wait ends
  first the write is committed on the primary but not visible here yet: it is counted and
  logged, and each front door tells its client (:data:`NOT_VISIBLE_WARNING`; see
  docs/http-api.md and docs/kv.md). When this node's history excludes the position (a newer
  primary took over below its txid: the old primary's unreplicated tail, asynchronous mode),
  the write is lost and the client is told so
  (:class:`~litecluster.errors.ExcludedByNewerHistoryError`), never 200.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol

import aiohttp
import msgspec

from litecluster.engine.position import Position
from litecluster.errors import (
    AuthError,
    CommittedNotVisibleError,
    ExcludedByNewerHistoryError,
    IndeterminateWriteError,
    LiteclusterError,
    NodeError,
    NotPrimaryError,
    PermissionDeniedError,
    RequestError,
    UnavailableError,
)
from litecluster.replication.history import Reach

log = logging.getLogger("litecluster.forward")

NOT_VISIBLE_WARNING = "committed on the primary; not yet applied on this replica"
"""What a forwarded write's answer carries when this node had not applied it in time."""


class Answer(NamedTuple):
    """The primary's answer to a forwarded request."""

    status: int
    body: bytes
    primary: str
    """The HTTP address it came from."""


class Upstream(Protocol):
    """The replica's view of its primary that forwarding needs."""

    @property
    def http(self) -> str:
        """The primary's HTTP address (``host:port``), empty until it told it."""
        ...

    @property
    def state(self) -> str:
        """``streaming`` while the replica follows the primary live."""
        ...


def transport_failure(exc: BaseException, *, write: bool, primary: str) -> LiteclusterError:
    """The error for a forward that got no usable answer. A failed connect (TLS handshake
    included) sent nothing: retryable. Anything later (a dropped connection, a timeout, an
    unreadable body) may have reached the primary: a write's outcome is unknown, a read can
    be retried."""
    message = f"forwarding to the primary failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NotPrimaryError(message, primary=primary)
    if write:
        return IndeterminateWriteError(message, primary=primary)
    return UnavailableError(message, primary=primary)


def refusal(
    status: int, body: bytes, *, request_error: type[RequestError] = RequestError
) -> LiteclusterError:
    """The error for a primary's non-200 answer, its own flags kept: ``indeterminate`` wins
    (outcome unknown), then ``committed`` (applied there: never send it again), then
    ``retryable``; a 400 is ``request_error`` (it fails again as is), a 401 or 403 the
    primary's refusal of the caller's credentials; anything else a plain
    :class:`~litecluster.errors.NodeError`. The primary's ``hint`` is kept."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        data = {"error": body[:200].decode("utf-8", "replace")}
    message = str(data.get("error", "")) or f"HTTP {status}"
    hint = data.get("hint") if isinstance(data.get("hint"), str) else None
    if data.get("indeterminate") is True:
        return IndeterminateWriteError(f"on the primary: {message}", hint=hint, status=status)
    if data.get("committed") is True:
        return CommittedNotVisibleError(f"on the primary: {message}", hint=hint, status=status)
    text = f"the primary refused the request: {message}"
    if data.get("retryable") is True:
        return UnavailableError(text, hint=hint, status=status)
    if status == 400:
        return request_error(text, hint=hint, status=status)
    if status in (401, 403):  # the primary checked the caller's credentials again
        cls = PermissionDeniedError if status == 403 else AuthError
        return cls(text, hint=hint, status=status)
    return NodeError(text, hint=hint, status=status)


class Forwarder:
    """Sends a replica's requests to its primary; one per node.

    ``upstream`` returns the current view of the primary (None while this node follows no
    one); ``session`` the pooled aiohttp session; ``tls`` the client context (None: plain
    HTTP); ``timeout`` bounds one forwarded request in seconds; ``wait_applied(db, position)``
    waits, bounded, until this node holds ``position`` of ``db`` or its history excludes it,
    and says which.
    """

    def __init__(
        self,
        *,
        upstream: Callable[[], Upstream | None],
        session: Callable[[], aiohttp.ClientSession],
        tls: ssl.SSLContext | None,
        timeout: float,
        wait_applied: Callable[[str, Position], Awaitable[Reach]],
        token: Callable[[], str] = lambda: "",
    ) -> None:
        self._upstream = upstream
        self._session = session
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._wait_applied = wait_applied
        self._token = token
        self.scheme = "https" if tls is not None else "http"
        self.not_visible = 0
        """Forwarded writes answered before this node had applied them."""
        self.excluded = 0
        """Forwarded writes this node's newer history excludes (lost in a failover)."""

    def target(self) -> str:
        """The primary's HTTP address; :class:`~litecluster.errors.NotPrimaryError`
        (retryable, nothing sent) while there is no primary to forward to."""
        up = self._upstream()
        if up is None:
            # Between roles (stepped down, etcd unreachable, disk full): nowhere to forward to.
            raise NotPrimaryError("this node is not the primary and follows no primary right now")
        if not up.http or up.state != "streaming":
            raise NotPrimaryError("no primary reachable to forward to", state=up.state)
        return up.http

    async def post(
        self,
        path: str,
        *,
        write: bool,
        json: Any = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Answer:
        """POST to the primary's ``path``; its answer, whatever the status (the
        caller decides what an error answer means for its client). Raises
        :func:`transport_failure`'s error when there is no answer; ``write`` says whether
        the request may change data; ``authorization`` is the caller's own ``Authorization``
        (None: this node's token)."""
        primary = self.target()
        url = f"{self.scheme}://{primary}{path}"
        sent = dict(headers or {})
        sent["Authorization"] = authorization or f"Bearer {self._token()}"
        try:
            async with self._session().post(
                url, json=json, data=data, params=params, headers=sent,
                ssl=self._tls or False, timeout=self._timeout,
            ) as resp:  # fmt: skip
                return Answer(resp.status, await resp.read(), primary)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_failure(exc, write=write, primary=primary) from None

    async def settle(self, db: str, position: Position) -> bool:
        """Wait until this node has applied the primary's ``position`` of ``db`` (bounded by
        ``wait_applied``). False: the write is committed on the primary but not visible here
        yet; counted and logged, and the caller tells its client so (never as a failure: it
        must not be sent again). Raises :class:`ExcludedByNewerHistoryError` when this node's
        history excludes the position: the primary that acknowledged it was deposed before
        the write reached this lineage."""
        got = await self._wait_applied(db, position)
        if got is Reach.REACHED:
            return True
        if got is Reach.EXCLUDED:
            self.excluded += 1
            log.warning("forward.excluded db=%s position=%d:%d count=%d", db, position.epoch,
                        position.txid, self.excluded)  # fmt: skip
            raise ExcludedByNewerHistoryError(
                "the primary that acknowledged this write was deposed before the write reached "
                "this node's history: a newer primary took over below its txid, so the write "
                "is lost",
                db=db, position=f"{position.epoch}:{position.txid}",
            )  # fmt: skip
        self.not_visible += 1
        log.warning("forward.not_visible db=%s position=%d:%d count=%d", db, position.epoch,
                    position.txid, self.not_visible)  # fmt: skip
        return False

"""The one exception tree of litecluster.

Every error class of the package derives from :class:`LiteclusterError`. Each carries the context
needed to act on it (a file, an offset, a txid) and a ``hint`` that tells an operator what to do
next. Callers that need to react programmatically catch the typed subclasses; the CLI prints
``str(err)`` which includes the hint.

What an error says about the operation that raised it is a property of its class, never of a
place in the tree:

- ``retryable``: nothing of it took effect and sending it again may succeed (on the primary,
  after a failover, on another node);
- ``indeterminate``: it may or may not have taken effect; sending it again blindly can apply a
  write twice, so an indeterminate error is never retryable;
- ``committed``: it took effect on the primary but is not yet visible where it was asked; it must
  not be sent again, and a read there may not show it yet;
- none of them: it failed, nothing of it took effect, and sending it again as is fails again.

At most one of the three holds for a class (checked when the class is defined). The front doors
(HTTP, RESP) and the clients map errors to answers through these properties alone.

Where the classes live: an error that crosses layers (raised by the replication or server side,
answered by a front door, seen by a client) is defined here. An error raised and handled within
one layer lives in that layer's package, still under this tree: the key/value model's in
``kv/errors.py`` (next to Redis's error texts), etcd's in ``ha/etcd.py``, the Python client's in
``client/errors.py`` (whose instances carry the three properties the server reported) and PEP
249's in ``client/dbapi.py``. Modules that raised a class before it moved here re-export it.
"""

from __future__ import annotations

from typing import Any

INDETERMINATE_HINT = (
    "the write may or may not have been applied: read to check before retrying it, or retry "
    "only if it is idempotent"
)


COMMITTED_HINT = (
    "the write is committed: do not send it again; read it from the primary, or wait until "
    "this node has applied it"
)


class LiteclusterError(Exception):
    """Root of every error litecluster raises on purpose (see the module docstring for the
    meaning of ``retryable``, ``indeterminate`` and ``committed``)."""

    default_hint: str = ""
    retryable: bool = False
    """Nothing of the operation took effect; sending it again is safe and may succeed."""
    indeterminate: bool = False
    """The operation may or may not have taken effect: retrying it blindly can apply a write
    twice (see :func:`is_indeterminate`)."""
    committed: bool = False
    """The write took effect on the primary but is not yet visible where it was asked."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.retryable + cls.indeterminate + cls.committed > 1:
            raise TypeError(
                f"{cls.__qualname__}: retryable, indeterminate and committed exclude each other"
            )

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.context: dict[str, Any] = context

    def __str__(self) -> str:
        parts = [self.message]
        if self.context:
            parts.append("(" + ", ".join(f"{k}={v}" for k, v in self.context.items()) + ")")
        text = " ".join(parts)
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(LiteclusterError):
    """A configuration value is missing or invalid."""

    default_hint = "check the named setting"


class SQLiteUnsupportedError(LiteclusterError):
    """The SQLite library or database file cannot be used for replication."""


class WalError(LiteclusterError):
    """The WAL file of the primary cannot be read as expected."""


class CaptureGapError(WalError):
    """Committed transactions were checkpointed away before capture could read them.

    The primary's data is intact; the transaction log just cannot describe the change page by
    page. Capture records a reset marker so that replicas re-snapshot instead of drifting.
    """

    default_hint = (
        "another process checkpointed and restarted the WAL while capture was not pinning it; "
        "replicas will be re-snapshotted. Avoid explicit wal_checkpoint(RESTART|TRUNCATE) calls "
        "from other processes on a replicated primary"
    )


class TxlogError(LiteclusterError):
    """The transaction log cannot be used."""


class TxlogCorruptError(TxlogError):
    """A record or segment fails its checksum or structure checks."""

    default_hint = (
        "the transaction log is damaged at the named file and offset; restore it from a replica "
        "or, if this follows a power loss, cut the damaged tail with "
        "`litecluster txlog repair DIR` (records after it are lost from the log, not the database)"
    )


class TxidNotFoundError(TxlogError):
    """A txid was asked for that the log does not (or no longer) hold."""

    default_hint = "the replica is behind the log's retention and must re-snapshot"


class ReplicaError(LiteclusterError):
    """Applying to a replica failed."""


class DivergenceError(ReplicaError):
    """A replica's contents do not match the primary's history at its position."""

    default_hint = "the replica has diverged from the primary; re-snapshot it"


class LocalWriteError(DivergenceError):
    """Someone other than the applier wrote to the replica database file."""

    default_hint = (
        "replica files are read-only for applications; send writes to the primary, then "
        "re-snapshot this replica"
    )


class SnapshotRequiredError(ReplicaError):
    """The next record cannot be applied incrementally; a snapshot must be installed first."""

    default_hint = "install a snapshot of the primary on this replica"


class SnapshotError(LiteclusterError):
    """A snapshot could not be created, read or installed."""


class SnapshotCorruptError(SnapshotError):
    """A snapshot stream fails its checksums; nothing of it was installed."""

    default_hint = "take a fresh snapshot from the primary"


class NodeError(LiteclusterError):
    """A node (``litecluster serve``) cannot start or serve."""


class ProtocolError(NodeError):
    """A peer sent bytes that are not a valid message of the replication protocol."""

    default_hint = "check that both ends run compatible litecluster versions and the right ports"


class PeerRefusedError(NodeError):
    """The primary refused this replica's connection (bad token, other cluster, version)."""

    default_hint = "check the cluster token, cluster id and primary address on both nodes"


class StaleEpochError(NodeError):
    """A peer speaks for an epoch older than one this node has already seen."""

    default_hint = "the peer is a former primary; point replicas at the current one"


class RequestError(NodeError):
    """A request that is not well formed (HTTP 400): nothing of it ran, and it fails again as
    is."""

    default_hint = "see the rqlite-compatible API in docs/http-api.md"


class AuthError(NodeError):
    """A request without valid credentials (HTTP 401, RESP -NOAUTH/-WRONGPASS): nothing of
    it ran."""

    default_hint = (
        "send Authorization: Bearer <cluster token>, or HTTP Basic with a user of the node's "
        "users_file (see docs/security.md)"
    )


class PermissionDeniedError(AuthError):
    """Valid credentials whose user lacks the permission the request needs (HTTP 403, RESP
    -NOPERM): nothing of it ran."""

    default_hint = "grant the permission in the users_file on every node, then SIGHUP them"


class KvRequestError(RequestError):
    """A malformed key/value request, or one that cannot apply (answered 400)."""

    default_hint = "see docs/kv.md for the key/value request and the supported commands"


class AtomicAbortedError(KvRequestError):
    """A command of an all-or-nothing request failed: none of it was applied."""


class UnavailableError(NodeError):
    """This node cannot serve the request now (it is not the primary, it follows no primary,
    the primary refused it as retryable): nothing of it was applied; retry it."""

    default_hint = "retry, on the primary or another node"
    retryable = True


class NotPrimaryError(UnavailableError):
    """A write reached a node that is not (or no longer) the primary; retry on the primary."""

    default_hint = "retry: the client or the node forwards to the current primary"


class StaleReadError(UnavailableError):
    """A ``level=none`` read with ``freshness`` on a replica that lost touch with its primary."""

    default_hint = "read from another node, or drop freshness to accept staler data"


class WriteError(NodeError):
    """The group transaction could not be committed (disk full, I/O error): nothing of it was
    applied; the request may be retried."""

    default_hint = (
        "nothing was applied: retry; if it keeps failing, check the primary's disk and log"
    )
    retryable = True


class QueueFullError(UnavailableError):
    """The node's queue of queued writes (``?queue``) holds its limit of entries or bytes:
    the write was not queued."""

    default_hint = "retry later, or write without ?queue (the queue drains in the background)"


class QueueBookkeepingError(NodeError):
    """A queued write whose exactly-once record could not be kept in its database (the
    reserved table is damaged): it was rolled back and is dropped from the queue."""


class IndeterminateWriteError(NodeError):
    """A write whose outcome is unknown: it may or may not have been applied (never retryable
    as is; the client must check first)."""

    default_hint = INDETERMINATE_HINT
    indeterminate = True


def committed_not_durable(exc: BaseException, db: str) -> IndeterminateWriteError:
    """A transaction SQLite committed but capture could not make durable in the txlog (disk
    full, I/O error): it is in the file and a later poll may still capture and replicate it,
    so its outcome is unknown, not failed."""
    return IndeterminateWriteError(
        f"the write committed but could not be made durable in the txlog: {exc}", db=db
    )


class SyncTimeoutError(IndeterminateWriteError):
    """Synchronous mode: too few replicas acknowledged a write in time (outcome unknown)."""

    default_hint = "check that enough replicas are connected (status); " + INDETERMINATE_HINT


class LeadershipLostError(IndeterminateWriteError):
    """The primary's leadership ended while a write committed: durable here, perhaps not on the
    next primary, so its outcome is unknown. Not a :class:`NotPrimaryError`: that one says
    nothing was applied, this one that something may have been."""


class CommittedNotVisibleError(NodeError):
    """A write committed on the primary (``position`` or ``txid`` in the context) that this
    node, or the client's embedded replica, had not applied when the wait for it ended: it
    must not be sent again, and a read here may not show it yet."""

    default_hint = COMMITTED_HINT
    committed = True


EXCLUDED_HINT = (
    "the write was lost in a failover (a newer primary's history does not hold it): write it "
    "again if it is still wanted, after reading the current state"
)


class QueueWaitTimeoutError(IndeterminateWriteError):
    """``?queue&wait``: the write is durably queued on the node that answered, but was not
    applied within the wait's ``timeout``. It will be applied (once): do not send it again."""

    default_hint = ("the write is queued and will be applied exactly once: do not send it "
                    "again; read to see when it took effect")  # fmt: skip


class ExcludedByNewerHistoryError(NodeError):
    """A position (a write's, or a read-your-writes token's (epoch, txid)) that this node's
    epoch history excludes: a newer epoch began at or below its txid, so the write it names is
    not in this history and no record to come can bring it (asynchronous mode: the old
    primary's tail that reached no replica). Neither retryable (waiting again waits for
    nothing) nor indeterminate: the write is known lost here. Answered HTTP 409."""

    default_hint = EXCLUDED_HINT


def is_indeterminate(exc: BaseException) -> bool:
    """Whether ``exc`` leaves a write's outcome unknown (so it must not be retried blindly)."""
    if not isinstance(exc, LiteclusterError):
        return False
    return bool(exc.indeterminate)

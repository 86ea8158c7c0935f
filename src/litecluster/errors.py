"""The one exception tree of litecluster.

Every error raised on purpose by the library derives from :class:`LiteclusterError`. Each carries
the context needed to act on it (a file, an offset, a txid) and a ``hint`` that tells an operator
what to do next. Callers that need to react programmatically catch the typed subclasses; the CLI
prints ``str(err)`` which includes the hint.
"""

from __future__ import annotations

from typing import Any

INDETERMINATE_HINT = (
    "the write may or may not have been applied: read to check before retrying it, or retry "
    "only if it is idempotent"
)


class LiteclusterError(Exception):
    """Root of every error litecluster raises on purpose."""

    default_hint: str = ""
    indeterminate: bool = False
    """True when the operation may or may not have taken effect: retrying it blindly can apply
    a write twice (see :func:`is_indeterminate`)."""

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


class NotPrimaryError(NodeError):
    """A write reached a node that is not (or no longer) the primary; retry on the primary."""

    default_hint = "retry: the client or the node forwards to the current primary"


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


class LeadershipLostError(NotPrimaryError):
    """The primary's leadership ended while a write committed: durable here, perhaps not on the
    next primary, so its outcome is unknown (unlike other NotPrimaryErrors, not retryable)."""

    default_hint = INDETERMINATE_HINT
    indeterminate = True


def is_indeterminate(exc: BaseException) -> bool:
    """Whether ``exc`` leaves a write's outcome unknown (so it must not be retried blindly)."""
    if not isinstance(exc, LiteclusterError):
        return False
    return bool(exc.indeterminate)

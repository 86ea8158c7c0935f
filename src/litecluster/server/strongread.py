"""Reads answered under the primary's lease: the one rule behind ``strong`` and
``linearizable`` reads of the SQL API and of the key/value store (``/kv/exec`` and RESP).

A primary paused past its lease (SIGSTOP, a long GC or VM stall) may wake while another node
has been elected and has acknowledged writes; a read that began before the pause, or waited in
the socket backlog during it, would then be answered from a stale copy. So the lease is checked
on the node's own monotonic clock *after* the read ran, not only before: a lease still valid
once the snapshot was taken proves that no other primary existed when it was taken, so the
snapshot holds every write acknowledged before the read began. ``linearizable`` adds a round to
the coordinator (etcd: a quorum read of the leader key) after the read, which also covers a
clock that runs slow. The lease check is a clock comparison: cheap enough for every read.

In synchronous mode the snapshot must also hold nothing the synchronous replicas lack: the
primary's file holds writes committed there that still wait for their acknowledgements, and a
failover before a replica received one loses it (its client is told ``indeterminate``). A read
that showed it would have shown a write that is then gone. So after the read the primary
waits, bounded by ``sync_timeout``, until every commit its file held is acknowledged (usually
one replication round trip, nothing when no write is in flight), and the lease is checked
after that wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from litecluster.errors import NotPrimaryError, RequestError, UnavailableError

STRONG_LEVELS = ("strong", "linearizable")
T = TypeVar("T")


class LeaseHolder(Protocol):
    """The node as a strong read needs it (``ports.Local`` fits)."""

    def lease_valid(self) -> bool:
        """True while this node is primary and its leadership holds on its monotonic clock."""

    async def confirm_leadership(self) -> bool:
        """True when the coordinator still names this node at its epoch, lease still valid."""

    async def confirm_replicated(self, db: str) -> bool:
        """True once every commit ``db`` holds here is held by the synchronous replicas
        (always, in asynchronous mode); False when they did not acknowledge in time."""


def refuse_without_lease(held: bool, level: str) -> None:
    """Raise the retryable refusal of a read this node cannot answer at ``level``."""
    if not held:
        raise NotPrimaryError(
            f"this node's primary lease is not valid: a {level} read cannot be answered here",
            level=level,
            hint="retry: once this node steps down it forwards the read to the new primary",
        )


def check_level(level: str, allowed: tuple[str, ...]) -> None:
    if level not in allowed:
        raise RequestError(f"level must be {', '.join(allowed[:-1])} or {allowed[-1]}",
                           value=level)  # fmt: skip


async def under_lease(
    node: LeaseHolder,
    level: str,
    db: str,
    read: Callable[[], Awaitable[T]],
    *,
    replicated: bool = True,
) -> T:
    """Run ``read`` of database ``db`` and return its result only if the lease held before
    and after it ran (and, for ``linearizable``, the coordinator confirmed the leadership after
    it ran) and, unless ``replicated`` is False (a ``none`` read, which never promised more
    than this node's copy), the synchronous replicas hold what it read; otherwise raise a
    retryable :class:`~litecluster.errors.UnavailableError` (nothing was answered)."""
    refuse_without_lease(node.lease_valid(), level)
    result = await read()
    if replicated and not await node.confirm_replicated(db):
        raise UnavailableError(
            f"a {level} read cannot be answered here yet: the synchronous replicas have not "
            "acknowledged every write this node's copy holds",
            level=level,
            db=db,
            hint="retry; check that enough replicas are connected (status)",
        )
    held = await node.confirm_leadership() if level == "linearizable" else node.lease_valid()
    refuse_without_lease(held, level)
    return result

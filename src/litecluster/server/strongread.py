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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from litecluster.errors import NotPrimaryError, RequestError

STRONG_LEVELS = ("strong", "linearizable")
T = TypeVar("T")


class LeaseHolder(Protocol):
    """The node as a strong read needs it (``ports.Local`` fits)."""

    def lease_valid(self) -> bool:
        """True while this node is primary and its leadership holds on its monotonic clock."""

    async def confirm_leadership(self) -> bool:
        """True when the coordinator still names this node at its epoch, lease still valid."""


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


async def under_lease(node: LeaseHolder, level: str, read: Callable[[], Awaitable[T]]) -> T:
    """Run ``read`` and return its result only if the lease held before and after it ran (and,
    for ``linearizable``, the coordinator confirmed the leadership after it ran); otherwise
    raise :class:`~litecluster.errors.NotPrimaryError` (retryable: nothing was answered)."""
    refuse_without_lease(node.lease_valid(), level)
    result = await read()
    held = await node.confirm_leadership() if level == "linearizable" else node.lease_valid()
    refuse_without_lease(held, level)
    return result

"""Who is primary, and since which epoch: a small interface with a static implementation.

Failover (a later issue) plugs an etcd implementation in behind the same four calls, in the way
LiteFS keeps its ``Leaser`` apart from the node.
"""

from __future__ import annotations

from typing import Protocol

from litecluster.replication.config import Address
from litecluster.replication.state import NodeState
from litecluster.server.config import NodeConfig


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Try to become primary; True when this node now is."""

    async def renew(self) -> bool:
        """Keep the leadership this node holds; False when it was lost."""

    def primary(self) -> Address | None:
        """The primary's replication address, or None when this node is the primary."""

    @property
    def epoch(self) -> int:
        """The epoch of the current primary."""


class StaticLeadership:
    """The configuration names the primary (or names none: then this node is it); an operator
    may change that at run time (``litecluster promote``).

    The epoch is the configured one, raised to the highest epoch this node has persisted, so a
    restart never goes back in time.
    """

    def __init__(self, config: NodeConfig, state: NodeState) -> None:
        self._primary = config.primary
        self._epoch = max(config.epoch, state.epoch)

    async def acquire(self) -> bool:
        return self._primary is None

    async def renew(self) -> bool:
        return self._primary is None

    def primary(self) -> Address | None:
        return self._primary

    @property
    def epoch(self) -> int:
        return self._epoch

    def promoted(self, epoch: int) -> None:
        """An operator made this node the primary (``litecluster promote``) at ``epoch``."""
        self._primary, self._epoch = None, epoch

    def follow(self, primary: Address) -> None:
        """An operator pointed this node at a new primary."""
        self._primary = primary

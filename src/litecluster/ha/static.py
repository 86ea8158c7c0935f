"""Leadership of a static cluster: the configuration names the primary (or names none: then
this node is it), and an operator may change that at run time (``litecluster promote``,
``litecluster follow``).

There is no shared store, so in the terms of :mod:`litecluster.ha.leadership`:

- acquire wins when the configuration names no primary for this node, and "loses the race"
  when it names another; it never waits and never raises (the store cannot be unreachable);
- a holding never expires (TTL infinite) and ends only by :meth:`StaticLeadership.release`
  (nobody else acquires then: the configuration still names this node) or by an operator
  pointing the node at another primary;
- the epoch is the configured one (for the named primary), raised to the highest epoch the
  node has persisted, so a restart never goes back in time; an operator promotion takes the
  next one;
- member records and the sync state are kept in memory, visible to this node only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from litecluster.ha.leadership import Leader, Member
from litecluster.ha.syncstate import SyncState
from litecluster.replication.config import Address


class StaticLeadership:
    """:class:`~litecluster.ha.leadership.Leadership` from the configuration.

    ``node_id`` is this node's id; ``primary`` the configured primary (None: this node);
    ``epoch`` the configured epoch,
    which counts only when this node is the one named primary; ``seen`` returns the highest
    epoch the node has persisted.
    """

    ttl = math.inf

    def __init__(
        self,
        node_id: str,
        primary: Address | None,
        *,
        epoch: int,
        seen: Callable[[], int] = lambda: 0,
    ) -> None:
        self._node_id = node_id
        self._primary = primary
        self._epoch = epoch if primary is None else 0
        self._seen = seen
        self._holding = False
        self._listen: Address | None = None
        self._http = ""
        self._revision = 0
        self._member: Member | None = None
        self._sync: SyncState | None = None

    @property
    def epoch(self) -> int:
        return max(self._epoch, self._seen())

    @property
    def leader(self) -> Leader | None:
        if self._primary is not None:
            return Leader("", self._primary, "", 0)
        if self._holding and self._listen is not None:
            return Leader(self._node_id, self._listen, self._http, self.epoch)
        return None

    def identify(self, listen: Address, http: str) -> None:
        self._listen, self._http = listen, http

    async def acquire(self) -> bool:
        if self._primary is None:
            self._holding = True
        return self._holding

    async def renew(self) -> bool:
        return self._holding

    def valid(self) -> bool:
        return self._holding

    def time_left(self) -> float:
        return math.inf if self._holding else 0.0

    def primary(self) -> Address | None:
        return self._primary

    async def observe(self) -> Leader | None:
        return self.leader

    async def release(self) -> None:
        # Nobody else learns of it: until an operator promotes a node, the cluster has none.
        self._holding = False

    async def publish_member(self, record: Mapping[str, Any]) -> int:
        self._revision += 1
        self._member = Member(dict(record), self._revision)
        return self._revision

    async def members(self) -> list[Member]:
        return [self._member] if self._member is not None else []

    async def read_sync(self) -> SyncState | None:
        return self._sync

    async def publish_sync(self, state: SyncState) -> bool:
        if not self._holding:
            return False
        self._sync = state
        return True

    async def switchover_target(self) -> str | None:
        return None

    async def hand_over(self, target: str) -> None:
        await self.release()

    async def close(self) -> None:
        await self.release()
        self._member = None

    # ---- operator actions (no store decides in a static cluster) --------------------------

    def take_over(self, epoch: int) -> None:
        """An operator made this node the primary (``litecluster promote``): it holds a new
        term at ``epoch``, which must be above every epoch it knows of (the caller persists it
        first, so a restart never goes back)."""
        if epoch <= self._epoch or epoch < self.epoch:
            raise ValueError(f"epoch {epoch} is not above the known epoch {self.epoch}")
        self._epoch = epoch
        self._primary, self._holding = None, True

    def follow(self, primary: Address) -> None:
        """An operator pointed this node at a new primary: it no longer holds."""
        self._primary, self._holding = primary, False

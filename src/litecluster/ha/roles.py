"""What the HA loop needs of the node it runs in, and of its settings: narrow protocols, so
that the loop depends on neither the server nor its configuration.

The node (``server/node.py``) implements :class:`Roles`; its primary (``Primary`` of the
replication package) fits :class:`PrimaryRole` as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from litecluster.engine.position import Position
from litecluster.replication.config import Address


@dataclass(frozen=True)
class HaSettings:
    """The HA loop's part of the node configuration."""

    lease_ttl: int = 5
    """Seconds; the primary renews every third of it."""
    sync_replicas: int = 0
    """Synchronous mode's K (0: asynchronous)."""
    priority: int = 0
    nofailover: bool = False
    maximum_lag_on_failover: int = 10_000


class AckedSession(Protocol):
    """A replica connected to the primary."""

    @property
    def acked(self) -> Mapping[str, Position]:
        """What it acknowledged, per database."""

    @property
    def promotable(self) -> bool:
        """Whether it declared itself a durable node that may be promoted (an embedded copy
        inside an application is not)."""


class HeadDb(Protocol):
    @property
    def head(self) -> int:
        """The txid of the last record of the database."""


class PrimaryRole(Protocol):
    """The node's primary role, as the loop keeps its sync set and runs a switchover."""

    sessions_changed: asyncio.Event
    """Set when a replica connects or leaves; the loop clears it before it reconciles."""
    sync_members: set[str] | None
    """The replicas whose acknowledgements count in synchronous mode (None: all)."""
    paused: bool
    """While True, new writes are refused as retryable (a switchover in progress)."""

    @property
    def sessions(self) -> Mapping[str, AckedSession]:
        """Connected replicas by node id."""

    @property
    def dbs(self) -> Mapping[str, HeadDb]: ...

    def counted_sessions(self) -> Sequence[AckedSession]:
        """The connected replicas whose acknowledgements count (see :attr:`sync_members`)."""

    async def drain_writers(self) -> None:
        """Return once no write is in flight."""


class Roles(Protocol):
    """The node as the HA loop drives it: which role it has, where its data is, and the
    transitions between roles. Transitions are made from the loop's task only."""

    @property
    def node_id(self) -> str: ...

    @property
    def listen(self) -> Address:
        """The bound replication address (known once the node listens)."""

    @property
    def http(self) -> Address:
        """The bound HTTP address."""

    @property
    def primary(self) -> PrimaryRole | None:
        """The primary role while this node is the primary, else None."""

    def upstream_heads(self) -> Mapping[str, int] | None:
        """As a replica: the heads its primary last announced per database (empty until it
        announced any); None when this node is not a replica."""

    @property
    def positions_known(self) -> bool:
        """Whether :meth:`positions` says what this node holds (see :meth:`load_resting`)."""

    def positions(self) -> dict[str, int]:
        """This node's txid per database: applied (replica), written (primary), or held by
        its files (between roles)."""

    async def load_resting(self) -> None:
        """Between roles: read the positions this node's files hold."""

    async def become_replica(self, primary: Address) -> None:
        """Follow ``primary`` (ending the current role first). Raises when the databases cannot
        be opened; the node is then between roles."""

    async def promote(self, epoch: int, sync_members: set[str] | None) -> None:
        """Serve as primary of ``epoch`` from this node's own files, continuing the cluster's
        txids from what they hold."""

    async def end_role(self) -> None:
        """Stop being primary or replica; afterwards the node is between roles."""

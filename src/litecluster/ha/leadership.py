"""Who is primary, and since which epoch: the one interface between a node and the store that
decides it.

Two implementations: :class:`~litecluster.ha.static.StaticLeadership` (the configuration, or an
operator, names the primary) and :class:`~litecluster.ha.etcd_leadership.EtcdLeadership` (a
leader key in etcd bound to a lease). The HA loop and the node speak only this interface, in
the way Patroni's ``AbstractDCS`` keeps its loop apart from etcd, Consul and ZooKeeper.

Terms used by every contract below:

- **Epoch**: the number of one primary's term. Every term has a higher epoch than every earlier
  term of the cluster; an epoch is never reused. 0 means "none known yet".
- **Holding**: this participant won :meth:`Leadership.acquire` and has not lost or released
  it since. Only a holder may act as primary, and only while :meth:`Leadership.valid`.
- **Safe deadline**: the moment, on this node's own monotonic clock, until which no other
  participant can hold leadership. A holder that cannot renew in time must stop writing at the
  deadline by itself: when cut off from the store it gets no signal that it lost.
- **Store outage**: the store cannot be reached in time. It raises
  :class:`StoreUnavailableError`, never a plain ``False``: "could not ask" must not be read as
  "lost the race" (a candidate would stand aside; a holder would step down needlessly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from litecluster.errors import LiteclusterError
from litecluster.ha.syncstate import SyncState
from litecluster.replication.config import Address


class StoreError(LiteclusterError):
    """The leadership store refused a request (the request reached it)."""


class StoreUnavailableError(StoreError):
    """The leadership store could not be reached in time: nothing is known about the outcome
    of the request."""


@dataclass(frozen=True)
class Leader:
    """The current holder as the store names it."""

    node_id: str
    """Empty when the store does not name nodes (a static configuration names an address)."""
    listen: Address
    """Its replication address: where replicas connect."""
    http: str
    """Its HTTP address (HOST:PORT), empty when unknown: where clients are sent."""
    epoch: int
    """The epoch of its term, 0 when the store does not know it (static: the primary's
    stream tells)."""


@dataclass(frozen=True)
class Member:
    """A member record as published by :meth:`Leadership.publish_member`."""

    record: Mapping[str, Any]
    revision: int
    """When it was last written, in the store's order: a higher revision was written later
    than every record or publication with a lower one."""


class Leadership(Protocol):
    """A participant's view of, and claim on, the leadership of one cluster.

    One instance per node and cluster. Calls of one instance are not made concurrently (the HA
    loop makes them one after another; an operator call runs between two of its rounds).
    """

    @property
    def epoch(self) -> int:
        """While holding: the epoch of this participant's term. Otherwise the highest epoch it
        knows of: that of the latest leader it observed, or the highest epoch the node has
        persisted (the floor it was built with), whichever is higher. Never decreases while
        not holding."""

    @property
    def leader(self) -> Leader | None:
        """The holder as last observed (by :meth:`acquire`, :meth:`observe` or a lost race);
        None when none was seen. Never performs I/O."""

    @property
    def ttl(self) -> float:
        """Seconds a holding lasts without renewal (math.inf when it never expires). The HA
        loop renews every third of it; renewing less often lets the safe deadline pass."""

    def identify(self, listen: Address, http: str) -> None:
        """The addresses to publish as this node's (known only once it listens: port 0).
        Takes effect at the next :meth:`acquire` or :meth:`publish_member`."""

    async def acquire(self) -> bool:
        """Try to become the holder.

        The claim is created atomically: when another participant holds it, return False and
        remember that holder in :attr:`leader` (a lost race is not an error). On True this
        participant holds a new term: :attr:`epoch` is higher than every earlier term's, and
        the safe deadline lies at least ``ttl`` minus a margin after the moment the request was
        sent. A store outage raises :class:`StoreUnavailableError` (nothing is held then).
        """

    async def renew(self) -> bool:
        """Keep holding: True while this participant still holds, False once it does not
        (never held, released, expired, taken by another).

        On success the safe deadline moves to the time this call started plus the TTL, minus
        a margin. A store outage does not raise: the answer is True until the safe deadline
        passes (the holding is still certain on this node's clock), False after it.
        """

    def valid(self) -> bool:
        """True while holding and before the safe deadline: the node may accept writes.
        Turns False at the deadline by itself, without any I/O."""

    def time_left(self) -> float:
        """Seconds until the safe deadline (0 when not holding; math.inf when holding never
        expires)."""

    def primary(self) -> Address | None:
        """The replication address to follow: None when this participant is the valid holder
        (or when no leader is known), else the last observed leader's."""

    async def observe(self) -> Leader | None:
        """Read the current holder from the store (a linearizable read: never an older view
        than a write the store has acknowledged) and remember it in :attr:`leader`. Raises
        :class:`StoreUnavailableError` on an outage."""

    async def release(self) -> None:
        """Stop holding at once (planned switchover, clean shutdown, a primary that cannot
        serve): the claim is removed only if it is still this participant's term, so another
        can acquire without waiting for the TTL. Afterwards :meth:`valid` is False even when
        the store could not be told (then :class:`StoreError` is raised; the claim expires on
        its own at its TTL). Releasing when not holding does nothing."""

    async def publish_member(self, record: Mapping[str, Any]) -> int:
        """Publish this node's member record (JSON-serialisable), replacing its previous one;
        returns its revision (see :class:`Member`). A record lives about one TTL unless
        published again, so a dead node's record disappears. Raises
        :class:`StoreUnavailableError` on an outage."""

    async def members(self) -> list[Member]:
        """The member records currently published (this node's included once published),
        those that are not a JSON object left out."""

    async def read_sync(self) -> SyncState | None:
        """The sync state the holder of the latest term published, None when none is."""

    async def publish_sync(self, state: SyncState) -> bool:
        """Publish the sync state, only while this participant still holds its term in the
        store (checked atomically with the write): False when it does not."""

    async def switchover_target(self) -> str | None:
        """The node id a planned switchover named (only it may acquire), None when none."""

    async def hand_over(self, target: str) -> None:
        """As holder: name ``target`` for a planned switchover (for about two TTLs), then
        :meth:`release`."""

    async def close(self) -> None:
        """Withdraw this node's member record and free the connection to the store; the
        holding (if any) is released too."""

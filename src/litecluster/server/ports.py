"""What the front doors (HTTP, RESP, key/value store, metrics) need of the node they serve.

Each door takes these small protocols instead of the node: the node (``server/node.py``, the
composition root) implements them structurally and hands each door only what it reads, so a
door can be run and tested against a fake. Protocols used by a single door live in its module
(``metrics.MetricsSource``, ``resp.info.InfoSource``, ``resp.server.Store``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from litecluster.engine.position import Position
from litecluster.replication.config import Address
from litecluster.replication.history import Reach
from litecluster.replication.primary.applied import Once
from litecluster.replication.primary.sqlexec import Statement
from litecluster.replication.primary.writer import Procedure, WriteOutcome
from litecluster.server.credentials import Identity


class Upstream(Protocol):
    """A replica's view of its primary (``replica.follower.Upstream`` fits)."""

    @property
    def address(self) -> str:
        """The primary's replication address."""

    @property
    def http(self) -> str:
        """The primary's HTTP address (empty until it introduced itself)."""

    @property
    def state(self) -> str:
        """``streaming`` while records arrive; ``connecting``, ``disconnected``... otherwise."""

    @property
    def last_message_at(self) -> float:
        """Wall-clock time of the last message from the primary (0: none yet)."""

    @property
    def heads(self) -> dict[str, int]:
        """The primary's newest durable txid per database, as of its last heartbeat."""


class WritingPrimary(Protocol):
    """The primary role as the doors write through it (``primary.Primary`` fits)."""

    async def write(
        self, name: str, statements: list[Statement], *, transaction: bool,
        once: Once | None = None,
    ) -> WriteOutcome:  # fmt: skip
        """Run SQL statements in the writer of database ``name`` (group commit); with
        ``once`` (a queued entry) only if the database holds no record of it yet."""

    async def call(self, name: str, procedure: Procedure) -> WriteOutcome:
        """Run ``procedure`` in the writer of database ``name``."""


class Local(Protocol):
    """Where writes go and what is applied here: the node's data as a door serves it."""

    @property
    def node_id(self) -> str: ...

    @property
    def epoch(self) -> int:
        """The epoch this node knows of."""

    @property
    def primary(self) -> WritingPrimary | None:
        """This node's primary role; None on a replica or between roles (writes go elsewhere)."""

    @property
    def upstream(self) -> Upstream | None:
        """The primary this replica follows; None when this node is not a replica."""

    def known_primary(self) -> str | None:
        """The primary's HTTP address as far as this node knows (None: itself, or unknown)."""

    def db_path(self, db: str) -> Path:
        """This node's file of database ``db`` (it may not exist yet)."""

    def applied_txid(self, db: str) -> int:
        """The txid visible in this node's file of ``db`` (0: none, or between roles)."""

    async def wait_applied(self, db: str, position: Position) -> Reach:
        """Once ``db`` here holds ``position`` (epoch, txid): REACHED; EXCLUDED as soon as this
        node's epoch history excludes it; NOT_YET after the node's read wait timeout."""

    def lease_valid(self) -> bool:
        """True while this node is primary and its leadership holds on its own monotonic
        clock: no other node can have been elected yet, so its copy is the newest."""

    async def confirm_leadership(self) -> bool:
        """A round to the coordinator (etcd: a linearizable read of the leader key; a static
        cluster in synchronous mode: a round its synchronous replicas answer): True when it
        still names this node as the holder of its epoch and the lease is still valid."""

    async def confirm_replicated(self, db: str) -> bool:
        """Synchronous mode: True once every commit of ``db`` on this primary is held by its
        synchronous replicas (bounded by ``sync_timeout``); True in asynchronous mode, False
        when this node is not the primary."""


class StatusSource(Protocol):
    """The node's state as ``/status``, ``/health`` and ``/nodes`` report it."""

    @property
    def ready(self) -> bool:
        """True between the end of start-up and the start of shutdown."""

    @property
    def role(self) -> str:
        """``primary``, ``replica`` or ``candidate`` (between roles)."""

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (``node``, ``stats``, ``databases``, and the role's own
        ``replicas`` or ``upstream``)."""


class ClusterOps(Protocol):
    """The operator's cluster operations on a static cluster (``litecluster promote`` and
    ``follow``); a switchover with etcd goes through :class:`Switchover`."""

    @property
    def node_id(self) -> str: ...

    @property
    def listen(self) -> Address:
        """The bound replication address."""

    def positions(self) -> dict[str, int]:
        """This node's txid per database."""

    async def manual_promote(self, *, force: bool) -> int:
        """Make this replica the primary of a new epoch and return it; refused (an error of
        the package) while the current primary streams to it, unless ``force``."""

    async def manual_follow(self, primary: Address) -> None:
        """Point this replica at ``primary``; refused on a primary."""


class Switchover(Protocol):
    """A planned hand-over of the primary role (``ha.loop.HaLoop`` fits)."""

    async def switchover(self, target: str, timeout: float = 5.0) -> None:
        """Hand the primary role to node ``target``; returns once it holds it."""


class KvExec(Protocol):
    """``POST /kv/exec`` behind the HTTP door (``kvstore.KvStore`` fits)."""

    async def serve(self, body: bytes, caller: Identity) -> bytes:
        """Answer a msgpack key/value request of ``caller`` with a msgpack reply; a malformed
        request raises ``KvRequestError``, one the caller may not run
        ``PermissionDeniedError``."""

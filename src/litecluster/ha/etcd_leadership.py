"""Leadership through etcd: a leader key bound to a lease, the epoch its create revision.

- **Acquire**: grant a lease, then a transaction "create the key if it does not exist" with the
  node's identity as value. The winner's epoch is the revision of that transaction (the key's
  create_revision), which grows with every change of primary.
- **Renew**: keepalive on the lease, then a linearizable read that the key is still ours (same
  create_revision). The safe deadline is taken from the moment the keepalive was SENT plus the
  TTL etcd answered, minus a margin: a lease may outlive its TTL but never expires early, so
  until that deadline no other node can hold the key.
- **Step down on our own clock**: :meth:`valid` turns false at the deadline whether or not etcd
  can be reached; a primary cut off from etcd gets no signal and must stop accepting writes by
  itself, before another node can be elected.
- **Cluster state** next to the leader key: member records (``members/NODE``, each under a
  lease of its own, so a dead node's record expires), the sync set (``sync``, written only
  while the writer still holds the leader key it was elected with) and a planned switchover's
  target (``switchover``, under a short lease).

This module and :mod:`litecluster.ha.etcd` are the only ones that know etcd is the store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from litecluster.errors import ConfigError
from litecluster.ha.etcd import (
    EtcdAccess,
    EtcdClient,
    EtcdError,
    EtcdUnavailableError,
    KeyValue,
)
from litecluster.ha.leadership import Leader, Member
from litecluster.ha.syncstate import SyncState
from litecluster.replication.config import Address

log = logging.getLogger("litecluster.leadership")


def leader_key(cluster: str) -> str:
    """The key naming the primary of ``cluster`` (read by embedded replicas to find it)."""
    return f"/litecluster/{cluster}/leader"


async def read_leader(client: EtcdClient, cluster: str) -> Leader | None:
    """The primary of ``cluster`` as its leader key names it (None: no leader right now)."""
    kv = await client.get(leader_key(cluster))
    return _leader(kv) if kv else None


def _leader(kv: KeyValue) -> Leader | None:
    try:
        d = json.loads(kv.value)
        return Leader(
            str(d["node_id"]), Address.parse(d["listen"]), str(d["http"]), kv.create_revision
        )
    except (ValueError, KeyError, TypeError):
        log.error("leadership.bad_leader_key value=%r", kv.value[:200])
        return None


class EtcdLeadership:
    """:class:`~litecluster.ha.leadership.Leadership` through etcd (see the module doc).

    ``seen`` returns the highest epoch the node has persisted (the floor of :attr:`epoch`).
    """

    def __init__(
        self,
        client: EtcdClient,
        cluster: str,
        node_id: str,
        listen: Address,
        http: str,
        *,
        ttl: int = 5,
        clock: Callable[[], float] = time.monotonic,
        seen: Callable[[], int] = lambda: 0,
    ) -> None:
        if ttl < 2:
            raise ConfigError("lease TTL must be at least 2 s (etcd's minimum)", field="lease_ttl")
        self.client = client
        prefix = f"/litecluster/{cluster}/"
        self.key = leader_key(cluster)
        self.members_prefix = prefix + "members/"
        self.sync_key = prefix + "sync"
        self.switchover_key = prefix + "switchover"
        self.node_id = node_id
        self.ttl = ttl
        # Patroni's rule of thumb: renew interval + 2 x request timeout <= TTL.
        self.margin = max(0.5, ttl / 4)
        self.clock = clock
        self._seen = seen
        self._leader: Leader | None = None
        self._listen, self._http = listen, http
        self._lease = 0
        self._deadline = 0.0
        self._term = 0
        """The create revision of the leader key this node holds (0: holds none)."""
        self._known = 0
        """The highest leader epoch observed."""
        self._member_lease = 0

    @classmethod
    def connect(
        cls,
        endpoints: list[str],
        cluster: str,
        node_id: str,
        listen: Address,
        http: str,
        *,
        ttl: int,
        seen: Callable[[], int],
        access: EtcdAccess | None = None,
    ) -> EtcdLeadership:
        """A participant with its own etcd client; requests time out well within a TTL."""
        client = EtcdClient(endpoints, timeout=max(0.5, ttl / 4), access=access)
        return cls(client, cluster, node_id, listen, http, ttl=ttl, seen=seen)

    @property
    def epoch(self) -> int:
        return self._term if self._lease else max(self._known, self._seen())

    @property
    def leader(self) -> Leader | None:
        return self._leader

    @property
    def holding(self) -> bool:
        return self._lease != 0

    def identify(self, listen: Address, http: str) -> None:
        self._listen, self._http = listen, http

    def _value(self) -> bytes:
        return json.dumps(
            {"node_id": self.node_id, "listen": str(self._listen), "http": self._http}
        ).encode()

    def _saw(self, leader: Leader | None) -> None:
        self._leader = leader
        if leader is not None:
            self._known = max(self._known, leader.epoch)

    def valid(self) -> bool:
        return self._lease != 0 and self.clock() < self._deadline

    def time_left(self) -> float:
        return max(0.0, self._deadline - self.clock()) if self._lease else 0.0

    def primary(self) -> Address | None:
        if self.valid():
            return None
        return self._leader.listen if self._leader else None

    async def observe(self) -> Leader | None:
        kv = await self.client.get(self.key)
        self._saw(_leader(kv) if kv else None)
        return self._leader

    async def acquire(self) -> bool:
        sent = self.clock()
        lease = await self.client.grant(self.ttl)
        result = await self.client.create(self.key, self._value(), lease=lease)
        if not result.succeeded:
            await self.client.revoke(lease)
            self._saw(_leader(result.kvs[0]) if result.kvs else None)
            return False
        self._lease, self._term = lease, result.revision
        self._deadline = sent + self.ttl - self.margin
        self._saw(Leader(self.node_id, self._listen, self._http, result.revision))
        log.info("leadership.acquired node_id=%s epoch=%d ttl=%d", self.node_id, self._term,
                 self.ttl)  # fmt: skip
        return True

    async def renew(self) -> bool:
        if not self._lease:
            return False
        sent = self.clock()
        try:
            ttl = await self.client.keepalive(self._lease)
            kv = await self.client.get(self.key) if ttl > 0 else None
        except EtcdUnavailableError as exc:
            if self.valid():
                log.warning(
                    "leadership.renew_failed error=%r left=%.2fs", exc.message, self.time_left()
                )
                return True
            return self._lost("etcd unreachable past the safe deadline")
        except EtcdError as exc:
            return self._lost(f"etcd refused the renewal: {exc.message}")
        if kv is None or kv.create_revision != self._term:
            return self._lost("the leader key expired or belongs to someone else")
        self._deadline = sent + ttl - self.margin
        return True

    def _lost(self, why: str) -> bool:
        log.warning("leadership.lost node_id=%s epoch=%d reason=%r", self.node_id, self._term, why)
        self._lease, self._term = 0, 0
        self._deadline = 0.0
        if self._leader is not None and self._leader.node_id == self.node_id:
            self._leader = None  # not the holder any more; who is, the next observe tells
        return False

    async def release(self) -> None:
        if self._lease:
            try:
                await self.client.delete_if(self.key, create_revision=self._term)
                await self.client.revoke(self._lease)
            finally:
                self._lost("resigned")

    # ---- cluster state ------------------------------------------------------------------------

    async def publish_member(self, record: Mapping[str, Any]) -> int:
        if self._member_lease == 0 or await self.client.keepalive(self._member_lease) <= 0:
            self._member_lease = await self.client.grant(self.ttl)
        return await self.client.put(
            self.members_prefix + self.node_id, json.dumps(record).encode(),
            lease=self._member_lease,
        )  # fmt: skip

    async def members(self) -> list[Member]:
        out = []
        for kv in await self.client.get_prefix(self.members_prefix):
            try:
                record = json.loads(kv.value)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(Member(record, kv.mod_revision))
        return out

    async def read_sync(self) -> SyncState | None:
        kv = await self.client.get(self.sync_key)
        return SyncState.decode(kv.value) if kv is not None else None

    async def publish_sync(self, state: SyncState) -> bool:
        if not self._lease:
            return False
        return await self.client.put_guarded(
            self.sync_key, state.encode(), guard=self.key, create_revision=self._term
        )

    async def switchover_target(self) -> str | None:
        kv = await self.client.get(self.switchover_key)
        return kv.value.decode() if kv is not None else None

    async def hand_over(self, target: str) -> None:
        # Two TTLs: long enough for the target to see it and win, short enough that a target
        # that died meanwhile does not block elections for long.
        lease = await self.client.grant(max(2, self.ttl * 2))
        await self.client.put(self.switchover_key, target.encode(), lease=lease)
        await self.release()

    async def close(self) -> None:
        try:
            await self.release()
            if self._member_lease:
                lease, self._member_lease = self._member_lease, 0
                await self.client.revoke(lease)
        finally:
            await self.client.close()

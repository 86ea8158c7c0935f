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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from litecluster.errors import ConfigError
from litecluster.ha.etcd import EtcdClient, EtcdError, EtcdUnavailableError, KeyValue
from litecluster.replication.config import Address

log = logging.getLogger("litecluster.leadership")


@dataclass(frozen=True)
class Leader:
    node_id: str
    listen: Address
    http: str
    epoch: int


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
    ) -> None:
        if ttl < 2:
            raise ConfigError("lease TTL must be at least 2 s (etcd's minimum)", field="lease_ttl")
        self.client = client
        self.key = f"/litecluster/{cluster}/leader"
        self.node_id = node_id
        self.value = json.dumps({"node_id": node_id, "listen": str(listen), "http": http}).encode()
        self.ttl = ttl
        # Patroni's rule of thumb: renew interval + 2 x request timeout <= TTL.
        self.margin = max(0.5, ttl / 4)
        self.clock = clock
        self.leader: Leader | None = None
        self._lease = 0
        self._deadline = 0.0
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def holding(self) -> bool:
        return self._lease != 0

    def valid(self) -> bool:
        """True while this node may act as primary (on its own clock)."""
        return self._lease != 0 and self.clock() < self._deadline

    def time_left(self) -> float:
        return max(0.0, self._deadline - self.clock()) if self._lease else 0.0

    def primary(self) -> Address | None:
        if self.valid():
            return None
        return self.leader.listen if self.leader else None

    async def observe(self) -> Leader | None:
        """Read the leader key (linearizable); remembers and returns the current leader."""
        kv = await self.client.get(self.key)
        self.leader = _leader(kv) if kv else None
        if self.leader is not None:
            self._epoch = max(self._epoch, self.leader.epoch)
        return self.leader

    async def acquire(self) -> bool:
        sent = self.clock()
        lease = await self.client.grant(self.ttl)
        result = await self.client.create(self.key, self.value, lease=lease)
        if not result.succeeded:
            await self.client.revoke(lease)
            self.leader = _leader(result.kvs[0]) if result.kvs else None
            if self.leader is not None:
                self._epoch = max(self._epoch, self.leader.epoch)
            return False
        self._lease, self._epoch = lease, result.revision
        self._deadline = sent + self.ttl - self.margin
        self.leader = Leader(self.node_id, Address.parse(json.loads(self.value)["listen"]),
                             json.loads(self.value)["http"], result.revision)  # fmt: skip
        log.info(
            "leadership.acquired node_id=%s epoch=%d ttl=%d", self.node_id, self._epoch, self.ttl
        )
        return True

    async def renew(self) -> bool:
        """Extend the safe deadline; False once leadership is lost (or cannot be confirmed in
        time: etcd unreachable past the deadline)."""
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
        if kv is None or kv.create_revision != self._epoch:
            return self._lost("the leader key expired or belongs to someone else")
        self._deadline = sent + ttl - self.margin
        return True

    def _lost(self, why: str) -> bool:
        log.warning("leadership.lost node_id=%s epoch=%d reason=%r", self.node_id, self._epoch, why)
        self._lease = 0
        self._deadline = 0.0
        return False

    async def resign(self) -> None:
        """Hand the key back at once (planned switchover, clean shutdown)."""
        if self._lease:
            try:
                await self.client.delete_if(self.key, create_revision=self._epoch)
                await self.client.revoke(self._lease)
            finally:
                self._lost("resigned")

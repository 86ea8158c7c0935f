"""The high-availability loop of a node whose primary is elected (``--etcd``).

The primary's rounds come every third of the lease TTL; a replica looks at the leader key
every ``POLL`` seconds (so it notices an expired key at once, not a third of a TTL later) and
publishes its member record (position, priority, nofailover, under a lease of its own) every
third of the TTL, or at each look while there is no leader. Then:
- as primary, renews the leader key; losing it (or running past the safe deadline without
  reaching the store) makes the node stop writing at once and follow whoever leads next;
- otherwise reads the leader key: with a leader, follows it (switching when it changes); with
  none, the node tries to take it only if it is the best eligible candidate: the most advanced
  position among the members, then the highest priority, then the smallest node id; a
  ``nofailover`` node or one lagging more than ``maximum_lag_on_failover`` never tries. In
  synchronous mode the N-K+1 rule of syncstate must hold as well.
A promoted replica serves from its own files and continues the cluster's txids from its
position; a deposed primary rejoins as a replica (a position the new primary does not have
gets a snapshot).

The loop sees the store only through :class:`~litecluster.ha.leadership.Leadership` and the
node only through :class:`~litecluster.ha.roles.Roles`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from litecluster.engine.position import Position
from litecluster.errors import LiteclusterError, NodeError, NotPrimaryError
from litecluster.ha.leadership import Leader, Leadership, Member, StoreError
from litecluster.ha.roles import HaSettings, Roles
from litecluster.ha.syncstate import (
    SyncState,
    droppable,
    elect,
    member_positions,
    promotion_blocked,
)

log = logging.getLogger("litecluster.ha")
_ZERO = Position()
POLL = 0.2
"""Seconds between a replica's looks at the leader key."""
SETTLE_POLLS = 2
"""Looks without a leader before a candidate runs: every member has then published the
position it reached when the old primary's stream stopped."""


class HaLoop:
    """Runs the rounds described in the module doc for the node behind ``roles``, through
    ``leadership`` (which the loop owns from then on: it closes it in :meth:`resign`)."""

    def __init__(self, leadership: Leadership, roles: Roles, settings: HaSettings) -> None:
        self.leadership = leadership
        self.roles = roles
        self.settings = settings
        self.sync: SyncState | None = None
        """The sync state this node published as primary of the current epoch."""
        self._gone_at: dict[str, dict[str, int]] = {}
        self.election_blocked = ""
        self.following: Leader | None = None
        self._leaderless_since: float | None = None
        self._leaderless_rev = 0
        """The revision of this node's first record after it saw no leader: older member
        records may be from nodes that died with the old primary (they live a lease TTL)."""
        self._published_at = 0.0
        self.disk_full = False
        self.last_error = ""

    async def run(self) -> None:
        # The bound addresses are known only once the node listens (port 0 in tests).
        self.leadership.identify(self.roles.listen, str(self.roles.http))
        interval = self.settings.lease_ttl / 3
        while True:
            started = time.monotonic()
            try:
                await self.step()
                self.last_error = ""
            except (LiteclusterError, OSError) as exc:
                # OSError: the disk is full or failing (e.g. when turning replica): the next
                # round tries again; the node must not exit over it.
                self.last_error = exc.message if isinstance(exc, LiteclusterError) else str(exc)
                log.warning("ha.round_failed error=%r", self.last_error)
                if self.roles.primary is not None and not self.leadership.valid():
                    await self._step_down(None)
            primary = self.roles.primary
            every = interval if primary is not None else min(interval, POLL)
            left = max(0.05, every - (time.monotonic() - started))
            if primary is None or not self.settings.sync_replicas:
                await asyncio.sleep(left)
                continue
            # A replica that connects starts counting only once the sync set names it: wake
            # at once rather than leave synchronous writes waiting for the next round.
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the wait completes, and this loop then never ends (a node that
            # hung on SIGTERM after pauses).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await primary.sessions_changed.wait()

    async def step(self) -> None:
        roles = self.roles
        if not roles.positions_known:
            # Before the first record: a node that published no positions could be elected
            # and restart the cluster's txids from zero.
            await roles.load_resting()
        interval = self.settings.lease_ttl / 3
        due = time.monotonic() - self._published_at >= interval
        if roles.primary is not None or due or self._leaderless_since is not None:
            await self._publish()
        if roles.primary is not None:
            if await self.leadership.renew():
                await self._reconcile_sync()
                return
            await self._step_down(await self.leadership.observe())
            return
        leader = await self.leadership.observe()
        if leader is not None:
            self._leaderless_since = None
            self._leaderless_rev = 0
            if leader.node_id == roles.node_id:
                return  # our own key from before a restart: wait for it to expire
            if self.following is None or self.following.listen != leader.listen:
                await roles.become_replica(leader.listen)
                self.following = leader  # only once following: a failure retries next look
            return
        now = time.monotonic()
        if self._leaderless_since is None:
            self._leaderless_since = now
            # The position this node reached, for the election; records older than this one
            # are not trusted to come from live nodes.
            self._leaderless_rev = await self._publish()
        # Wait a few looks before running: every member has then published the position it
        # reached when the old primary's stream stopped, so the most advanced one is known (in
        # synchronous mode that is the one holding every acknowledged write).
        # Also at start-up (nobody following yet): the first node up must not win before the
        # others, possibly more advanced, have published where they are.
        if now - self._leaderless_since < SETTLE_POLLS * POLL:
            return
        if await self._best_candidate() and await self.leadership.acquire():
            try:
                await self._promote()
            except BaseException:
                # Holding the key without serving would stall the cluster for a lease TTL.
                await self.step_down_now()
                raise

    async def _publish(self) -> int:
        """Publish this node's member record; returns its revision."""
        revision = await self.leadership.publish_member(self._member())
        self._published_at = time.monotonic()
        return revision

    def _member(self) -> dict[str, Any]:
        cfg, roles = self.settings, self.roles
        known = roles.positions_known
        positions = roles.positions()
        return {
            "node_id": roles.node_id, "txid": positions.get("main", 0),
            # None, not {}: a record without positions must not count as a live member
            # holding nothing (the N-K+1 rule) nor as a candidate at txid 0.
            "positions": positions if known else None,
            "priority": cfg.priority, "nofailover": cfg.nofailover, "disk_full": self.disk_full,
            "eligible": self._eligible(), "listen": str(roles.listen), "http": str(roles.http),
        }  # fmt: skip

    def _eligible(self) -> bool:
        roles, cfg = self.roles, self.settings
        if cfg.nofailover or self.disk_full or not roles.positions_known:
            return False
        heads = roles.upstream_heads()
        if heads is not None:
            head = heads.get("main")
            applied = roles.positions().get("main", 0)
            if head is not None and head - applied > cfg.maximum_lag_on_failover:
                return False
        return True

    async def _best_candidate(self) -> bool:
        if not self._eligible():
            return False
        handoff = await self.leadership.switchover_target()
        if handoff is not None:
            # A planned switchover names its target: only that node may take the key.
            return handoff == self.roles.node_id
        me = self._member()
        fresh: list[dict[str, Any]] = []
        records = [me]
        lost = self.following.node_id if self.following is not None else None
        for entry, m in await self._records():
            if m["node_id"] == me["node_id"]:
                continue
            if entry.revision > self._leaderless_rev:
                fresh.append(m)
                records.append(m)
            elif m["node_id"] != lost:  # the lost leader's old record is not waited for
                records.append(m)
        state = await self.leadership.read_sync()
        # Who is alive (the N-K+1 rule) counts only records written since this node saw the
        # leader key gone: a dead node's record lives on for a lease TTL. Candidates include
        # the older records too: a more advanced node that may still be alive is waited for
        # (at most until its record expires) rather than passed over.
        alive = {str(m["node_id"]): member_positions(m) for m in [me, *fresh]}
        blocked = promotion_blocked(state, alive, alive[me["node_id"]]) or ""
        if blocked != self.election_blocked:
            if blocked:
                log.warning("ha.promotion_blocked node_id=%s reason=%r", me["node_id"], blocked)
            self.election_blocked = blocked
        if blocked:
            return False
        return elect(state, records, alive) == self.roles.node_id

    async def _records(self) -> list[tuple[Member, dict[str, Any]]]:
        """The member records with known positions."""
        out = []
        for entry in await self.leadership.members():
            m = entry.record
            if isinstance(m.get("node_id"), str) and isinstance(m.get("positions"), Mapping):
                out.append((entry, dict(m)))
        return out

    async def _publish_sync(self, state: SyncState) -> None:
        if not await self.leadership.publish_sync(state):
            raise StoreError("lost the leader key before publishing the sync set")
        self.sync = state

    async def _reconcile_sync(self) -> None:
        """Keep the published sync set equal to the connected replicas plus those that left
        but may still be the only ones holding some acknowledged write."""
        primary, k = self.roles.primary, self.settings.sync_replicas
        if primary is None or self.sync is None or k <= 0:
            return
        primary.sessions_changed.clear()
        # A replica that may never be promoted (nofailover, disk full) must not hold the only
        # copy of an acknowledged write: the election could then promote nobody.
        barred = {
            str(m["node_id"]) for _, m in await self._records()
            if m.get("nofailover") or m.get("disk_full")
        }  # fmt: skip
        # An embedded replica publishes no member record and can never be promoted: in the set
        # it would count towards N and block every election under the N-K+1 rule.
        connected = {name for name, s in primary.sessions.items() if s.promotable} - barred
        heads = {name: db.head for name, db in primary.dbs.items()}
        for gone in self.sync.members - connected:
            self._gone_at.setdefault(gone, heads)
        for back in connected:
            self._gone_at.pop(back, None)
        counted = [
            {db: pos.txid for db, pos in s.acked.items()} for s in primary.counted_sessions()
        ]
        keep = {m for m, at in self._gone_at.items() if not droppable(at, counted, k)}
        members = frozenset(connected | keep)
        if members != self.sync.members:
            # Published before counting: an election must never miss a replica whose
            # acknowledgement made a write acknowledged.
            await self._publish_sync(dataclasses.replace(self.sync, members=members))
            log.info("ha.sync_set members=%s", sorted(members))
            self._gone_at = {m: at for m, at in self._gone_at.items() if m in members}
        primary.sync_members = set(members)

    async def _promote(self) -> None:
        roles = self.roles
        # Stop following first: the floor must be what this node holds once nothing more
        # can be applied, and promotion then numbers on from exactly that.
        await roles.end_role()
        if not roles.positions_known:
            await roles.load_resting()
        positions = roles.positions()
        k = self.settings.sync_replicas
        epoch = self.leadership.epoch
        # Before any write of this epoch: the floor records that, until a replica catches up,
        # only this node holds what earlier epochs acknowledged.
        await self._publish_sync(SyncState(epoch, k, floor=positions))
        self._gone_at = {}
        self.following = None
        log.info("ha.promoted node_id=%s epoch=%d positions=%s", roles.node_id, epoch,
                 positions)  # fmt: skip
        # In synchronous mode no replica counts until the published sync set names it.
        await roles.promote(epoch, set() if k else None)

    async def _step_down(self, leader: Leader | None) -> None:
        node_id = self.roles.node_id
        log.warning("ha.step_down node_id=%s leader=%s", node_id,
                    leader.node_id if leader else "unknown")  # fmt: skip
        if leader is not None and leader.node_id != node_id:
            self.following = leader
            await self.roles.become_replica(leader.listen)
        else:
            self.following = None
            await self.roles.end_role()

    async def switchover(self, target: str, timeout: float = 5.0) -> None:
        """Planned handoff from this primary to ``target``: writes pause, the target catches
        up, the leader key is handed over by name; nothing acknowledged is lost."""
        primary = self.roles.primary
        if primary is None or not self.leadership.valid():
            raise NotPrimaryError("switchover must be asked of the primary")
        session = primary.sessions.get(target)
        if session is None:
            raise NodeError("the target is not a connected replica", target=target)
        primary.paused = True  # new writes get a retryable "not primary" from now on
        try:
            await primary.drain_writers()
            heads = {name: db.head for name, db in primary.dbs.items()}
            deadline = time.monotonic() + timeout
            while any(session.acked.get(n, _ZERO).txid < t for n, t in heads.items()):
                if time.monotonic() > deadline:
                    raise NodeError("the target did not catch up in time; switchover aborted",
                                    target=target)  # fmt: skip
                await asyncio.sleep(0.01)  # acks arrive within a heartbeat; bounded above
            log.info("ha.switchover to=%s heads=%s", target, heads)
            await self.leadership.hand_over(target)
            await self.roles.end_role()
        except BaseException:
            primary.paused = False
            raise

    async def step_down_now(self) -> None:
        """Give up the leadership at once (the node cannot serve as primary)."""
        try:
            await self.leadership.release()
        except StoreError as exc:
            log.warning("ha.resign_failed error=%r", exc.message)
        self.following = None
        await self.roles.end_role()

    async def resign(self) -> None:
        """Release the leadership and withdraw this node's member record (clean shutdown)."""
        try:
            await self.leadership.close()
        except StoreError as exc:
            log.warning("ha.resign_failed error=%r", exc.message)

    def status(self) -> dict[str, Any]:
        leader = self.leadership.leader
        return {
            "leader_id": leader.node_id if leader else None,
            "leader_http": leader.http if leader else None,
            "epoch": self.leadership.epoch,
            "lease_left": round(self.leadership.time_left(), 3),
            "sync_replicas": self.settings.sync_replicas,
            "sync_set": sorted(self.sync.members) if self.sync and self.roles.primary else None,
            "election_blocked": self.election_blocked or None,
            "last_error": self.last_error or None,
        }

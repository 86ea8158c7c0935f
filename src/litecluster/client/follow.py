"""Keeping an embedded replica's follower on the cluster's current primary.

The follower (the same one replica nodes run) streams from one address and retries it; this
task, on the same event loop, decides which address. While the stream is healthy it looks
rarely; once it is not (the connection broke, the primary went silent past ``stale_after``,
or the port refused it) it asks the sources of :mod:`litecluster.client.locate` every
``interval`` and, when they name another primary, cancels the follower's session and points
it there. A failover is then followed within one round after the new primary is elected,
rather than after the follower's own backoff on a dead address.

Epoch fencing is the follower's: it persists each epoch it sees and refuses a primary of an
older one (:meth:`~litecluster.replication.state.NodeState.see_epoch`); this task never picks
an answer below that floor either.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from litecluster.client.locate import Found, Locator, best, from_refusal
from litecluster.replication.config import Address
from litecluster.replication.replica.follower import Follower, Upstream

log = logging.getLogger("litecluster.embedded")

OUTAGE_ROUNDS = 40
"""Searches in a row (10 s at the usual interval) after which the interval grows."""
OUTAGE_INTERVAL = 0.5

NO_PRIMARY = "no primary"
"""The upstream state while no primary is known at all."""


class Tracker:
    """Runs ``follower`` (see the module docstring) until cancelled.

    ``hint``: a replication address to try first (``connect(primary=...)``); ``locator``
    None: only that address, and those its refusals name.
    """

    def __init__(
        self,
        follower: Follower,
        locator: Locator | None,
        hint: Address | None,
        *,
        interval: float = 0.25,
        healthy_check: float = 10.0,
        stale_after: float = 3.0,
    ) -> None:
        self.follower = follower
        self.locator = locator
        self.hint = hint
        self.interval = interval
        self.healthy_check = healthy_check
        self.stale_after = stale_after
        self.found: Found | None = None
        """The primary followed now (None: none known yet)."""
        self.rounds = 0
        """Search rounds completed (the client's connect waits for the first)."""
        self.last_error = ""
        self._run: asyncio.Task[None] | None = None
        self.retargets = 0

    @property
    def primary_http(self) -> str:
        """Where writes go: the HTTP address of the primary followed ('' while unknown)."""
        up = self.follower.upstream
        if self._run is not None and up.state == "streaming" and up.http:
            return up.http
        return self.found.http if self.found is not None else ""

    def healthy(self) -> bool:
        up = self.follower.upstream
        return (
            self._run is not None
            and up.state == "streaming"
            and time.time() - up.last_message_at < self.stale_after
        )

    async def run(self) -> None:
        if self.hint is not None:
            self._follow(Found(self.hint, "", 0, "primary="))
        else:
            self.follower.upstream = Upstream("", state=NO_PRIMARY)
        try:
            next_check = 0.0
            unhealthy = 0
            while True:
                now = time.monotonic()
                unhealthy = 0 if self.healthy() else unhealthy + 1
                if unhealthy or now >= next_check:
                    await self._search()
                    next_check = now + self.healthy_check
                # A long outage is asked about less often (every node of a fleet polls the
                # seeds), still well within the second a failover may take to be followed.
                await asyncio.sleep(self.interval if unhealthy < OUTAGE_ROUNDS else OUTAGE_INTERVAL)
        finally:
            await self._stop()
            if self.locator is not None:
                with contextlib.suppress(Exception):
                    await self.locator.close()

    async def _search(self) -> None:
        answers: list[Found] = []
        if self.locator is not None:
            try:
                answers = await self.locator.find()
            except Exception as exc:  # a source's bug costs one round, never the replica
                log.exception("embedded.search_failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            else:
                self.last_error = self.locator.last_error
        refused = from_refusal(self.follower.upstream.last_error)
        if refused is not None:
            answers.append(refused)
        self.rounds += 1
        # Never back to an older term than the one followed (a lagging seed may still name
        # the previous primary while the new one is being connected to).
        floor = max(self.follower.state.epoch, self.found.epoch if self.found else 0)
        chosen = best(answers, floor)
        if chosen is None:
            return
        target = self.follower.config.primary if self._run is not None else None
        if chosen.listen == target:
            if chosen.http or self.found is None:
                self.found = chosen
            return
        if target is not None and self.healthy() and chosen.epoch <= self.follower.upstream.epoch:
            return  # streaming from a primary at least as new: a lagging source's answer
        log.info("embedded.following primary=%s epoch=%d source=%s previous=%s",
                 chosen.listen, chosen.epoch, chosen.source, target)  # fmt: skip
        await self._stop()
        self._follow(chosen)
        self.retargets += 1

    def _follow(self, found: Found) -> None:
        f = self.follower
        f.config = dataclasses.replace(f.config, primary=found.listen)
        f.upstream = Upstream(str(found.listen))
        self.found = found
        self._run = asyncio.create_task(f.run(), name="embedded-follower")

    async def _stop(self) -> None:
        if self._run is not None:
            task, self._run = self._run, None
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

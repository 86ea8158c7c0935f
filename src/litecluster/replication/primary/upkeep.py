"""The primary's periodic upkeep: find databases created by other processes, check the
capture threads, and remove txlog segments past retention. A failed round is counted and
logged, and the next round tries again (the loop never ends on an error of the package)."""

from __future__ import annotations

import asyncio
import logging
import time

from litecluster.errors import LiteclusterError
from litecluster.replication.primary.primary import Primary
from litecluster.replication.stats import Stats

log = logging.getLogger("litecluster.node")


async def upkeep(primary: Primary, scan_interval: float, stats: Stats) -> None:
    """Every ``scan_interval`` seconds until cancelled (retention every
    ``retention_interval`` of the primary's config)."""
    next_retention = time.monotonic() + primary.config.retention_interval
    while True:
        await asyncio.sleep(scan_interval)
        try:
            primary.discover()
            primary.check_captures()
            primary.departed.current()  # drops (and counts) replicas past their retention
            if time.monotonic() >= next_retention:
                primary.enforce_retention()
                next_retention = time.monotonic() + primary.config.retention_interval
        except LiteclusterError as exc:
            stats.error(exc)
            log.error("node.upkeep_failed error=%r", str(exc))

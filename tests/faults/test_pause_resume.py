"""Primaries paused and resumed again and again (SIGSTOP/SIGCONT) under load: 20 pauses shorter
than the lease (no failover), then pauses past the lease (each a failover, the woken primary
rejoining as a replica). Afterwards every node logs no unhandled task error and stops on
SIGTERM within 5 s with exit code 0.

Both failures this guards against were seen after pauses: a replica's socket reset while the
primary was stopped ended as "Task exception was never retrieved" (Primary._read_acks), and
Python 3.11's asyncio.wait_for swallowed the HA loop's cancellation, so a node hung on
SIGTERM until it was killed."""

from __future__ import annotations

import signal
import time

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.ha_cluster import TTL, first_primary, roles
from support.history import Load

SHORT_PAUSES, SHORT = 20, TTL / 8
LONG_PAUSES, LONG = 4, 1.6 * TTL


def _pause(node: LocalNode, seconds: float) -> None:
    node.signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        wait_for(lambda: time.monotonic() > paused + seconds, 2 * seconds + 1, "the pause")
    finally:
        node.signal(signal.SIGCONT)


def test_paused_primaries_keep_serving_and_every_node_stops_on_sigterm_in_5_s(
    sync_ha: list[LocalNode],
) -> None:
    members = sync_ha
    primary = first_primary(members)
    with Load(members) as load:
        load.wait_acks(20)
        for _ in range(SHORT_PAUSES):
            _pause(primary, SHORT)
            load.wait_acks(2)
        assert roles([primary])[primary.node_id] == "primary", "short pauses cost no failover"
        for _ in range(LONG_PAUSES):
            old = first_primary(members)
            _pause(old, LONG)
            wait_for(lambda old=old: roles([old])[old.node_id] == "replica", 30, "the rejoin")
            load.wait_acks(5)
    for node in members:
        started = time.monotonic()
        code = node.stop(timeout=5)
        took = time.monotonic() - started
        assert (node.node_id, code, took < 5) == (node.node_id, 0, True), f"{took:.1f} s"
        assert "never retrieved" not in node.log_text
        assert "Traceback" not in node.log_text

"""kill -9 of the primary, again and again, under a write load in synchronous mode."""

from __future__ import annotations

import time

import httpx
from ha_cluster import TTL, LoadWriter, first_primary, keys, roles, wait_for_writable_primary

from litecluster.localcluster import LocalNode
from nodes import wait_converged
from support import wait_for

KILLS = 10


def test_ten_kills_of_the_primary_lose_no_acknowledged_write(sync_ha: list[LocalNode]) -> None:
    members = sync_ha
    first_primary(members, with_replicas=False)
    load = LoadWriter(members)
    acked = load.acked
    load.start()
    recoveries = []
    try:
        for n in range(KILLS):
            primary = wait_for_writable_primary(members, f"probe{n}")
            acked.append(f"probe{n}")
            before = len(acked)
            wait_for(lambda b=before: len(acked) > b + 20, 60, "writes before the kill")
            primary.kill()
            killed = time.monotonic()
            at_kill = len(acked)
            wait_for(lambda b=at_kill: len(acked) > b, 60, "a write acknowledged after the kill")
            recoveries.append(time.monotonic() - killed)
            primary.start()
    finally:
        load.finish()
    final = wait_for_writable_primary(members, "final")
    acked.append("final")
    for m in members:
        wait_for(lambda m=m: m is final or roles([m])[m.node_id] == "replica", 60, "followers")
    wait_converged(final, [m for m in members if m is not final])
    present = keys(final)
    lost = [k for k in acked if k not in present]
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    ok = httpx.get(f"http://{final.http}/db/query", params={"q": "PRAGMA integrity_check"}).json()
    assert ok["results"][0]["values"] == [["ok"]]
    assert max(recoveries) < 2 * TTL + 2, recoveries

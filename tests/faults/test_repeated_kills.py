"""kill -9 of the primary, again and again, under a write load in synchronous mode."""

from __future__ import annotations

import threading
import time

import httpx
from test_failover import TTL, roles, the_primary, wait_for_writable_primary
from test_sync_failover import sync_ha  # noqa: F401 (the fixture)

from litecluster.localcluster import LocalNode
from nodes import wait_converged
from support import wait_for

KILLS = 10


def test_ten_kills_of_the_primary_lose_no_acknowledged_write(sync_ha: list[LocalNode]) -> None:  # noqa: F811
    members = sync_ha
    first = wait_for_writable_primary_after_schema(members)
    assert first is not None
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            target = the_primary([m for m in members if m.running])
            if target is None:
                time.sleep(0.02)
                continue
            key = f"k{i}"
            i += 1
            try:
                r = httpx.post(f"http://{target.http}/db/execute",
                               json=[["INSERT INTO t(k) VALUES(?)", key]], timeout=5)  # fmt: skip
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and "error" not in r.json()["results"][0]:
                acked.append(key)

    t = threading.Thread(target=writer)
    t.start()
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
        stop.set()
        t.join(30)
    final = wait_for_writable_primary(members, "final")
    acked.append("final")
    for m in members:
        wait_for(lambda m=m: m is final or roles([m])[m.node_id] == "replica", 60, "followers")
    wait_converged(final, [m for m in members if m is not final])
    got = httpx.get(f"http://{final.http}/db/query", params={"q": "SELECT k FROM t"}).json()
    keys = {row[0] for row in got["results"][0]["values"]}
    lost = [k for k in acked if k not in keys]
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    ok = httpx.get(f"http://{final.http}/db/query", params={"q": "PRAGMA integrity_check"}).json()
    assert ok["results"][0]["values"] == [["ok"]]
    assert max(recoveries) < 2 * TTL + 2, recoveries


def wait_for_writable_primary_after_schema(members: list[LocalNode]) -> LocalNode | None:
    wait_for(lambda: the_primary(members) is not None, 30, "a first primary")
    p = the_primary(members)
    assert p is not None
    wait_for(lambda: httpx.post(f"http://{p.http}/db/execute",
                                json=["CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY)"],
                                timeout=5).status_code == 200, 30, "a replica to ack")  # fmt: skip
    return p

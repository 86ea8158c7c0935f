"""A deposed primary whose last writes reached no replica: on rejoin it sets that divergent
tail aside (a SQLite file in its data directory, named in its log) and follows the new
primary's history."""

from __future__ import annotations

import sqlite3  # the test process opens only the set-aside copy, never a node's live file

from ha_cluster import first_primary, keys, roles, wait_for_writable_primary, write

from litecluster.localcluster import LocalNode
from nodes import Nodes, wait_converged
from support import wait_for


def test_a_deposed_primary_sets_its_divergent_tail_aside_and_resyncs(
    ha: tuple[Nodes, list[LocalNode]],
) -> None:
    _, members = ha
    old = first_primary(members)
    replicas = [m for m in members if m is not old]
    assert write(old, "shared")
    wait_converged(old, replicas)
    # Asynchronous mode: with the replicas down (killed, so that no record waits in a socket
    # buffer of theirs), the primary still acknowledges writes no other node receives.
    for r in replicas:
        r.kill()
    tail = [f"tail{i}" for i in range(5) if write(old, f"tail{i}")]
    assert len(tail) == 5
    old.kill()
    for r in replicas:
        r.start(wait=False)
    new = wait_for_writable_primary(replicas, "after")
    assert write(new, "after2")
    old.start(wait=False)
    wait_for(lambda: roles([old]).get(old.node_id) == "replica", 60, "the old primary to follow")
    wait_converged(new, members)
    present = keys(old)
    assert {"shared", "after", "after2"} <= present
    assert not set(tail) & present, "the divergent tail is not part of the new history"

    kept = sorted((old.data_dir / "diverged").glob("main.*.db"))
    assert len(kept) == 1, kept
    assert "replica.diverged db=main" in old.log_text
    assert kept[0].name in old.log_text
    with sqlite3.connect(f"file:{kept[0]}?mode=ro", uri=True) as conn:
        held = {row[0] for row in conn.execute("SELECT k FROM t")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert set(tail) | {"shared"} <= held
    assert "after" not in held

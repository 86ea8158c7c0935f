"""Disk full on the primary (a small tmpfs): the failing write is not acknowledged, the primary
steps down, another node takes over, and nothing is corrupted."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ha_cluster import TTL, roles, the_primary, wait_for_writable_primary

from etcd_server import EtcdServer
from litecluster.localcluster import LocalNode
from nodes import Nodes, wait_converged
from support import wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="mounting a small tmpfs needs root",
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_on_the_primary_fails_the_write_and_hands_over(
    tmp_path: Path, small_disk: Path
) -> None:
    etcd = EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    args = ["--etcd", etcd.url, "--lease-ttl", str(TTL)]
    try:
        full = LocalNode(small_disk / "n1", "n1", n.token_file, extra_args=args,
                         log_path=tmp_path / "n1.log", env={"LITECLUSTER_HEARTBEAT_INTERVAL": "0.2",
                                                             "LITECLUSTER_PEER_TIMEOUT": "2"})  # fmt: skip
        n.all.append(full)
        full.start()
        wait_for(lambda: roles([full])[full.node_id] == "primary", 30, "n1 to lead")
        others = [n.node(f"n{i}", args=args) for i in range(2, 4)]
        wait_for(lambda: all(roles([o])[o.node_id] == "replica" for o in others), 30, "replicas")
        base = f"http://{full.http}/db/execute"
        httpx.post(base, json=["CREATE TABLE t(k TEXT PRIMARY KEY, pad BLOB)"]).raise_for_status()
        # Leave a few MiB, then write 256 KiB rows until the disk refuses one.
        balloon = small_disk / "balloon"
        free = shutil.disk_usage(small_disk).free
        with open(balloon, "wb") as f:
            f.write(b"\0" * max(0, free - 3 * 1024 * 1024))
        acked, refused = [], []
        for i in range(200):
            key = f"k{i}"
            r = httpx.post(
                base, json=[["INSERT INTO t VALUES (?, zeroblob(262144))", key]], timeout=10
            )
            if r.status_code == 200 and "error" not in r.json()["results"][0]:
                acked.append(key)
            else:
                refused.append((key, r.status_code, r.text[:200]))
                break
        assert refused, "the disk never filled"
        key, status, text = refused[0]
        assert status == 503, text
        assert "disk" in text or "space" in text, text
        # The primary steps down; a node with space takes over and acknowledges writes.
        new = wait_for_writable_primary(others, "after-disk-full")
        assert new is not full
        got = httpx.get(f"http://{new.http}/db/query", params={"q": "SELECT k FROM t"}).json()
        keys = {row[0] for row in got["results"][0]["values"]}
        assert key not in keys, "the refused write was not applied"
        # Space comes back: the old primary follows the new one and ends identical.
        balloon.unlink()
        wait_for(lambda: roles([full])[full.node_id] == "replica", 60, "n1 to follow")
        wait_converged(new, [full, *[o for o in others if o is not new]])
        ok = httpx.get(f"http://{full.http}/db/query",
                       params={"q": "PRAGMA integrity_check", "level": "none"}).json()  # fmt: skip
        assert ok["results"][0]["values"] == [["ok"]]
        assert the_primary([full, *others]) is new
    finally:
        n.close()
        etcd.stop()

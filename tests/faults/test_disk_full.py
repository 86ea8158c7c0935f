"""Disk full on the primary (a small tmpfs) under the recorded workloads: the failing write is
not acknowledged, nothing refused is applied, the primary steps down, another node takes over,
and nothing is corrupted."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import check, healed, query
from support.etcd_server import EtcdServer
from support.ha_cluster import TTL, first_primary, roles, the_primary, wait_for_writable_primary
from support.history import FAILED, OK, Load
from support.nodes import FAST, Nodes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="mounting a small tmpfs needs root",
)

Refusal = tuple[float, str, int, str]
"""When (monotonic), the key, the HTTP status and the body of the write the disk refused."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def cluster(tmp_path: Path, small_disk: Path) -> Iterator[list[LocalNode]]:
    """n1, the primary, on the small disk; n2 and n3 on the big one; a table of big rows."""
    etcd = EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    args = ["--etcd", etcd.url, "--lease-ttl", str(TTL)]
    try:
        full = LocalNode(small_disk / "n1", "n1", n.token_file, extra_args=args,
                         log_path=tmp_path / "n1.log", env=FAST)  # fmt: skip
        n.all.append(full)
        full.start()
        wait_for(lambda: roles([full])[full.node_id] == "primary", 30, "n1 to lead")
        members = [full, *(n.node(f"n{i}", args=args) for i in range(2, 4))]
        assert first_primary(members) is full
        r = httpx.post(f"http://{full.http}/db/execute",
                       json=["CREATE TABLE pad(k TEXT PRIMARY KEY, pad BLOB)"])  # fmt: skip
        r.raise_for_status()
        yield members
    finally:
        n.close()
        etcd.stop()


def fill(node: LocalNode, disk: Path) -> Refusal:
    """Leave a few MiB, then write 256 KiB rows to ``node`` until one is refused."""
    free = shutil.disk_usage(disk).free
    with open(disk / "balloon", "wb") as f:
        f.write(b"\0" * max(0, free - 3 * 1024 * 1024))
    for i in range(200):
        row = [["INSERT INTO pad VALUES (?, zeroblob(262144))", f"k{i}"]]
        r = httpx.post(f"http://{node.http}/db/execute", json=row, timeout=10)
        if r.status_code != 200 or "error" in r.json()["results"][0]:
            return time.monotonic(), f"k{i}", r.status_code, r.text[:300]
    raise AssertionError("the disk never filled")


def test_disk_full_on_the_primary_fails_the_write_and_hands_over(
    cluster: list[LocalNode], small_disk: Path, fault_report: Callable[[str, object], None]
) -> None:
    members = cluster
    full, others = members[0], members[1:]
    with Load(members, set_threads=1, bank_threads=1) as load:
        load.wait_acks(20)
        refused = fill(full, small_disk)
        # Space comes back at once (the next test keeps the disk full).
        (small_disk / "balloon").unlink()
        assert refused[2] == 503, refused
        # The first refusal names the disk: the filler's, or a workload write that failed
        # first (later writes reach a node that stepped down, and are refused as such).
        first = min([refused[0], *(o.complete for o in load.history.ops if o.outcome != OK)])
        if first == refused[0]:
            assert "disk" in refused[3] or "space" in refused[3], refused
        else:
            op = next(o for o in load.history.ops if o.complete == first)
            assert op.outcome == FAILED, op
            assert "HTTP 503" in op.detail, op
            assert "disk" in op.detail or "space" in op.detail, op
        # The primary steps down; a node with space takes over and acknowledges writes.
        new = wait_for_writable_primary(others, "after-disk-full")
        load.wait_acks(20)
    assert new is not full
    assert query(new, f"SELECT count(*) FROM pad WHERE k = '{refused[1]}'") == [[0]]
    # The old primary follows the new one and ends identical.
    wait_for(lambda: roles([full]).get(full.node_id) == "replica", 60, "n1 to follow")
    assert healed(members) is new
    lost = check(load.history, new, sync=False)
    fault_report("async: acknowledged writes lost when the disk filled", len(lost))


def test_a_primary_whose_disk_stays_full_keeps_running_and_follows_once_space_returns(
    cluster: list[LocalNode], small_disk: Path
) -> None:
    full = cluster[0]
    fill(full, small_disk)
    # Not a byte left: whatever the deposed primary writes to become a replica fails.
    with open(small_disk / "rest", "wb", buffering=0) as f:
        for _ in range(10_000):
            try:
                f.write(b"\0" * 4096)
            except OSError:
                break
    new = wait_for_writable_primary(cluster[1:], "after-disk-full")
    # A few rounds of the deposed primary's loop: it sees the new leader and tries to follow
    # (it cannot while the disk is full: it must stay up, and retry, rather than exit).
    deadline = time.monotonic() + 4 * TTL
    wait_for(lambda: not full.running or time.monotonic() > deadline, 6 * TTL, "n1's rounds")
    assert full.running, f"n1 exited: {full.log_text[-600:]}"
    (small_disk / "balloon").unlink()
    (small_disk / "rest").unlink()
    wait_for(lambda: not full.running or roles([full]).get(full.node_id) == "replica", 60,
             "n1 to follow")  # fmt: skip
    assert full.running, f"n1 exited: {full.log_text[-600:]}"
    assert the_primary(cluster) is new

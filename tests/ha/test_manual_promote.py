"""``litecluster promote`` on a static cluster (no etcd): an operator replaces a dead primary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import Nodes, wait_converged


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litecluster", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _execute(node: LocalNode, sql: list[object]) -> httpx.Response:
    return httpx.post(f"http://{node.http}/db/execute", json=sql, timeout=10)


def _keys(node: LocalNode) -> set[str]:
    got = httpx.get(f"http://{node.http}/db/query", params={"q": "SELECT k FROM t"}).json()
    return {row[0] for row in got["results"][0].get("values", [])}


def test_promote_replaces_a_dead_primary_and_points_the_other_replica_at_it(
    tmp_path: Path,
) -> None:
    n = Nodes(tmp_path)
    try:
        old = n.node("p1")
        r1, r2 = n.node("r1", old), n.node("r2", old)
        assert _execute(old, ["CREATE TABLE t(k TEXT PRIMARY KEY)"]).status_code == 200
        for i in range(20):
            assert _execute(old, [["INSERT INTO t VALUES(?)", f"k{i}"]]).status_code == 200
        wait_converged(old, [r1, r2])

        # While the primary streams to it, a promotion would make two primaries: refused.
        refused = _cli("promote", "--http", r1.http)
        assert refused.returncode != 0
        assert "primary is alive" in refused.stderr
        assert "Traceback" not in refused.stderr

        epoch = old.status()["node"]["epoch"]
        old.kill()
        wait_for(lambda: r1.status()["upstream"]["state"] != "streaming", 30, "r1 to notice")
        out = _cli("promote", "--http", r1.http, "--follow", r2.http)
        assert out.returncode == 0, out.stderr
        assert f"r1 is the primary at epoch {epoch + 1} (main=" in out.stdout
        assert "r2 follows r1" in out.stdout
        assert r1.status()["node"]["role"] == "primary"

        # The new primary continues the history; the other replica follows without loss.
        assert _execute(r1, [["INSERT INTO t VALUES(?)", "after"]]).status_code == 200
        wait_converged(r1, [r2])
        assert _keys(r2) == {f"k{i}" for i in range(20)} | {"after"}
        assert r2.status()["node"]["epoch"] == epoch + 1

        # Asking again is refused with a clear message: it is already the primary.
        again = _cli("promote", "--http", r1.http)
        assert again.returncode != 0
        assert "already the primary" in again.stderr
    finally:
        n.close()

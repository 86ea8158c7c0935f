"""Helpers for tests that run real ``litecluster serve`` processes on 127.0.0.1."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import httpx

from litecluster.cli.localcluster import LocalNode
from litecluster.engine.sqlite import connect
from support import checksum, wait_for

# Short timers so tests notice lost peers quickly (still well above loopback latencies).
# HTTP authentication (on by default) is off for the tests written before it, which send
# their requests bare; the tests of authentication (tests/server/test_http_auth.py, the
# clients' and the CLI's) turn it on with AUTH_ON.
FAST = {
    "LITECLUSTER_HEARTBEAT_INTERVAL": "0.2",
    "LITECLUSTER_PEER_TIMEOUT": "2",
    "LITECLUSTER_RECONNECT_MAX": "0.5",
    "LITECLUSTER_HTTP_AUTH": "false",
}
AUTH_ON = {"LITECLUSTER_HTTP_AUTH": "true"}


class Nodes:
    """Starts nodes in a test's directory; kills whatever is left at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token_file = root / "token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.all: list[LocalNode] = []

    def node(
        self,
        node_id: str,
        primary: LocalNode | None = None,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        token_file: Path | None = None,
        start: bool = True,
    ) -> LocalNode:
        n = LocalNode(
            self.root / node_id,
            node_id,
            token_file or self.token_file,
            primary=primary.listen if primary else None,
            extra_args=args or [],
            env={**FAST, **(env or {})},
        )
        self.all.append(n)
        if start:
            n.start()
        return n

    def close(self) -> None:
        for n in self.all:
            n.kill()


def wait_streaming(replica: LocalNode, timeout: float = 30.0) -> None:
    """Until ``replica`` serves: ``/readyz`` answers 200 once it streams from its primary (a
    write forwarded before that gets a retryable 503)."""
    wait_for(lambda: httpx.get(f"{replica.url}/readyz", timeout=5).status_code == 200, timeout,
             f"{replica.node_id} to stream from its primary")  # fmt: skip


def db_file(node: LocalNode, db: str = "main") -> Path:
    return node.data_dir / "db" / f"{db}.db"


def position(node: LocalNode, db: str = "main", **kwargs: Any) -> tuple[int, str] | None:
    d = node.status(**kwargs)["databases"].get(db)
    return None if d is None else (d["txid"], d["checksum"])


def converged(primary: LocalNode, replicas: list[LocalNode], db: str = "main") -> bool:
    """The primary has captured everything in its file, and every replica has applied it."""
    want = position(primary, db)
    if want is None or want[1] != f"{checksum(db_file(primary, db)):016x}":
        return False
    return all(position(r, db) == want for r in replicas)


def wait_converged(
    primary: LocalNode, replicas: list[LocalNode], db: str = "main", timeout: float = 60.0
) -> None:
    wait_for(lambda: converged(primary, replicas, db), timeout, f"replicas to converge on {db}")
    # The files themselves, read by SQLite, hold exactly the primary's pages.
    expect = checksum(db_file(primary, db))
    for r in replicas:
        assert checksum(db_file(r, db)) == expect, r.node_id


def stats(node: LocalNode) -> dict[str, Any]:
    s: dict[str, Any] = node.status()["stats"]
    return s


class Writer(threading.Thread):
    """An application writing the primary's database file directly, one changed row per
    transaction (inserts, updates, deletes), until stopped or ``rows`` transactions."""

    def __init__(self, path: Path, *, rows: int | None = None) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.rows = rows
        self.stop_event = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = connect(self.path)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)"
            )
            i = 0
            while not self.stop_event.is_set() and (self.rows is None or i < self.rows):
                i += 1
                # Every statement changes a row, so each is one transaction (one txlog record).
                if i % 10 == 0:
                    conn.execute(
                        "UPDATE items SET n = n + 1 WHERE id = (SELECT max(id) FROM items)"
                    )
                elif i % 25 == 1 and i > 1:
                    conn.execute("DELETE FROM items WHERE id = (SELECT min(id) FROM items)")
                else:
                    conn.execute("INSERT INTO items(v, n) VALUES (?, 0)", (f"row {i} " * 4,))
                self.committed = i
            conn.close()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> int:
        self.stop_event.set()
        self.join(60)
        assert self.error is None, self.error
        return self.committed


def write(path: Path, rows: int) -> int:
    """Write ``rows`` transactions and wait for them."""
    w = Writer(path, rows=rows)
    w.start()
    w.join(300)
    return w.finish()

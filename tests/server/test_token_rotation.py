"""Rotating the cluster token and the users without downtime (docs/security.md): writers
through the primary and through a replica (forwarded) keep succeeding through every step of
the documented procedure, the old token is refused at its end, and the replica reconnects with
the new one; a users file change takes effect on SIGHUP, a broken one changes nothing."""

from __future__ import annotations

import json
import secrets
import signal
import threading
from pathlib import Path

import bcrypt
import httpx
import pytest

import litecluster
from litecluster.cli.localcluster import LocalNode
from litecluster.client.sync import ClientError
from litecluster.server.credentials import basic_header
from support import wait_for
from support.nodes import AUTH_ON, Nodes, wait_converged


class Writers:
    """One thread per node, each writing rows through the client library with the token the
    applications hold now (``token``, changed by the test mid-procedure)."""

    def __init__(self, nodes: list[LocalNode], token: str) -> None:
        self.token = token
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def _run(self, node: LocalNode) -> None:
        i = 0
        while not self.stop.is_set():
            token = self.token
            with litecluster.connect(node.url, token=token, timeout=30) as client:
                while not self.stop.is_set() and token == self.token:
                    i += 1
                    try:
                        client.execute("INSERT INTO t(v) VALUES (?)", (f"{node.node_id}-{i}",))
                        self.ok += 1
                    except ClientError as exc:
                        self.failures.append(f"{node.node_id}: {exc}")

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def wait_more(self, n: int = 20) -> None:
        """Some writes succeeded since now (the writers are live at this step)."""
        start = self.ok
        wait_for(lambda: self.ok >= start + n, 60, f"{n} more writes")


def _accepts(node: LocalNode, token: str) -> bool:
    got = httpx.get(f"{node.url}/status", headers={"Authorization": f"Bearer {token}"})
    return got.status_code == 200


def _step(nodes: list[LocalNode], files: dict[str, Path], lines: list[str], k: int) -> None:
    """Write ``lines`` to every node's token file and SIGHUP it; wait until each has
    reloaded its tokens for the ``k``-th time."""
    for n in nodes:
        files[n.node_id].write_text("\n".join(lines) + "\n")
        n.signal(signal.SIGHUP)
    for n in nodes:
        wait_for(lambda n=n: n.log_text.count("tokens.reloaded") >= k, 30, f"reload {k}")


def test_rotating_the_token_refuses_no_write(tmp_path: Path) -> None:
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    n = Nodes(tmp_path)
    files = {name: tmp_path / f"token-{name}" for name in ("p", "r")}
    for f in files.values():
        f.write_text(old + "\n")
        f.chmod(0o600)
    try:
        primary = n.node("p", env=AUTH_ON, token_file=files["p"])
        replica = n.node("r", primary, env=AUTH_ON, token_file=files["r"])
        nodes = [primary, replica]
        with litecluster.connect(primary.url, token=old) as c:
            c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        wait_for(lambda: httpx.get(f"{replica.url}/readyz").status_code == 200, 30, "streaming")
        with Writers(nodes, old) as writers:
            writers.wait_more()
            # 1. Every node accepts both tokens, still presenting the old one.
            _step(nodes, files, [old, new], 1)
            for node in nodes:
                wait_for(lambda node=node: _accepts(node, new), 30, "new token accepted")
            writers.wait_more()
            # 2. The applications move to the new token.
            writers.token = new
            writers.wait_more()
            # 3. Every node presents the new token (replication, forwarded requests).
            _step(nodes, files, [new, old], 2)
            writers.wait_more()
            # 4. The old token is dropped everywhere.
            _step(nodes, files, [new], 3)
            for node in nodes:
                wait_for(lambda node=node: not _accepts(node, old), 30, "old token refused")
            writers.wait_more()
        assert writers.failures == [], writers.failures[:5]
        assert writers.ok > 100
        # The replica reconnects with the new token (the primary accepts only it now).
        replica.stop()
        replica.start()
        with litecluster.connect(primary.url, token=new) as c:
            c.execute("INSERT INTO t(v) VALUES ('after')")
        wait_converged(primary, [replica])
        assert "reason=bad_token" not in primary.log_text
    finally:
        n.close()


def _users(path: Path, users: dict[str, tuple[str, list[str]]]) -> None:
    path.write_text(json.dumps([
        {"username": u, "password": bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode(),
         "perms": perms}
        for u, (p, perms) in users.items()
    ]))  # fmt: skip


def test_users_are_reloaded_on_sighup_and_a_broken_file_changes_nothing(tmp_path: Path) -> None:
    n = Nodes(tmp_path)
    users = tmp_path / "users.json"
    _users(users, {"alice": ("pw-alice", ["query"])})
    try:
        node = n.node("p", env={**AUTH_ON, "LITECLUSTER_USERS_FILE": str(users)})

        def status_as(user: str, password: str) -> int:
            got = httpx.get(f"{node.url}/db/query", params={"q": "SELECT 1"},
                            headers={"Authorization": basic_header(user, password)})  # fmt: skip
            return got.status_code

        assert status_as("alice", "pw-alice") == 200
        assert status_as("bob", "pw-bob") == 401
        # Bob is added and alice's password changes: both take effect on SIGHUP.
        _users(users, {"alice": ("pw-alice-2", ["query"]), "bob": ("pw-bob", ["query"])})
        node.signal(signal.SIGHUP)
        wait_for(lambda: status_as("bob", "pw-bob") == 200, 30, "bob accepted")
        assert status_as("alice", "pw-alice") == 401, "the remembered old password is forgotten"
        assert status_as("alice", "pw-alice-2") == 200
        # A broken file is refused as a whole, logged, and the users stay as they were.
        users.write_text('[{"username": "eve", "password": "plain", "perms": ["all"]}]')
        node.signal(signal.SIGHUP)
        wait_for(lambda: "node.reload_failed" in node.log_text, 30, "reload refused")
        assert "bcrypt hash" in node.log_text
        assert status_as("bob", "pw-bob") == 200
        assert node.running
    finally:
        n.close()


def test_resp_serves_the_users_file_read_only_users_get_noperm(tmp_path: Path) -> None:
    import redis

    n = Nodes(tmp_path)
    users = tmp_path / "users.json"
    _users(users, {"ro": ("pw-ro", ["query"]), "rw": ("pw-rw", ["query", "execute"])})
    try:
        node = n.node("p", env={"LITECLUSTER_USERS_FILE": str(users)},
                      args=["--resp", "127.0.0.1:0"])  # fmt: skip
        port = int(str(node.addr()["resp"]).rsplit(":", 1)[1])  # type: ignore[index]
        with redis.Redis(port=port, username="rw", password="pw-rw") as rw:
            assert rw.set("k", "v")
        with redis.Redis(port=port, username="ro", password="pw-ro") as ro:
            assert ro.get("k") == b"v"
            with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions"):
                ro.set("k", "w")
            pipe = ro.pipeline(transaction=True)
            pipe.set("k", "w")
            with pytest.raises(redis.exceptions.ResponseError):
                pipe.execute()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, username="ro", password="wrong").ping()
        token = node.headers["Authorization"].split()[1]
        with redis.Redis(port=port, password=token) as default:
            assert default.get("k") == b"v", "a read-only user's writes changed nothing"
    finally:
        n.close()

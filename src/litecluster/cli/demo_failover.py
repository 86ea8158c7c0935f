"""``litecluster demo --failover``: etcd, three nodes, a client writing, the primary killed.

Starts a real etcd and three ``litecluster serve --etcd`` processes on 127.0.0.1, waits for the
election, and writes through the client library (``litecluster.connect``, pointed at a node
that is not the primary, which forwards). Midway it kills the primary with SIGKILL, keeps
writing (retrying what fails, as an application would), reports the time from the kill to
the first write acknowledged by the new primary, and checks that every acknowledged write is
in the new primary's database.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from litecluster.cli.localcluster import LocalEtcd, LocalNode, wait_until
from litecluster.client.sync import ClientError, connect
from litecluster.errors import LiteclusterError

Echo = Callable[[str], None]
TTL = 2


@dataclass
class FailoverResult:
    acknowledged: list[str] = field(default_factory=list)
    failed: int = 0
    recovery_seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    old_primary: str = ""
    new_primary: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.acknowledged) and not self.lost and self.new_primary != self.old_primary


def _role(node: LocalNode) -> str:
    try:
        return str(node.status(timeout=2)["node"]["role"])
    except httpx.HTTPError:
        return "unreachable"


def _primary(nodes: list[LocalNode]) -> LocalNode | None:
    found = [n for n in nodes if n.running and _role(n) == "primary"]
    return found[0] if len(found) == 1 else None


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    if not wait_until(cond, timeout):
        raise LiteclusterError(f"timed out waiting for {what}")


def run_failover_demo(
    seconds: float, echo: Echo = print, directory: Path | None = None
) -> FailoverResult:
    root = directory or Path(tempfile.mkdtemp(prefix="litecluster-failover-"))
    root.mkdir(parents=True, exist_ok=True)
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    result = FailoverResult()
    etcd = LocalEtcd(root)
    nodes = [
        LocalNode(
            root / f"n{i}",
            f"n{i}",
            token,
            log_path=root / f"n{i}.log",
            extra_args=["--etcd", etcd.url, "--lease-ttl", str(TTL)],
        )
        for i in range(1, 4)
    ]
    try:
        echo(
            f"litecluster demo --failover: etcd {etcd.url} and 3 nodes in {root} (lease TTL {TTL} s)"
        )
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready()
        _wait(lambda: _primary(nodes) is not None, 30, "the first election")
        primary = _primary(nodes)
        assert primary is not None
        result.old_primary = primary.node_id
        via = next(n for n in nodes if n is not primary)
        _wait(lambda: _role(via) == "replica", 30, f"{via.node_id} to follow the primary")
        echo(f"  elected: {primary.node_id} is primary; the client writes through {via.node_id}")
        client = connect(via.http, timeout=5, token_file=via.token_file)
        client.execute("CREATE TABLE IF NOT EXISTS events(k TEXT PRIMARY KEY, at REAL)")
        started = time.monotonic()
        killed_at: float | None = None
        i = 0
        last_report = started
        while time.monotonic() - started < seconds or (
            killed_at is not None and not result.recovery_seconds
        ):
            key = f"e{i}"
            i += 1
            try:
                client.execute("INSERT INTO events(k, at) VALUES (?, ?)", (key, time.time()))
                result.acknowledged.append(key)
                if killed_at is not None and not result.recovery_seconds:
                    result.recovery_seconds = time.monotonic() - killed_at
                    echo(
                        f"  >> first write acknowledged after the kill: {result.recovery_seconds:.2f} s"
                    )
            except ClientError:
                result.failed += 1
                time.sleep(0.05)
            now = time.monotonic()
            if killed_at is None and now - started >= seconds / 2:
                primary.kill()
                killed_at = now
                echo(
                    f"  >> kill -9 {primary.node_id} (the primary) after {len(result.acknowledged)} writes"
                )
            if now - last_report >= 1.0:
                last_report = now
                echo(
                    f"  t={now - started:4.1f}s  acknowledged {len(result.acknowledged):>6}  failed {result.failed:>4}"
                )
            if now - started > seconds + 30:
                raise LiteclusterError("no new primary within 30 s of the planned end")
        client.close()
        new = _primary([n for n in nodes if n is not primary])
        if new is None:
            raise LiteclusterError("no primary after the failover")
        result.new_primary = new.node_id
        rows = httpx.get(f"http://{new.http}/db/query", params={"q": "SELECT k FROM events"},
                         headers=new.headers).json()  # fmt: skip
        present = {r[0] for r in rows["results"][0].get("values", [])}
        result.lost = [k for k in result.acknowledged if k not in present]
        echo("")
        echo(f"  new primary: {new.node_id}; {len(result.acknowledged)} writes acknowledged, "
             f"{result.failed} failed while no primary could take them (retried)")  # fmt: skip
        echo(
            f"  time from kill -9 to the first acknowledged write: {result.recovery_seconds:.2f} s"
        )
        echo(f"  acknowledged writes missing on the new primary: {len(result.lost)} "
             "(asynchronous mode: bounded by what was not yet streamed; see docs/node.md)")  # fmt: skip
        return result
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()
        if directory is None:
            shutil.rmtree(root, ignore_errors=True)

"""In synchronous mode a ``strong`` or ``linearizable`` read on the primary answers only data
its synchronous replicas hold: the primary's file already holds writes committed there that
still wait for their acknowledgements, and a failover before a replica received one loses it
(its client is told ``indeterminate``). A read that showed it would have shown a write that is
then gone. So after the read the primary waits, bounded by ``sync_timeout``, until every commit
its file held is acknowledged, and refuses the read (503, retryable) otherwise.

A primary with ``--sync-replicas 1`` and one replica process, stopped with SIGSTOP so that it
acknowledges nothing: a write commits on the primary and waits; ``none`` shows it, ``strong``
and ``linearizable`` (SQL and ``/kv/exec``) do not; once the replica wakes and acknowledges,
they do."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import Nodes, wait_streaming
from support.strong_reads import read_register

SYNC_TIMEOUT = 2.0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LocalNode, LocalNode]]:
    n = Nodes(tmp_path)
    try:
        primary = n.node("p1", args=["--sync-replicas", "1"],
                         env={"LITECLUSTER_SYNC_TIMEOUT": str(SYNC_TIMEOUT)})  # fmt: skip
        replica = n.node("r1", primary)
        wait_streaming(replica)
        yield primary, replica
    finally:
        for node in n.all:
            if node.running:
                node.signal(signal.SIGCONT)
        n.close()


def _keys(node: LocalNode, level: str) -> tuple[int, set[str]]:
    r = httpx.get(f"http://{node.http}/db/query", params={"q": "SELECT k FROM t", "level": level},
                  timeout=10)  # fmt: skip
    if r.status_code != 200:
        return r.status_code, set()
    return 200, {row[0] for row in r.json()["results"][0].get("values", [])}


def _kv_set(node: LocalNode, value: str) -> httpx.Response:
    from litecluster.kv.wire import ExecRequest, encode

    body = encode(ExecRequest([(0, [b"SET", b"reg", value.encode()])], [], 0, []))
    return httpx.post(f"http://{node.http}/kv/exec", content=body, timeout=10,
                      headers={"Content-Type": "application/msgpack"})  # fmt: skip


def test_strong_reads_in_sync_mode_show_only_what_the_sync_replicas_acknowledged(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = pair
    created = httpx.post(f"http://{primary.http}/db/execute", timeout=10,
                         json=[["CREATE TABLE t(k TEXT)"], ["INSERT INTO t VALUES ('acked')"]])  # fmt: skip
    assert created.status_code == 200, created.text
    assert _kv_set(primary, "acked").status_code == 200
    client = httpx.Client(timeout=10)
    for level in ("strong", "linearizable"):
        assert _keys(primary, level) == (200, {"acked"})
        assert read_register(client, primary, level).value == "acked"

    replica.signal(signal.SIGSTOP)
    answers: list[httpx.Response] = []
    writers = [
        threading.Thread(target=lambda: answers.append(httpx.post(
            f"http://{primary.http}/db/execute", json=[["INSERT INTO t VALUES ('pending')"]],
            timeout=10))),
        threading.Thread(target=lambda: answers.append(_kv_set(primary, "pending"))),
    ]  # fmt: skip
    for t in writers:
        t.start()
    # Committed on the primary (a plain local read shows it), not acknowledged.
    wait_for(lambda: _keys(primary, "none") == (200, {"acked", "pending"}), 10, "the commit")
    for level in ("strong", "linearizable"):
        status, keys = _keys(primary, level)
        assert (status, keys) == (503, set()), (level, status, keys)
        kv = read_register(client, primary, level)
        assert kv.status == 503, (level, kv)
    refused = httpx.get(f"http://{primary.http}/db/query",
                        params={"q": "SELECT 1", "level": "strong"}, timeout=10).json()  # fmt: skip
    assert (refused["retryable"], refused["indeterminate"]) == (True, False), refused
    assert "acknowledged" in refused["error"], refused
    for t in writers:
        t.join(15)
    assert sorted(a.status_code for a in answers) == [503, 503], "the writes time out"

    replica.signal(signal.SIGCONT)
    # The replica receives the commits and acknowledges them: now the reads show them.
    wait_for(lambda: _keys(primary, "strong") == (200, {"acked", "pending"}), 20, "the ack")
    assert _keys(primary, "linearizable") == (200, {"acked", "pending"})
    assert read_register(client, primary, "strong").value == "pending"
    client.close()

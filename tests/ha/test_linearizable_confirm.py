"""``linearizable`` reads are confirmed with etcd (a quorum read of the leader key: its holder
and create revision, the epoch) after they ran, not only by the lease on the node's clock.

A node process elected through a real etcd, with a lease TTL long enough that it does not
renew (and notice) during the test; the test then makes the leader key name another holder,
as a new election would. The node's lease is still valid on its own clock, so a ``strong`` read
is still answered (the lease is all it checks), but every ``linearizable`` read, SQL and
key/value, is refused with a retryable 503: only the round to etcd can tell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from litecluster.ha.etcd import EtcdClient
from support import wait_for
from support.etcd_server import EtcdServer
from support.ha_cluster import roles
from support.nodes import Nodes
from support.strong_reads import read_register, read_sql

LONG_TTL = 60
"""The primary renews every third of it: not during the test, so it does not step down."""


def _hand_the_key_to_another_node(url: str) -> None:
    async def run() -> None:
        client = EtcdClient([url])
        try:
            found = [kv for kv in await client.get_prefix("/litecluster/")
                     if kv.key.endswith("/leader")]  # fmt: skip
            assert len(found) == 1, found
            key = found[0].key
            await client.delete(key)
            other = {"node_id": "n9", "listen": "127.0.0.1:1", "http": "127.0.0.1:2"}
            lease = await client.grant(LONG_TTL)
            created = await client.create(key, json.dumps(other).encode(), lease=lease)
            assert created.succeeded
        finally:
            await client.close()

    asyncio.run(run())


def test_a_linearizable_read_asks_etcd_whether_this_node_still_leads(tmp_path: Path) -> None:
    etcd = EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    try:
        node = n.node("n1", args=["--etcd", etcd.url, "--lease-ttl", str(LONG_TTL)])
        with httpx.Client(timeout=5) as client:
            wait_for(lambda: roles([node]) == {"n1": "primary"}, 30, "n1 to be elected")
            r = client.post(f"http://{node.http}/db/execute",
                            json=[["CREATE TABLE t(k TEXT)"], ["CREATE TABLE accounts(id, balance)"],
                                  ["CREATE TABLE ledger(id)"]])  # fmt: skip
            assert r.status_code == 200, r.text
            for level in ("strong", "linearizable"):
                assert read_sql(client, node, level).status == 200, level
                assert read_register(client, node, level).status == 200, level

            _hand_the_key_to_another_node(etcd.url)

            for read in (read_sql, read_register):
                refused = read(client, node, "linearizable")
                assert refused.status == 503, refused
            body = client.get(f"http://{node.http}/db/query",
                              params={"q": "SELECT 1", "level": "linearizable"}).json()  # fmt: skip
            assert (body["retryable"], body["indeterminate"]) == (True, False), body
            assert "lease" in body["error"], body
            assert body["hint"], body
            # The lease alone still holds on this node's clock: strong reads are answered
            # until it renews and steps down (not for a third of the TTL).
            strong = read_sql(client, node, "strong")
            assert strong.status == 200 or roles([node])["n1"] != "primary", strong
    finally:
        n.close()
        etcd.stop()

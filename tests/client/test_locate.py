"""Choosing the primary to follow among the answers of the sources (client/locate.py)."""

from __future__ import annotations

import pytest

from litecluster.client.locate import Found, _from_status, best, from_refusal
from litecluster.replication.config import Address

A, B = Address("10.0.0.1", 4001), Address("10.0.0.2", 4001)


def test_the_highest_epoch_wins_and_a_primary_speaks_for_itself_first() -> None:
    deposed = Found(A, "10.0.0.1:4002", 7, "n1", itself=True)  # has not noticed yet
    elected = Found(B, "10.0.0.2:4002", 9, "n3")  # as a replica reports it
    assert best([deposed, elected], floor=0) is elected
    itself = Found(B, "10.0.0.2:4002", 9, "n2", itself=True)
    assert best([elected, itself], floor=0) is itself
    assert best([], floor=0) is None


def test_no_answer_below_the_epoch_already_seen_is_followed() -> None:
    old = Found(A, "", 3, "n1", itself=True)
    assert best([old], floor=4) is None, "epoch fencing"
    refusal = Found(B, "", 0, "refusal")  # epoch unknown: the stream's WELCOME fences it
    assert best([old, refusal], floor=4) is refusal


def test_a_replica_port_refusal_names_the_primary() -> None:
    got = from_refusal("primary refused the connection: primary is 127.0.0.1:19211")
    assert got is not None
    assert got.listen == Address("127.0.0.1", 19211)
    assert from_refusal("primary refused the connection: primary is unknown") is None
    assert from_refusal("connection refused") is None


def test_status_answers_name_the_primary_or_nothing() -> None:
    primary = {"node": {"role": "primary", "cluster": "c", "listen": "10.0.0.1:4001",
                        "http": "10.0.0.1:4002", "epoch": 5}}  # fmt: skip
    got = _from_status("s", primary, "c")
    assert got is not None
    assert (got.listen, got.epoch, got.itself) == (A, 5, True)
    replica = {"node": {"role": "replica", "cluster": "c"},
               "upstream": {"primary": "10.0.0.2:4001", "primary_http": "10.0.0.2:4002",
                            "state": "streaming", "epoch": 6}}  # fmt: skip
    got = _from_status("s", replica, "c")
    assert got is not None
    assert (got.listen, got.http, got.itself) == (B, "10.0.0.2:4002", False)
    replica["upstream"]["state"] = "disconnected"  # its word on a primary it lost is stale
    assert _from_status("s", replica, "c") is None
    with pytest.raises(LookupError, match="cluster 'c'"):
        _from_status("s", primary, "other")

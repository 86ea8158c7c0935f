"""The checker catches what it is there to catch (histories made up here, no cluster), and
responses are classified as the HTTP API documents them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.checker import Data, check_data, check_epochs
from support.history import (
    ACCOUNTS,
    FAILED,
    INDETERMINATE,
    INITIAL_BALANCE,
    OK,
    History,
    Op,
    classify,
)


def _ack(i: int, node: str, epoch: int, invoke: float, complete: float) -> Op:
    return Op("set", f"k{i}", node, invoke, complete, OK, epoch, node, i)


def _history(*ops: Op) -> History:
    h = History()
    for op in ops:
        h.add(op)
    return h


def _data(keys: set[str], ledger: dict[str, tuple[int, int, int]] | None = None) -> Data:
    balances = dict.fromkeys(range(ACCOUNTS), INITIAL_BALANCE)
    for src, dst, amount in (ledger or {}).values():
        balances[src] -= amount
        balances[dst] += amount
    return Data(keys, balances, ledger or {})


def test_one_node_per_epoch_and_no_acknowledgement_after_a_newer_epochs() -> None:
    # Overlapping requests are fine: k3 was sent before k2's acknowledgement arrived.
    ok = [_ack(1, "n1", 3, 0.0, 1.0), _ack(2, "n2", 7, 0.5, 2.0), _ack(3, "n1", 3, 1.9, 2.5)]
    check_epochs(_history(*ok))
    with pytest.raises(AssertionError, match="several nodes"):
        check_epochs(_history(_ack(1, "n1", 3, 0.0, 1.0), _ack(2, "n2", 3, 0.5, 2.0)))
    with pytest.raises(AssertionError, match="sent after a newer epoch"):
        check_epochs(_history(_ack(1, "n2", 7, 0.0, 1.0), _ack(2, "n1", 3, 1.5, 2.0)))
    with pytest.raises(AssertionError, match="without a position"):
        check_epochs(_history(Op("set", "k", "n1", 0.0, 1.0, OK)))


def test_data_lost_refused_and_bank_invariants() -> None:
    transfer = Op("bank", "b0-0", "n1", 0.0, 1.0, OK, 3, "n1", 5, transfer=(0, 1, 7))
    refused = Op("set", "k9", "n1", 0.0, 1.0, FAILED)
    maybe = Op("set", "k8", "n1", 0.0, 1.0, INDETERMINATE)
    h = _history(_ack(1, "n1", 3, 0.0, 1.0), transfer, refused, maybe)
    ledger = {"b0-0": (0, 1, 7)}
    assert check_data(h, _data({"k1", "k8"}, ledger)) == []
    assert check_data(h, _data(set(), ledger)) == [h.ops[0]]  # lost, returned
    with pytest.raises(AssertionError, match="refused writes were applied"):
        check_data(h, _data({"k1", "k9"}, ledger))
    with pytest.raises(AssertionError, match="differ from their transfer"):
        check_data(h, _data({"k1"}, {"b0-0": (0, 1, 8)}))
    wrong = _data({"k1"}, ledger)
    wrong.balances[0] += 1
    wrong.balances[1] -= 1
    with pytest.raises(AssertionError, match="ledger replayed"):
        check_data(h, wrong)


def _response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"results": [{"rows_affected": 1}], "position": {"epoch": 3, "txid": 9,
                                                                "node": "n2"}}, OK),
        (200, {"results": [{"error": "UNIQUE constraint failed: t.k"}]}, FAILED),
        (503, {"error": "this node is no longer the primary", "retryable": True}, FAILED),
        (503, {"error": "no primary reachable to forward to", "retryable": True}, FAILED),
        (503, {"error": "fewer than 1 replicas acknowledged it within 3 s; its outcome is "
                        "indeterminate", "retryable": False, "indeterminate": True}, INDETERMINATE),
        (503, {"error": "forwarding to the primary failed: timeout", "retryable": False,
               "indeterminate": True}, INDETERMINATE),
        # The flag decides, not the words: a retryable refusal marked indeterminate.
        (503, {"error": "x", "retryable": True, "indeterminate": True}, INDETERMINATE),
        (500, {"error": "AssertionError"}, INDETERMINATE),
    ],
)  # fmt: skip
def test_responses_are_classified_as_documented(status: int, body: Any, outcome: str) -> None:
    op = Op("set", "k", "n1", 0.0)
    classify(op, _response(status, body))
    assert op.outcome == outcome, op
    if outcome == OK:
        assert (op.epoch, op.txid, op.acked_by) == (3, 9, "n2")


def test_no_answer_is_indeterminate_unless_nothing_was_sent() -> None:
    for exc, outcome in [(httpx.ConnectError("refused"), FAILED),
                         (httpx.ReadTimeout("slow"), INDETERMINATE),
                         (httpx.RemoteProtocolError("closed"), INDETERMINATE)]:  # fmt: skip
        op = Op("set", "k", "n1", 0.0)
        classify(op, None, exc)
        assert op.outcome == outcome, (exc, op)

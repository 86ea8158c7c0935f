"""Where a position (epoch, txid) stands against a node's epoch history (history.py's reach):
reached, not yet, or excluded by a newer epoch. A txid alone never decides across epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord
from litecluster.replication.history import EpochHistory, Reach

REACHED, NOT_YET, EXCLUDED = Reach.REACHED, Reach.NOT_YET, Reach.EXCLUDED


def _history(tmp_path: Path, *entries: tuple[int, int]) -> EpochHistory:
    return EpochHistory(tmp_path / "h.json", entries)


@pytest.mark.parametrize(
    ("epoch", "txid", "head", "expected"),
    [
        (1, 5, 100, REACHED),  # epoch 1 held txids 1..50 here
        (1, 50, 100, REACHED),  # the state epoch 3 started from
        (1, 51, 100, EXCLUDED),  # the old primary's txid 51: epoch 3 wrote txid 51 here
        (1, 500, 100, EXCLUDED),  # far ahead: still another history, not "not yet"
        (3, 51, 100, REACHED),
        (3, 80, 100, REACHED),
        (3, 100, 100, REACHED),
        (3, 101, 100, NOT_YET),  # the current epoch, not applied yet
        (4, 90, 100, NOT_YET),  # a newer epoch than any record here: its txid 90 is not ours
        (2, 40, 100, REACHED),  # an epoch this lineage skipped, before epoch 3 began
        (2, 60, 100, EXCLUDED),  # ... and after: epoch 3 wrote txid 60 here
        (0, 60, 100, REACHED),  # no epoch named: the txid alone
        (0, 160, 100, NOT_YET),
        (3, 0, 0, REACHED),
    ],
)
def test_reach_against_a_lineage_with_a_failover(
    tmp_path: Path, epoch: int, txid: int, head: int, expected: Reach
) -> None:
    h = _history(tmp_path, (1, 0), (3, 50))
    assert h.reach(Position(epoch, txid), head) is expected


def test_the_new_primarys_txid_n_never_satisfies_a_wait_for_the_old_primarys_txid_n(
    tmp_path: Path,
) -> None:
    # The old primary of epoch 1 acknowledged txids up to 60; only 1..50 reached a replica,
    # which was promoted in epoch 2 and wrote txids 51.. itself.
    h = _history(tmp_path, (1, 0), (2, 50))
    for head in (50, 55, 60, 1000):
        assert h.reach(Position(1, 55), head) is EXCLUDED, head
        assert h.reach(Position(1, 60), head) is EXCLUDED, head
    assert h.reach(Position(2, 55), 54) is NOT_YET
    assert h.reach(Position(2, 55), 55) is REACHED


def test_a_replica_learns_of_an_exclusion_from_the_first_record_of_the_newer_epoch(
    tmp_path: Path,
) -> None:
    h = EpochHistory.load(tmp_path / "h.json")
    h.before_apply([TxRecord(1, t, 4096, 1, 0, 0, 0, ()) for t in range(1, 51)])
    # Waiting for the old primary's txid 55: not yet, as long as epoch 1 may still send it.
    assert h.reach(Position(1, 55), 50) is NOT_YET
    h.before_apply([TxRecord(2, 51, 4096, 1, 0, 0, 0, ())])
    assert h.reach(Position(1, 55), 51) is EXCLUDED
    assert h.reach(Position(1, 50), 51) is REACHED


def test_a_primary_holds_its_own_epoch_from_the_position_it_began_at(tmp_path: Path) -> None:
    h = EpochHistory.load(tmp_path / "h.json")
    h.begin(1, Position())
    h.begin(4, Position(1, 30, 7))  # promoted at txid 30
    # A write acknowledged by the new primary before it wrote any record (txid 30) is the
    # state it began from.
    assert h.reach(Position(4, 30), 30) is REACHED
    assert h.reach(Position(1, 30), 30) is REACHED
    assert h.reach(Position(1, 31), 30) is EXCLUDED
    assert h.reach(Position(4, 31), 30) is NOT_YET


def test_an_empty_history_knows_no_epoch_and_waits(tmp_path: Path) -> None:
    h = _history(tmp_path)
    assert h.reach(Position(1, 5), 10) is NOT_YET
    assert h.reach(Position(0, 5), 10) is REACHED
    assert h.reach(Position(1, 0), 0) is REACHED


def test_a_history_that_starts_late_judges_older_epochs_by_the_txid(tmp_path: Path) -> None:
    # Kept only since epoch 5 began at txid 200 (older history lost or never written).
    h = _history(tmp_path, (5, 200))
    assert h.reach(Position(2, 150), 300) is REACHED
    assert h.reach(Position(2, 201), 300) is EXCLUDED
    assert h.reach(Position(5, 250), 240) is NOT_YET

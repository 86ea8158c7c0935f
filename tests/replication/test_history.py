"""The epoch history of a database (node/history.py): how replicas, primaries and snapshots keep
it, and what it says of a position the txlog no longer holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord
from litecluster.errors import NodeError
from litecluster.replication.history import EpochHistory, history_path


def _recs(epoch: int, first: int, last: int) -> list[TxRecord]:
    return [TxRecord(epoch, t, 4096, 1, 0, 0, 0, ()) for t in range(first, last + 1)]


def _hist(tmp_path: Path) -> EpochHistory:
    return EpochHistory.load(history_path(tmp_path, "main"))


def test_a_replica_notes_each_newer_epoch_before_applying_and_keeps_it_across_restarts(
    tmp_path: Path,
) -> None:
    h = _hist(tmp_path)
    h.before_apply(_recs(1, 1, 10))
    h.before_apply(_recs(1, 11, 20))
    h.before_apply(_recs(1, 21, 25) + _recs(3, 26, 30))  # a failover inside one batch
    h.before_apply(_recs(4, 31, 31))
    assert h.entries == [(1, 0), (3, 25), (4, 30)]
    assert _hist(tmp_path).entries == [(1, 0), (3, 25), (4, 30)]


def test_entries_written_ahead_of_records_that_never_came_give_way_to_the_records_that_did(
    tmp_path: Path,
) -> None:
    h = _hist(tmp_path)
    h.before_apply(_recs(1, 1, 10))
    h.before_apply(_recs(2, 11, 12))  # noted, then the node crashed before applying them
    # It rejoins a primary whose lineage went on in epoch 1 past txid 10.
    h.before_apply(_recs(1, 11, 15))
    assert h.entries == [(1, 0)]
    h.before_apply(_recs(3, 16, 16))
    assert h.entries == [(1, 0), (3, 15)]


def test_a_primary_begins_its_epoch_at_the_position_it_writes_from(tmp_path: Path) -> None:
    h = _hist(tmp_path)
    h.begin(1, Position())  # a new database
    assert h.entries == [(1, 0)]
    h.begin(1, Position(1, 40, 9))  # a restart in the same epoch changes nothing
    assert h.entries == [(1, 0)]
    h.begin(5, Position(1, 40, 9))  # promoted, or a new epoch
    assert h.entries == [(1, 0), (5, 40)]
    # A replica's entry noted ahead of records it never applied is not part of its lineage.
    h2 = EpochHistory(tmp_path / "h2.json", [(1, 0), (5, 40), (6, 50)])
    h2.begin(7, Position(5, 45, 9))
    assert h2.entries == [(1, 0), (5, 40), (7, 45)]


def test_positions_are_judged_by_the_stretch_of_their_epoch(tmp_path: Path) -> None:
    # Epoch 1 wrote 1..100, epoch 2 was promoted at 100 and wrote nothing, epoch 3 was
    # promoted at 100 and wrote 101..150, epoch 5 (this primary) since 150; head 180.
    h = EpochHistory(tmp_path / "h.json", [(1, 0), (2, 100), (3, 100), (5, 150)])
    held = {
        Position(1, 0, 0): True,
        Position(1, 60, 0): True,  # lagged in epoch 1: a prefix
        Position(1, 100, 0): True,
        Position(1, 120, 0): False,  # epoch 1's primary wrote on past where this lineage left it
        Position(2, 100, 0): True,  # a snapshot of epoch 2's primary, at its start
        Position(2, 101, 0): False,
        Position(3, 150, 0): True,
        Position(3, 151, 0): False,  # a deposed primary's tail
        Position(5, 170, 0): True,
        Position(3, 90, 0): None,  # before its epoch began: cannot be
        Position(4, 120, 0): None,  # an epoch this lineage never had a record of
    }
    assert {pos: h.holds(pos, head=180) for pos in held} == held


def test_a_snapshot_carries_its_history_up_to_its_position(tmp_path: Path) -> None:
    primary = EpochHistory(tmp_path / "p.json", [(1, 0), (3, 100), (5, 150)])
    assert primary.upto(150) == [(1, 0), (3, 100), (5, 150)]
    assert primary.upto(120) == [(1, 0), (3, 100)]
    replica = _hist(tmp_path)
    replica.before_apply(_recs(2, 1, 5))  # its own, replaced with the snapshot's
    replica.replace(primary.upto(150))
    replica.before_apply(_recs(5, 151, 160))  # the snapshot's epoch continues
    assert _hist(tmp_path).entries == [(1, 0), (3, 100), (5, 150)]


def test_a_damaged_or_disordered_file_is_an_unknown_history_not_an_error(tmp_path: Path) -> None:
    path = history_path(tmp_path, "main")
    path.parent.mkdir(parents=True)
    for junk in (b"{not json", b'{"entries": [[1]]}', b'{"entries": [[3, 0], [2, 5]]}', b"[]"):
        path.write_bytes(junk)
        h = EpochHistory.load(path)
        assert h.entries == []
        assert h.holds(Position(1, 5, 0), head=10) is None
    h.replace([(3, 0), (2, 5)])  # a disordered snapshot history is not adopted either
    assert h.entries == []


def test_a_history_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "history"
    blocker.write_text("a file where the directory should be")
    h = _hist(tmp_path)
    with pytest.raises(NodeError, match="cannot write the epoch history") as info:
        h.before_apply(_recs(1, 1, 3))
    assert info.value.hint
    assert h.entries == [], "nothing is claimed that is not on disk"

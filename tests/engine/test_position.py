"""The replica's two-slot position file (:mod:`litecluster.engine.position`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.engine.position import Position, PositionFile, PositionState
from litecluster.errors import ReplicaError

SLOT = 128


def pos(txid: int) -> Position:
    return Position(epoch=2 + txid // 10, txid=txid, checksum=(txid * 0x9E3779B97F4A7C15) % 2**64)


def reopen(path: Path) -> PositionState | None:
    pf = PositionFile(path, fsync=False)
    try:
        return pf.state
    finally:
        pf.close()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def newest_slot(state: PositionState) -> int:
    return (state.seq % 2) * SLOT


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "db.lcpos"


def test_new_file_has_no_state(path: Path) -> None:
    assert reopen(path) is None
    assert path.exists()
    assert reopen(path) is None  # an empty file is a new replica, not damage


def test_round_trip(path: Path) -> None:
    pf = PositionFile(path)
    pf.write(pos(7), 4096)
    pf.close()
    state = reopen(path)
    assert state is not None
    assert (state.committed, state.page_size, state.pending) == (pos(7), 4096, None)

    pf = PositionFile(path, fsync=False)
    pf.write(pos(7), 1024, pending=pos(9))
    pf.close()
    state = reopen(path)
    assert state is not None
    assert (state.committed, state.page_size, state.pending) == (pos(7), 1024, pos(9))


def test_extreme_values_round_trip(path: Path) -> None:
    big = Position(2**64 - 1, 2**64 - 1, 2**64 - 1)
    pf = PositionFile(path, fsync=False)
    pf.write(big, 65536, pending=Position(0, 0, 0))
    pf.close()
    state = reopen(path)
    assert state is not None
    assert state.committed == big
    assert state.pending == Position(0, 0, 0)  # a zero pending position is still pending


def test_newest_slot_wins(path: Path) -> None:
    pf = PositionFile(path, fsync=False)
    for txid in range(1, 8):
        pf.write(pos(txid), 4096)
        state = reopen(path)
        assert state is not None
        assert state.committed == pos(txid)
        assert state.seq == txid
    pf.close()
    assert path.stat().st_size == 2 * SLOT


def test_damaged_newest_slot_falls_back_to_the_older_one(path: Path) -> None:
    pf = PositionFile(path, fsync=False)
    pf.write(pos(1), 4096)
    pf.write(pos(2), 4096, pending=pos(3))
    pf.close()
    state = reopen(path)
    assert state is not None
    for off in range(0, 88, 3):  # the slot body and its checksum
        original = path.read_bytes()
        flip(path, newest_slot(state) + off)
        older = reopen(path)
        assert older is not None, off
        assert (older.committed, older.pending, older.seq) == (pos(1), None, 1), off
        path.write_bytes(original)


def test_torn_write_of_the_newest_slot_falls_back(path: Path) -> None:
    pf = PositionFile(path, fsync=False)
    pf.write(pos(1), 4096)
    pf.write(pos(2), 4096)
    pf.close()
    data = path.read_bytes()
    # Half of slot 0 (seq 2) reverted to zeros, as a torn sector write could leave it.
    path.write_bytes(bytes(40) + data[40:])
    state = reopen(path)
    assert state is not None
    assert state.committed == pos(1)


def test_write_after_fallback_keeps_the_good_slot(path: Path) -> None:
    """After falling back, the next write goes to the damaged slot, not over the only good one."""
    pf = PositionFile(path, fsync=False)
    pf.write(pos(1), 4096)
    pf.write(pos(2), 4096)
    pf.close()
    flip(path, 0 * SLOT + 20)  # seq 2 lives in slot 0
    pf = PositionFile(path, fsync=False)
    assert pf.state is not None
    assert pf.state.committed == pos(1)
    pf.write(pos(3), 4096)
    pf.close()
    state = reopen(path)
    assert state is not None
    assert state.committed == pos(3)
    # Damage the new write too: the slot written before it is still there.
    flip(path, newest_slot(state) + 20)
    state = reopen(path)
    assert state is not None
    assert state.committed == pos(1)


@pytest.mark.parametrize("offsets", [(5, SLOT + 5), (80, SLOT + 81), (0, SLOT)])
def test_both_slots_damaged_raises(path: Path, offsets: tuple[int, int]) -> None:
    pf = PositionFile(path, fsync=False)
    pf.write(pos(1), 4096)
    pf.write(pos(2), 4096)
    pf.close()
    for off in offsets:
        flip(path, off)
    with pytest.raises(ReplicaError) as info:
        PositionFile(path, fsync=False)
    assert info.value.context["file"] == str(path)


def test_garbage_file_raises(path: Path) -> None:
    path.write_bytes(b"not a position file" * 20)
    with pytest.raises(ReplicaError):
        PositionFile(path, fsync=False)


def test_single_damaged_slot_raises(path: Path) -> None:
    pf = PositionFile(path, fsync=False)
    pf.write(pos(1), 4096)  # seq 1 goes to slot 1; slot 0 is zeros
    pf.close()
    assert reopen(path) is not None
    flip(path, SLOT + 30)
    with pytest.raises(ReplicaError):
        PositionFile(path, fsync=False)


def test_position_order_and_str() -> None:
    assert Position(1, 5, 0) < Position(1, 6, 0) < Position(2, 0, 0)
    assert str(Position(3, 4, 255)) == "3:4:00000000000000ff"

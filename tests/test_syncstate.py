"""The N-K+1 promotion rule and the sync set's bookkeeping, without etcd."""

from __future__ import annotations

import pytest

from litecluster.errors import ProtocolError
from litecluster.node.syncstate import SyncState, droppable, member_positions, promotion_blocked


def test_sync_state_round_trips_and_rejects_garbage() -> None:
    s = SyncState(7, 1, frozenset({"n2", "n3"}), {"main": 42})
    assert SyncState.decode(s.encode()) == s
    for raw in (b"", b"[]", b'{"epoch": 1}', b'{"epoch":"x","k":1,"members":[],"floor":{}}'):
        with pytest.raises(ProtocolError):
            SyncState.decode(raw)


def test_async_mode_and_no_state_never_block() -> None:
    assert promotion_blocked(None, {}, {}) is None
    assert promotion_blocked(SyncState(1, 0, frozenset({"a", "b"})), {}, {}) is None


def test_n_minus_k_plus_1_members_must_be_alive() -> None:
    # N=2, K=1: an acknowledged write may be on either replica alone, so both must be seen.
    state = SyncState(3, 1, frozenset({"n2", "n3"}))
    me = {"main": 10}
    reason = promotion_blocked(state, {"n2": me}, me)
    assert reason is not None
    assert "1 of the sync set" in reason
    assert "2 are needed" in reason
    assert promotion_blocked(state, {"n2": me, "n3": {"main": 9}}, me) is None
    # N=3, K=2: any 2 of 3 intersect the 2 holders of each acknowledged write.
    state = SyncState(3, 2, frozenset({"a", "b", "c"}))
    assert promotion_blocked(state, {"a": me, "b": me}, me) is None
    assert promotion_blocked(state, {"a": me}, me) is not None


def test_the_candidate_must_be_at_least_as_advanced_as_every_live_member() -> None:
    state = SyncState(3, 1, frozenset({"n2", "n3"}))
    alive = {"n2": {"main": 10, "other": 5}, "n3": {"main": 10, "other": 6}}
    reason = promotion_blocked(state, alive, alive["n2"])
    assert reason is not None
    assert "n3 is ahead on other" in reason
    assert promotion_blocked(state, alive, alive["n3"]) is None


def test_the_floor_of_a_new_primary_must_be_reached() -> None:
    # A primary promoted at main=100 publishes an empty set: until a replica reaches 100,
    # only it held the earlier epochs' acknowledged writes.
    state = SyncState(9, 1, frozenset(), {"main": 100})
    reason = promotion_blocked(state, {"n3": {"main": 99}}, {"main": 99})
    assert reason is not None
    assert "floor" in reason
    assert promotion_blocked(state, {"n3": {"main": 100}}, {"main": 100}) is None


def test_a_departed_replica_leaves_the_set_once_k_others_hold_its_writes() -> None:
    gone_at = {"main": 50, "db2": 7}
    assert not droppable(gone_at, [{"main": 60, "db2": 6}], 1)
    assert droppable(gone_at, [{"main": 60, "db2": 6}, {"main": 50, "db2": 7}], 1)
    assert not droppable(gone_at, [{"main": 60, "db2": 8}], 2)
    assert droppable(gone_at, [{"main": 60, "db2": 8}, {"main": 51, "db2": 9}], 2)


def test_member_positions_ignore_malformed_records() -> None:
    assert member_positions({"positions": {"main": 3, "x": "bad"}}) == {"main": 3}
    assert member_positions({"positions": "nope"}) == {}
    assert member_positions({}) == {}

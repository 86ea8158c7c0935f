"""The N-K+1 promotion rule and the sync set's bookkeeping, without etcd."""

from __future__ import annotations

import pytest

from litecluster.errors import ProtocolError
from litecluster.ha.syncstate import (
    SyncState,
    droppable,
    elect,
    member_positions,
    promotion_blocked,
)


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


def _rec(node_id: str, positions: dict[str, int], **extra: object) -> dict[str, object]:
    return {"node_id": node_id, "positions": positions, "eligible": True, "priority": 0, **extra}


def elect_all_alive(state: SyncState | None, records: list[dict[str, object]]) -> str | None:
    return elect(state, records, {str(m["node_id"]): member_positions(m) for m in records})


def test_the_most_advanced_eligible_node_is_elected() -> None:
    records = [_rec("a", {"main": 10}), _rec("b", {"main": 12}), _rec("c", {"main": 12})]
    assert elect_all_alive(None, records) == "b"  # ties on data: the smallest id
    records[2]["priority"] = 5
    assert elect_all_alive(None, records) == "c"  # ties on data: the highest priority first
    records[1]["positions"] = {"main": 13}
    assert elect_all_alive(None, records) == "b"  # data before priority
    # Never a node that may not fail over, nor one that is not eligible (lagging).
    records[1]["nofailover"] = True
    records[2]["eligible"] = False
    assert elect_all_alive(None, records) == "a"
    records[0]["eligible"] = False
    assert elect_all_alive(None, records) is None


def test_data_on_every_database_counts_not_main_alone() -> None:
    records = [_rec("a", {"main": 10, "db2": 1}), _rec("b", {"main": 9, "db2": 5})]
    assert elect_all_alive(None, records) == "b"


def test_a_candidate_failing_the_sync_rule_does_not_stop_one_that_passes_it() -> None:
    # "a" is ahead on main but behind the live sync member "c" on db2; "b" passes the rule.
    # Ranking by main alone made "b" stand aside for "a", whom the rule then refused.
    state = SyncState(4, 1, frozenset({"b", "c"}))
    records = [
        _rec("a", {"main": 20, "db2": 1}),
        _rec("b", {"main": 15, "db2": 3}),
        _rec("c", {"main": 15, "db2": 3}, nofailover=True),
    ]
    assert promotion_blocked(state, {"c": {"main": 15, "db2": 3}}, {"main": 20, "db2": 1})
    assert elect_all_alive(state, records) == "b"
    # With no one able to pass (the floor is above everyone), nobody is elected.
    high = SyncState(4, 1, frozenset({"b", "c"}), floor={"main": 99})
    assert elect_all_alive(high, records) is None


def test_a_member_not_seen_alive_does_not_count_for_the_rule_but_is_waited_for() -> None:
    state = SyncState(4, 1, frozenset({"b", "c"}))
    records = [_rec("b", {"main": 15}), _rec("c", {"main": 16})]
    # c's record is older than the leader key's disappearance: it may be dead. b alone does
    # not make the N-K+1 quorum (2 of 2 needed), so nobody is elected.
    assert elect(state, records, {"b": {"main": 15}}) is None
    # In asynchronous mode the more advanced c, possibly alive, is waited for.
    assert elect(None, records, {"b": {"main": 15}}) == "c"

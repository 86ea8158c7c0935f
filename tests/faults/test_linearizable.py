"""The linearizability checker (support/linearizable.py) on histories made up here: it accepts
linearizable ones, overlapping in tricky ways included, rejects the anomalies the fault suite
looks for (a stale read after an acknowledged write, a lost write, a read from the future, a
value read back after a newer one), and gives up with a clear answer instead of running
unbounded."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from support.linearizable import (
    LINEARIZABLE,
    NOT_LINEARIZABLE,
    TOO_LARGE,
    BankModel,
    Model,
    Operation,
    RegisterModel,
    SetModel,
    check,
)


def op(kind: str, *args: Any, out: Any = None, at: tuple[float, float | None]) -> Operation:
    return Operation((kind, *args), out, at[0], at[1])


def w(v: Any, at: tuple[float, float | None]) -> Operation:
    return op("write", v, at=at)


def r(v: Any, at: tuple[float, float | None]) -> Operation:
    return op("read", out=v, at=at)


def verdict(model: Model, *ops: Operation) -> str:
    return check(model, list(ops)).result


# ---- register ------------------------------------------------------------------------------------


def test_register_sequential_and_stale_reads() -> None:
    reg = RegisterModel()
    assert verdict(reg, w(1, (0, 1)), r(1, (2, 3)), w(2, (4, 5)), r(2, (6, 7))) == LINEARIZABLE
    # A read that began after the write of 2 was acknowledged answers the older 1.
    got = check(reg, [w(1, (0, 1)), w(2, (2, 3)), r(1, (4, 5))])
    assert got.result == NOT_LINEARIZABLE
    assert "read() -> 1 [4.000, 5.000]" in got.detail, got.detail
    # The initial value after an acknowledged write: the write is lost.
    assert verdict(reg, w(1, (0, 1)), r(None, (2, 3))) == NOT_LINEARIZABLE
    # A read that returned before the write was sent cannot see it.
    assert verdict(reg, r(1, (0, 1)), w(1, (2, 3))) == NOT_LINEARIZABLE


def test_register_overlapping_operations() -> None:
    reg = RegisterModel()
    # A long write: reads during it may see the old value, then the new one...
    long_write = w(1, (0, 10))
    assert verdict(reg, long_write, r(None, (1, 2)), r(1, (3, 4)), r(1, (5, 6))) == LINEARIZABLE
    # ...but once one read saw the new value, a later read cannot go back to the old.
    assert verdict(reg, long_write, r(1, (3, 4)), r(None, (5, 6))) == NOT_LINEARIZABLE
    # Two concurrent reads may disagree (each overlaps the write): no real-time order between
    # them.
    assert verdict(reg, long_write, r(1, (1, 5)), r(None, (2, 6))) == LINEARIZABLE
    # Two concurrent writes, read in both orders while they run: w2 then w1...
    w1, w2 = w(1, (0, 5)), w(2, (0, 5))
    assert verdict(reg, w1, w2, r(2, (1, 2)), r(1, (3, 4)), r(1, (6, 7))) == LINEARIZABLE
    # ...but after both completed the register holds one value for good.
    assert verdict(reg, w1, w2, r(1, (6, 7)), r(2, (8, 9))) == NOT_LINEARIZABLE
    # Touching intervals (one completes when the next is invoked) count as concurrent.
    assert verdict(reg, w(1, (0, 1)), r(None, (1, 2))) == LINEARIZABLE


def test_register_unanswered_writes_may_apply_late_or_never() -> None:
    reg = RegisterModel()
    lost_answer = w(1, (0, None))
    assert verdict(reg, lost_answer, r(None, (1, 2)), r(1, (3, 4))) == LINEARIZABLE
    assert verdict(reg, lost_answer, r(None, (1, 2)), r(None, (3, 4))) == LINEARIZABLE
    assert verdict(reg, lost_answer, r(1, (1, 2)), r(None, (3, 4))) == NOT_LINEARIZABLE
    # Not before it was sent.
    assert verdict(reg, r(1, (0, 1)), w(1, (2, None))) == NOT_LINEARIZABLE


def test_register_compare_and_set() -> None:
    reg = RegisterModel(0)

    def cas(old: int, new: int, ok: bool | None, at: tuple[float, float | None]) -> Operation:
        return op("cas", old, new, out=ok, at=at)

    good = [cas(0, 1, True, (0, 1)), cas(0, 2, False, (2, 3)), r(1, (4, 5))]
    assert verdict(reg, *good) == LINEARIZABLE
    assert verdict(reg, *good, cas(0, 3, True, (6, 7))) == NOT_LINEARIZABLE
    # A cas with no answer took effect (it was read) only if the value was then its old one.
    assert verdict(reg, cas(0, 5, None, (0, None)), r(5, (1, 2))) == LINEARIZABLE
    assert verdict(reg, w(9, (0, 1)), cas(0, 5, None, (2, None)), r(5, (3, 4))) == NOT_LINEARIZABLE


def test_register_histories_from_an_atomic_register_are_accepted() -> None:
    """Random concurrent histories of a real atomic register (each operation takes effect at
    a random instant inside its interval) are linearizable; changing one read to a value
    never written makes them not."""
    for seed in range(30):
        rng = random.Random(seed)
        events: list[tuple[float, float, float, str, int]] = []
        for client in range(4):
            t = rng.random()
            for _ in range(15):
                start = t + rng.random()
                end = start + rng.random() * 2
                events.append((start + rng.random() * (end - start), start, end,
                               rng.choice("wr"), client))  # fmt: skip
                t = end
        value, ops, unique = None, [], iter(range(10**6))
        for _, start, end, kind, _ in sorted(events):  # by instant of effect
            if kind == "w":
                value = next(unique)
                ops.append(w(value, (start, end if rng.random() > 0.1 else None)))
            else:
                ops.append(r(value, (start, end)))
        got = check(RegisterModel(), ops)
        assert got.ok, (seed, got)
        reads = [i for i, o in enumerate(ops) if o.input[0] == "read"]
        broken = list(ops)
        i = rng.choice(reads)
        broken[i] = r("never written", (ops[i].invoke, ops[i].complete))
        assert check(RegisterModel(), broken).result == NOT_LINEARIZABLE, seed


# ---- set -----------------------------------------------------------------------------------------


def add(x: str, at: tuple[float, float | None]) -> Operation:
    return op("add", x, at=at)


def read_set(xs: set[str], at: tuple[float, float]) -> Operation:
    return op("read", out=frozenset(xs), at=at)


def test_set_adds_and_reads() -> None:
    s = SetModel()
    ok = [add("a", (0, 1)), add("b", (0.5, 3)), read_set({"a"}, (2, 2.5)),
          read_set({"a", "b"}, (4, 5))]  # fmt: skip
    assert verdict(s, *ok) == LINEARIZABLE
    # A stale read: "a" was acknowledged before it began (the deposed primary).
    assert verdict(s, *ok, read_set({"b"}, (6, 7))) == NOT_LINEARIZABLE
    # Reads of a growing set cannot shrink, even among concurrent adds.
    assert verdict(s, add("c", (0, 9)), add("d", (0, 9)), read_set({"c"}, (1, 2)),
                   read_set({"d"}, (3, 4))) == NOT_LINEARIZABLE  # fmt: skip
    # An element nobody added (a refused write that was applied after all).
    assert verdict(s, add("a", (0, 1)), read_set({"a", "z"}, (2, 3))) == NOT_LINEARIZABLE
    # An unanswered add may show up late, and then stays.
    maybe = add("m", (0, None))
    assert verdict(s, maybe, read_set(set(), (1, 2)), read_set({"m"}, (3, 4))) == LINEARIZABLE
    assert verdict(s, maybe, read_set({"m"}, (1, 2)), read_set(set(), (3, 4))) == NOT_LINEARIZABLE
    with pytest.raises(ValueError, match="at most once"):
        check(s, [add("a", (0, 1)), add("a", (2, 3))])


def test_a_long_set_history_with_unanswered_adds_is_checked_quickly() -> None:
    """Thousands of operations, reads of thousands of elements, and unanswered adds nothing
    read (pruned): the cost stays linear-ish, as the fault suite needs."""
    rng = random.Random(7)
    ops: list[Operation] = []
    present: set[str] = set()
    t = 0.0
    for i in range(4000):
        t += 0.01
        if i % 10 == 9:
            ops.append(read_set(set(present), (t, t + 0.05)))
        elif rng.random() < 0.05:
            ops.append(add(f"lost{i}", (t, None)))
        else:
            ops.append(add(f"k{i}", (t, t + 0.015)))
            present.add(f"k{i}")
    started = time.monotonic()
    got = check(SetModel(), ops)
    assert got.ok, got
    assert time.monotonic() - started < 20, got
    assert got.operations < len(ops), "the unanswered adds nothing read were pruned"


# ---- bank ----------------------------------------------------------------------------------------


def transfer(src: int, dst: int, amount: int, at: tuple[float, float | None]) -> Operation:
    return op("transfer", src, dst, amount, at=at)


def balances(*b: int, at: tuple[float, float]) -> Operation:
    return op("read", out=tuple(b), at=at)


def test_bank_transfers_and_reads() -> None:
    bank = BankModel([10, 10, 10])
    t1 = transfer(0, 1, 5, (0, 1))
    assert verdict(bank, t1, balances(5, 15, 10, at=(2, 3))) == LINEARIZABLE
    assert verdict(bank, t1, balances(10, 10, 10, at=(2, 3))) == NOT_LINEARIZABLE  # stale
    assert verdict(bank, t1, balances(5, 15, 11, at=(2, 3))) == NOT_LINEARIZABLE  # total
    # Two concurrent transfers: a read between them sees either one first.
    a, b = transfer(0, 1, 5, (0, 10)), transfer(1, 2, 3, (0, 10))
    assert verdict(bank, a, b, balances(10, 7, 13, at=(1, 2)),
                   balances(5, 12, 13, at=(11, 12))) == LINEARIZABLE  # fmt: skip
    assert verdict(bank, a, b, balances(5, 15, 10, at=(1, 2)),
                   balances(10, 7, 13, at=(3, 4))) == NOT_LINEARIZABLE  # fmt: skip
    # An unanswered transfer: applied or not, but consistently.
    c = transfer(2, 0, 4, (0, None))
    assert verdict(bank, c, balances(14, 10, 6, at=(1, 2))) == LINEARIZABLE
    assert verdict(bank, c, balances(10, 10, 10, at=(1, 2))) == LINEARIZABLE
    assert verdict(bank, c, balances(14, 10, 6, at=(1, 2)),
                   balances(10, 10, 10, at=(3, 4))) == NOT_LINEARIZABLE  # fmt: skip


# ---- bounds --------------------------------------------------------------------------------------


def test_the_search_gives_up_with_a_clear_answer() -> None:
    # Twenty transfers all concurrent with a read matching none of their subsets: a full
    # search would try up to 2^20 orders of application.
    bank = BankModel([1000, 1000])
    ops = [transfer(0, 1, 2 << i, (0, 10)) for i in range(20)]
    ops.append(balances(999, 1001, at=(1, 2)))  # even amounts never sum to 1
    got = check(bank, ops, max_steps=20_000)
    assert got.result == TOO_LARGE, got
    assert "gave up after 20000 steps" in str(got)
    # Small enough, the same search answers.
    assert check(bank, ops[:6] + ops[-1:]).result == NOT_LINEARIZABLE

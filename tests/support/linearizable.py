"""A linearizability checker for recorded histories: Wing & Gong's search with Lowe's
memoization (the algorithm of Porcupine and Knossos' "wgl"), bounded.

A history is a list of :class:`Operation`: what was asked (``input``), what was answered
(``output``), and when, on one monotonic clock: ``invoke`` before the request was sent,
``complete`` after the answer arrived, or None when no answer came (a timeout, a broken
connection, an indeterminate refusal): such an operation may take effect at any moment after
its invoke, or never. A history is linearizable when the operations can be put in one order
that respects real time (an operation that completed before another was invoked comes first)
and in which every answer is what the model (:class:`SetModel`, :class:`BankModel`,
:class:`RegisterModel`) gives in that order.

The search walks the call and return events in time order. At a call it tries to take the
operation as the next in the order (the model says whether its answer fits the state, and the
states after it); at the return of an operation not yet taken it backtracks, since that
operation had to take effect before its return. Each (set of operations taken, state) is
explored once: the sets are kept as 128-bit Zobrist hashes (XOR of a random number per
operation), so the cache costs a few words per entry whatever the history's length, and the
chance that two different sets collide is about 2^-128 per pair. Unanswered operations never
block a return and can always be taken last (where nothing observes them); one that nothing
in the history observes is dropped before the search (``Model.prune``), so that timed-out
writes whose values were never read do not multiply the search.

The search is exponential in the number of operations pending at once in the worst case; it
gives up after ``max_steps`` and says so (:data:`TOO_LARGE`) instead of running unbounded.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

LINEARIZABLE, NOT_LINEARIZABLE, TOO_LARGE = "linearizable", "not linearizable", "too large"


@dataclass(frozen=True)
class Operation:
    input: tuple[Any, ...]
    """What was asked, by model: ``("add", x)``, ``("read",)``, ``("write", v)``,
    ``("cas", old, new)``, ``("transfer", src, dst, amount)``."""
    output: Any
    """What was answered (ignored when ``complete`` is None)."""
    invoke: float
    complete: float | None
    """None: no answer came; the operation may have taken effect after ``invoke``, or not."""
    label: str = ""
    """How failure messages name it (the request, the node it went to)."""

    @property
    def answered(self) -> bool:
        return self.complete is not None

    def __str__(self) -> str:
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        shown = _short(self.output) if self.answered else "no answer"
        name = f"{self.label} " if self.label else ""
        return (
            f"{name}{self.input[0]}{_short(self.input[1:])} -> {shown} [{self.invoke:.3f}, {end}]"
        )


def _short(value: Any) -> str:
    if isinstance(value, frozenset | set):
        return f"<set of {len(value)}>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Verdict:
    result: str
    """:data:`LINEARIZABLE`, :data:`NOT_LINEARIZABLE` or :data:`TOO_LARGE`."""
    operations: int
    """Operations searched (after pruning)."""
    steps: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == LINEARIZABLE

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.result} ({self.operations} operations, {self.steps} steps){tail}"


class Model(Protocol):
    def init(self) -> Hashable:
        """The state before any operation."""

    def step(self, state: Any, op: Operation) -> Sequence[Hashable]:
        """The states ``op`` may leave behind when taken in ``state`` (empty: its answer does
        not fit ``state``). An unanswered operation's answer is unknown: any fits."""

    def prune(self, ops: list[Operation]) -> list[Operation]:
        """``ops`` without the unanswered operations nothing in them observes (taking them
        last, after everything, is always allowed)."""

    def describe(self, state: Any) -> str:
        """A state for a failure message."""


# ---- models --------------------------------------------------------------------------------------

_M = (1 << 127) - 1


def _h(x: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(x).encode(), digest_size=16).digest(), "big")


def fingerprint(elements: Iterable[object]) -> tuple[int, int]:
    """A set's fingerprint: its size and the sum of its elements' 128-bit hashes (mod a
    prime), which an add updates in O(1)."""
    n, acc = 0, 0
    for x in elements:
        n, acc = n + 1, (acc + _h(x)) % _M
    return n, acc


class SetModel:
    """A grow-only set: ``("add", x)`` (each ``x`` added at most once, answered None) and
    ``("read",)`` answered with every element (a frozenset). The state is the set's
    fingerprint (:func:`fingerprint`), not the set: a history of thousands of adds keeps a
    few words per state."""

    def __init__(self) -> None:
        self._reads: dict[int, tuple[int, int]] = {}
        self._adds: dict[object, int] = {}

    def init(self) -> Hashable:
        return (0, 0)

    def step(self, state: Any, op: Operation) -> Sequence[Hashable]:
        if op.input[0] == "add":
            n, acc = state
            return [(n + 1, (acc + self._hash(op.input[1])) % _M)]
        if not op.answered:
            return [state]
        key = id(op)
        seen = self._reads.get(key)
        if seen is None:
            seen = self._reads[key] = self._fingerprint(op.output)
        return [state] if seen == state else []

    def _hash(self, x: object) -> int:
        h = self._adds.get(x)
        if h is None:
            h = self._adds[x] = _h(x)
        return h

    def _fingerprint(self, elements: Iterable[object]) -> tuple[int, int]:
        n, acc = 0, 0
        for x in elements:
            n, acc = n + 1, acc + self._hash(x)
        return n, acc % _M

    def prune(self, ops: list[Operation]) -> list[Operation]:
        self._reads.clear()  # keyed by id(): valid for one history only
        added = [op.input[1] for op in ops if op.input[0] == "add"]
        if len(added) != len(set(added)):
            raise ValueError("SetModel needs each element added at most once")
        observed: set[object] = set()
        for op in ops:
            if op.input[0] == "read" and op.answered:
                observed.update(op.output)
        return [
            op for op in ops if op.answered or (op.input[0] == "add" and op.input[1] in observed)
        ]

    def describe(self, state: Any) -> str:
        return f"a set of {state[0]} elements"


class RegisterModel:
    """One register: ``("write", v)`` answered None, ``("read",)`` answered with the value,
    ``("cas", old, new)`` answered True (the value was ``old``, now ``new``) or False (it was
    not ``old``; nothing changed). Written values should be unique, so that an unanswered
    write nothing read can be dropped."""

    def __init__(self, initial: Hashable = None) -> None:
        self.initial = initial

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Any, op: Operation) -> Sequence[Hashable]:
        kind = op.input[0]
        if kind == "write":
            return [op.input[1]]
        if kind == "read":
            return [state] if not op.answered or op.output == state else []
        old, new = op.input[1], op.input[2]
        if not op.answered:  # taken at all, it did what the state says
            return [new] if state == old else [state]
        if op.output:
            return [new] if state == old else []
        return [state] if state != old else []

    def prune(self, ops: list[Operation]) -> list[Operation]:
        observed = {op.output for op in ops if op.input[0] == "read" and op.answered}
        observed |= {op.input[1] for op in ops if op.input[0] == "cas"}

        def keep(op: Operation) -> bool:
            if op.answered:
                return True
            kind = op.input[0]
            return kind != "read" and op.input[-1] in observed

        return [op for op in ops if keep(op)]

    def describe(self, state: Any) -> str:
        return f"the value {state!r}"


class BankModel:
    """Accounts with a fixed total: ``("transfer", src, dst, amount)`` answered None (balances
    may go negative, as the fault suite's transfers let them), ``("read",)`` answered with
    every balance (a tuple by account). A read whose total differs fits no state."""

    def __init__(self, balances: Sequence[int]) -> None:
        self.initial = tuple(balances)

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Any, op: Operation) -> Sequence[Hashable]:
        if op.input[0] == "transfer":
            _, src, dst, amount = op.input
            new = list(state)
            new[src] -= amount
            new[dst] += amount
            return [tuple(new)]
        return [state] if not op.answered or tuple(op.output) == state else []

    def prune(self, ops: list[Operation]) -> list[Operation]:
        # A transfer's effect shows only in sums: an unanswered one stays in the search.
        return [op for op in ops if op.answered or op.input[0] == "transfer"]

    def describe(self, state: Any) -> str:
        return f"balances {state!r}"


# ---- the search ----------------------------------------------------------------------------------


def check(model: Model, history: Sequence[Operation], *, max_steps: int = 2_000_000) -> Verdict:
    """Whether ``history`` is linearizable under ``model`` (see the module docstring)."""
    ops = model.prune(list(history))
    n = len(ops)
    # Nodes: 0 is the head, 2n+1 the tail; call of op i is 2i+1, its return 2i+2. At equal
    # times calls sort first: operations that touch in time count as concurrent.
    events = sorted(
        [(op.invoke, 0, 2 * i + 1) for i, op in enumerate(ops)]
        + [(math.inf if op.complete is None else op.complete, 1, 2 * i + 2)
           for i, op in enumerate(ops)]
    )  # fmt: skip
    tail = 2 * n + 1
    nxt = [tail] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    last = 0
    for _, _, node in events:
        nxt[last], prv[node] = node, last
        last = node
    nxt[last], prv[tail] = tail, last
    rng = random.Random(0x11E)
    zobrist = [rng.getrandbits(128) for _ in range(n)]

    def lift(i: int) -> None:
        for node in (2 * i + 1, 2 * i + 2):
            nxt[prv[node]], prv[nxt[node]] = nxt[node], prv[node]

    def unlift(i: int) -> None:
        for node in (2 * i + 2, 2 * i + 1):
            nxt[prv[node]] = prv[nxt[node]] = node

    state: Any = model.init()
    key = 0
    seen: set[tuple[int, Any]] = {(0, state)}
    stack: list[tuple[int, Any, int]] = []
    entry, first_alt, steps = nxt[0], 0, 0
    deepest, blocked, blocked_state = -1, -1, state
    while entry != tail:
        steps += 1
        if steps > max_steps:
            return Verdict(TOO_LARGE, n, steps, f"gave up after {max_steps} steps; "
                           f"{deepest + 1} operations linearized at most")  # fmt: skip
        if entry % 2 == 1:  # a call: try to take its operation next
            i = entry // 2
            afters = model.step(state, ops[i])
            taken = False
            for alt in range(first_alt, len(afters)):
                after, after_key = afters[alt], key ^ zobrist[i]
                if (after_key, after) in seen:
                    continue
                seen.add((after_key, after))
                stack.append((i, state, alt))
                state, key = after, after_key
                lift(i)
                entry, taken = nxt[0], True
                break
            first_alt = 0
            if not taken:
                entry = nxt[entry]
            continue
        # The return of an operation not taken yet: it had to take effect before now.
        if len(stack) > deepest:
            deepest, blocked, blocked_state = len(stack), entry // 2 - 1, state
        if not stack:
            detail = _failure(model, ops[blocked], deepest, blocked_state)
            return Verdict(NOT_LINEARIZABLE, n, steps, detail)
        i, state, alt = stack.pop()
        key ^= zobrist[i]
        unlift(i)
        entry, first_alt = 2 * i + 1, alt + 1  # the same call, with its next possible state
    return Verdict(LINEARIZABLE, n, steps)


def _failure(model: Model, op: Operation, prefix: int, state: Any) -> str:
    return (
        f"the longest order that fits takes {prefix} operations, leaving "
        f"{model.describe(state)}; then {op}, which must come next (it has returned), "
        f"does not fit"
    )

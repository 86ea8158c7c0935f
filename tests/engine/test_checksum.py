"""Rolling database checksums (:mod:`litecluster.engine.checksum`)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.engine.checksum import PageHashes, page_hash, pages_equal, zero_page

PS = 512
Pages = dict[int, bytes]

# What a transaction does to a database: its new size and the pages it writes (all within the
# new size), exactly what capture and apply feed to HashTxn.
Txn = tuple[int, dict[int, int]]


def page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PS)


def as_list(pages: Pages) -> list[tuple[int, bytes]]:
    return sorted(pages.items())


def dense(pages: Pages, size: int) -> Pages:
    """Pages 1..size, missing ones as zero pages."""
    return {p: pages.get(p, zero_page(PS)) for p in range(1, size + 1)}


@st.composite
def txns(draw: st.DrawFn) -> Txn:
    size = draw(st.integers(0, 12))
    written = draw(st.dictionaries(st.integers(1, max(size, 1)), st.integers(0, 50), max_size=6))
    return size, {p: s for p, s in written.items() if p <= size}


@st.composite
def history(draw: st.DrawFn) -> tuple[Pages, list[list[Txn]]]:
    start_size = draw(st.integers(0, 10))
    seeds = draw(st.lists(st.integers(0, 50), min_size=start_size, max_size=start_size))
    start = {i + 1: page(s) for i, s in enumerate(seeds)}
    batches = draw(st.lists(st.lists(txns(), min_size=1, max_size=4), min_size=1, max_size=4))
    return start, batches


@settings(max_examples=300, deadline=None)
@given(h=history())
def test_incremental_equals_full_rescan(h: tuple[Pages, list[list[Txn]]]) -> None:
    start, batches = h
    hashes = PageHashes.from_pages(PS, as_list(start))
    model = dict(start)
    size = len(start)
    for batch in batches:  # one HashTxn per batch of transactions, like apply
        before = hashes.checksum
        txn = hashes.begin()
        for new_size, written in batch:
            model = {p: d for p, d in model.items() if p <= new_size}
            txn.resize(new_size, written=written.keys())
            for pgno, seed in sorted(written.items()):
                txn.set_page(pgno, page_hash(pgno, page(seed)))
                model[pgno] = page(seed)
            size = new_size
            want = PageHashes.from_pages(PS, as_list(dense(model, size)))
            assert txn.checksum == want.checksum
        assert hashes.checksum == before  # nothing changes until commit
        txn.commit()
        want = PageHashes.from_pages(PS, as_list(dense(model, size)))
        assert hashes.checksum == want.checksum
        assert list(hashes.hashes) == list(want.hashes)
        assert hashes.page_count == size


@settings(max_examples=100, deadline=None)
@given(h=history())
def test_abandoned_txn_changes_nothing(h: tuple[Pages, list[list[Txn]]]) -> None:
    start, batches = h
    hashes = PageHashes.from_pages(PS, as_list(start))
    snapshot = (hashes.checksum, list(hashes.hashes))
    txn = hashes.begin()
    for new_size, written in batches[0]:
        txn.resize(new_size, written=written.keys())
        for pgno, seed in written.items():
            txn.set_page(pgno, page_hash(pgno, page(seed)))
    assert (hashes.checksum, list(hashes.hashes)) == snapshot


def test_from_pages_fills_gaps_with_zero_pages() -> None:
    sparse = PageHashes.from_pages(PS, [(1, page(1)), (4, page(4))])
    full = PageHashes.from_pages(
        PS, [(1, page(1)), (2, zero_page(PS)), (3, zero_page(PS)), (4, page(4))]
    )
    assert sparse.checksum == full.checksum
    assert sparse.page_count == 4


def test_empty_database_checksum_is_zero() -> None:
    assert PageHashes.from_pages(PS, []).checksum == 0


def test_checksum_is_xor_of_page_hashes() -> None:
    pages = [(1, page(1)), (2, page(2)), (3, page(3))]
    expect = 0
    for pgno, data in pages:
        expect ^= page_hash(pgno, data)
    assert PageHashes.from_pages(PS, pages).checksum == expect


def test_copy_is_independent() -> None:
    a = PageHashes.from_pages(PS, [(1, page(1)), (2, page(2))])
    b = a.copy()
    txn = b.begin()
    txn.set_page(2, page_hash(2, page(9)))
    txn.commit()
    assert a.checksum != b.checksum
    assert a.checksum == PageHashes.from_pages(PS, [(1, page(1)), (2, page(2))]).checksum


# ---- page 1 masking and page numbers -----------------------------------------------------------

MASKED = set(range(24, 28)) | set(range(92, 100))


def test_page1_per_copy_fields_are_masked_and_nothing_else() -> None:
    base = page(100)
    h = page_hash(1, base)
    for off in range(PS):
        changed = bytearray(base)
        changed[off] ^= 0x01
        if off in MASKED:
            assert page_hash(1, bytes(changed)) == h, off
            assert pages_equal(1, base, bytes(changed)), off
        else:
            assert page_hash(1, bytes(changed)) != h, off
            assert not pages_equal(1, base, bytes(changed)), off


def test_all_masked_bytes_at_once() -> None:
    base = bytearray(page(101))
    other = bytearray(base)
    for off in MASKED:
        other[off] = 0xFF - other[off]
    assert page_hash(1, bytes(other)) == page_hash(1, bytes(base))


def test_masking_applies_only_to_page_one() -> None:
    base = page(102)
    for pgno in (2, 3, 1000):
        for off in sorted(MASKED):
            changed = bytearray(base)
            changed[off] ^= 0x80
            assert page_hash(pgno, bytes(changed)) != page_hash(pgno, base), (pgno, off)
            assert not pages_equal(pgno, base, bytes(changed))


def test_page_number_is_part_of_the_hash() -> None:
    data = page(103)
    hashes = {page_hash(p, data) for p in range(1, 200)}
    assert len(hashes) == 199
    zero = zero_page(PS)
    assert len({page_hash(p, zero) for p in range(1, 200)}) == 199


def test_swapping_two_pages_changes_the_checksum() -> None:
    a, b = page(1), page(2)
    one = PageHashes.from_pages(PS, [(1, page(0)), (2, a), (3, b)])
    two = PageHashes.from_pages(PS, [(1, page(0)), (2, b), (3, a)])
    assert one.checksum != two.checksum


def test_duplicate_pages_do_not_cancel_out() -> None:
    """XOR of equal hashes would cancel; seeding with the page number prevents it."""
    same = page(5)
    assert PageHashes.from_pages(PS, [(1, page(0)), (2, same), (3, same)]).checksum != (
        PageHashes.from_pages(PS, [(1, page(0))]).checksum
    )

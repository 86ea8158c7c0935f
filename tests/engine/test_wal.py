"""The WAL reader (:mod:`litecluster.engine.wal`) against WAL files written by real SQLite.

Every WAL here is produced at test time by sqlean with ``wal_autocheckpoint=0`` (or built by hand
where SQLite cannot produce it on this machine, as for the big-endian checksum magic), then
copied and damaged. The reader's contract: whole committed transactions, in order; anything that
does not verify is the end of the valid WAL, never an error and never yielded.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.engine.sqlite import connect
from litecluster.engine.wal import (
    FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    WAL_MAGIC_BE,
    WAL_MAGIC_LE,
    WalHeader,
    WalTransaction,
    checksum_reference,
    iter_transactions,
    parse_header,
    read_header,
    read_wal,
    resume_checksum,
    wal_checksum,
)

U32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
Pages = dict[int, bytes]


# ---- building WAL files with real SQLite -----------------------------------------------------


def open_wal_db(path: Path, page_size: int) -> Any:
    """A new database in WAL mode whose WAL is empty (everything so far is in the main file)."""
    conn = connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    assert os.path.getsize(f"{path}-wal") == 0
    return conn


def db_pages(conn: Any) -> Pages:
    """Every page of the database as ``conn`` sees it now."""
    return {int(p): bytes(d) for p, d in conn.execute("SELECT pgno, data FROM sqlite_dbpage")}


def file_pages(path: Path, page_size: int) -> Pages:
    raw = path.read_bytes()
    return {i // page_size + 1: raw[i : i + page_size] for i in range(0, len(raw), page_size)}


def replay(base: Pages, tx: WalTransaction) -> Pages:
    state = dict(base)
    state.update(tx.pages)
    return {p: d for p, d in state.items() if p <= tx.db_size}


@dataclass
class Generated:
    conn: Any
    db: Path
    wal: Path
    page_size: int
    base: Pages
    states: list[Pages]
    """The database after each committed transaction, as SQLite reports it."""

    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.page_size


def _workload(conn: Any, page_size: int) -> Iterator[None]:
    """Transactions of many shapes; yields after each commit."""
    rnd = random.Random(7)
    conn.execute("INSERT INTO t(v) VALUES (x'01')")
    yield
    conn.execute("BEGIN")
    for _ in range(40):
        conn.execute("INSERT INTO t(v) VALUES (?)", (rnd.randbytes(rnd.randint(10, 300)),))
    conn.execute("COMMIT")
    yield
    conn.execute("INSERT INTO t(v) VALUES (?)", (rnd.randbytes(page_size * 5),))  # overflow chain
    yield
    conn.execute("UPDATE t SET v = randomblob(50) WHERE id % 3 = 0")
    yield
    conn.execute("CREATE INDEX t_v ON t(v)")
    yield
    conn.execute("DELETE FROM t WHERE id > 10")
    yield
    conn.execute("VACUUM")  # the database shrinks: the commit frame carries the smaller size
    yield
    # A transaction bigger than the page cache: pages are spilled to the WAL before the commit
    # and some may be written again later in the same transaction (then the WAL can hold two
    # frames of one page in one transaction; the hand-built WALs below always do).
    conn.execute("PRAGMA cache_size=4")
    conn.execute("BEGIN")
    for i in range(60):
        conn.execute("INSERT INTO t(v) VALUES (?)", (rnd.randbytes(200),))
        if i % 10 == 9:
            conn.execute("UPDATE t SET v = randomblob(20) WHERE id <= 3")
    conn.execute("COMMIT")
    conn.execute("PRAGMA cache_size=-2000")
    yield
    conn.execute("DROP INDEX t_v")
    yield


def generate(tmp: Path, page_size: int = 512) -> Generated:
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "gen.db"
    conn = open_wal_db(db, page_size)
    base = file_pages(db, page_size)
    states = []
    for _ in _workload(conn, page_size):
        states.append(db_pages(conn))
    return Generated(conn, db, Path(f"{db}-wal"), page_size, base, states)


@pytest.fixture
def gen(tmp_path: Path) -> Iterator[Generated]:
    g = generate(tmp_path / "gen")
    yield g
    g.conn.close()


def frames_in(wal_len: int, page_size: int) -> int:
    """Whole frames present in a WAL file of ``wal_len`` bytes."""
    return max(0, (wal_len - WAL_HEADER_SIZE) // (FRAME_HEADER_SIZE + page_size))


def same_txs(got: list[WalTransaction], want: list[WalTransaction]) -> bool:
    return [(t.pages, t.db_size, t.first_frame, t.commit_frame) for t in got] == [
        (t.pages, t.db_size, t.first_frame, t.commit_frame) for t in want
    ]


# ---- building WAL files by hand ----------------------------------------------------------------


def build_wal(
    frames: list[tuple[int, int, bytes]],
    *,
    page_size: int,
    big_endian: bool,
    salts: tuple[int, int] = (0x11223344, 0x55667788),
    ckpt_seq: int = 0,
    frame_salts: tuple[int, int] | None = None,
    checksum_big_endian: bool | None = None,
) -> bytes:
    """A WAL file as the spec describes it, checksums computed with :func:`checksum_reference`.

    ``frame_salts`` and ``checksum_big_endian`` override what the frames carry, to build frames
    that are valid in every respect but one.
    """
    magic = WAL_MAGIC_BE if big_endian else WAL_MAGIC_LE
    be = big_endian if checksum_big_endian is None else checksum_big_endian
    head = struct.pack(">IIIIII", magic, 3007000, page_size, ckpt_seq, *salts)
    s = checksum_reference(head, 0, 0, big_endian)
    out = [head, struct.pack(">II", *s)]
    for pgno, commit, page in frames:
        assert len(page) == page_size
        fh = struct.pack(">II", pgno, commit)
        s = checksum_reference(fh, *s, be)
        s = checksum_reference(page, *s, be)
        out += [fh, struct.pack(">IIII", *(frame_salts or salts), *s), page]
    return b"".join(out)


def split_frames(raw: bytes, page_size: int) -> list[tuple[int, int, bytes]]:
    fs = FRAME_HEADER_SIZE + page_size
    out = []
    for off in range(WAL_HEADER_SIZE, len(raw) - fs + 1, fs):
        pgno, commit = struct.unpack_from(">II", raw, off)
        out.append((pgno, commit, raw[off + FRAME_HEADER_SIZE : off + fs]))
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- committed transactions ------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_read_wal_yields_every_commit_in_order_with_pages_and_size(
    tmp_path: Path, page_size: int
) -> None:
    g = generate(tmp_path, page_size)
    try:
        header, txs = read_wal(g.wal)
        assert header is not None
        assert header.page_size == page_size
        assert len(txs) == len(g.states)
        state = g.base
        next_frame = 1
        for i, (tx, want) in enumerate(zip(txs, g.states, strict=True)):
            assert tx.first_frame == next_frame, i
            assert tx.commit_frame >= tx.first_frame
            next_frame = tx.commit_frame + 1
            assert tx.db_size == len(want) == max(want), i
            state = replay(state, tx)
            assert state == want, f"transaction {i} does not reproduce the database"
        # Nothing is left over: the last commit frame is the last frame of the file.
        assert txs[-1].commit_frame == frames_in(g.wal.stat().st_size, page_size)
        # The VACUUM shrank the database and the reader reported the smaller size.
        assert any(b.db_size < a.db_size for a, b in itertools.pairwise(txs))
    finally:
        g.conn.close()


def test_hand_built_wal_is_byte_identical_to_sqlite(gen: Generated) -> None:
    """The test's own WAL builder writes exactly what SQLite writes (so the big-endian WALs built
    with it below are trustworthy)."""
    raw = gen.wal.read_bytes()
    header = parse_header(raw)
    assert header is not None
    assert header.magic == WAL_MAGIC_LE  # this machine is little-endian
    rebuilt = build_wal(
        split_frames(raw, gen.page_size),
        page_size=gen.page_size,
        big_endian=False,
        salts=(header.salt1, header.salt2),
        ckpt_seq=header.ckpt_seq,
    )
    assert rebuilt == raw


def test_resume_after_any_commit_yields_the_rest(gen: Generated) -> None:
    _, txs = read_wal(gen.wal)
    header = read_header(gen.wal)
    assert header is not None
    with open(gen.wal, "rb") as f:
        assert resume_checksum(f, header, 0) == (header.checksum1, header.checksum2)
        for i, tx in enumerate(txs):
            ck = resume_checksum(f, header, tx.commit_frame)
            assert ck == tx.checksum
            rest = list(iter_transactions(f, header, tx.commit_frame, ck))
            assert same_txs(rest, txs[i + 1 :])
        assert resume_checksum(f, header, txs[-1].commit_frame + 1) is None


def test_missing_or_empty_wal_yields_nothing(tmp_path: Path) -> None:
    assert read_wal(tmp_path / "absent-wal") == (None, [])
    assert read_header(tmp_path / "absent-wal") is None
    assert read_wal(write(tmp_path / "empty-wal", b"")) == (None, [])


# ---- the fast checksum ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2048).map(lambda b: b[: len(b) // 8 * 8]),
    s0=U32,
    s1=U32,
    big_endian=st.booleans(),
)
def test_fast_checksum_equals_reference(data: bytes, s0: int, s1: int, big_endian: bool) -> None:
    assert wal_checksum(data, s0, s1, big_endian) == checksum_reference(data, s0, s1, big_endian)


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=72, max_size=9000).map(lambda b: b[: len(b) // 8 * 8]),
    s0=U32,
    s1=U32,
    big_endian=st.booleans(),
)
def test_fast_checksum_equals_reference_on_long_inputs(
    data: bytes, s0: int, s1: int, big_endian: bool
) -> None:
    assert wal_checksum(data, s0, s1, big_endian) == checksum_reference(data, s0, s1, big_endian)


@pytest.mark.parametrize("size", [8, 24, 512, 4096, 4096 + 24, 65536])
@pytest.mark.parametrize("big_endian", [False, True])
def test_fast_checksum_equals_reference_on_page_sizes(size: int, big_endian: bool) -> None:
    rnd = random.Random(size)
    for fill in (rnd.randbytes(size), b"\xff" * size):
        s0, s1 = rnd.getrandbits(32), rnd.getrandbits(32)
        assert wal_checksum(fill, s0, s1, big_endian) == checksum_reference(
            fill, s0, s1, big_endian
        )


def test_checksum_byte_order_matters() -> None:
    data = bytes(range(16))
    assert checksum_reference(data, 0, 0, True) != checksum_reference(data, 0, 0, False)


# ---- damage is the end of the WAL ------------------------------------------------------------


def check_prefix(path: Path, clean: list[WalTransaction], expect_count: int) -> None:
    header, txs = read_wal(path)
    assert header is not None
    assert same_txs(txs, clean[:expect_count]), (
        f"expected the first {expect_count} transactions, got {len(txs)}"
    )


def test_truncation_mid_frame_and_mid_header_ends_the_wal(gen: Generated, tmp_path: Path) -> None:
    raw = gen.wal.read_bytes()
    _, clean = read_wal(gen.wal)
    fs = gen.frame_size()
    cuts: set[int] = set()
    for tx in clean:
        for frame in (tx.first_frame, tx.commit_frame):
            start = WAL_HEADER_SIZE + (frame - 1) * fs
            cuts.update(
                {start, start + 1, start + 7, start + 23, start + 24, start + 300, start + fs - 1}
            )
            cuts.add(start + fs)  # exactly at the end of the frame: nothing is torn
    for cut in sorted(cuts):
        path = write(tmp_path / "torn-wal", raw[:cut])
        whole = frames_in(cut, gen.page_size)
        expect = sum(1 for tx in clean if tx.commit_frame <= whole)
        check_prefix(path, clean, expect)


def test_flipped_byte_in_a_frame_ends_the_wal_at_that_frame(gen: Generated, tmp_path: Path) -> None:
    raw = gen.wal.read_bytes()
    _, clean = read_wal(gen.wal)
    fs = gen.frame_size()
    n_frames = clean[-1].commit_frame
    rnd = random.Random(1)
    offsets: set[int] = set()
    for frame in range(1, n_frames + 1):
        start = WAL_HEADER_SIZE + (frame - 1) * fs
        if any(frame in (tx.first_frame, tx.commit_frame) for tx in clean):
            offsets.update(range(start, start + FRAME_HEADER_SIZE))  # every header byte
            offsets.update((start + FRAME_HEADER_SIZE, start + fs - 1))  # first, last page byte
        else:
            offsets.add(start + rnd.randrange(FRAME_HEADER_SIZE))
        offsets.add(start + FRAME_HEADER_SIZE + rnd.randrange(gen.page_size))
    for off in sorted(offsets):
        damaged = bytearray(raw)
        damaged[off] ^= 1 << rnd.randrange(8)
        path = write(tmp_path / "flip-wal", bytes(damaged))
        frame = (off - WAL_HEADER_SIZE) // fs + 1
        expect = sum(1 for tx in clean if tx.commit_frame < frame)
        check_prefix(path, clean, expect)


def test_every_header_byte_flip_yields_nothing(gen: Generated, tmp_path: Path) -> None:
    raw = gen.wal.read_bytes()
    for off in range(WAL_HEADER_SIZE):
        for bit in (0, 7):
            damaged = bytearray(raw)
            damaged[off] ^= 1 << bit
            path = write(tmp_path / "hdr-wal", bytes(damaged))
            assert read_wal(path) == (None, []), (off, bit)
            assert parse_header(bytes(damaged)) is None
    for cut in (1, 16, WAL_HEADER_SIZE - 1):
        assert read_wal(write(tmp_path / "short-wal", raw[:cut])) == (None, [])


def test_garbage_after_the_last_commit_is_ignored(gen: Generated, tmp_path: Path) -> None:
    raw = gen.wal.read_bytes()
    _, clean = read_wal(gen.wal)
    fs = gen.frame_size()
    for tail in (bytes(fs), random.Random(3).randbytes(fs * 2), b"\xff" * 100):
        check_prefix(write(tmp_path / "tail-wal", raw + tail), clean, len(clean))


def test_frames_with_stale_salts_after_a_restart_are_not_read(tmp_path: Path) -> None:
    page_size = 512
    db = tmp_path / "db"
    conn = open_wal_db(db, page_size)
    wal = Path(f"{db}-wal")
    try:
        for i in range(10):
            conn.execute("INSERT INTO t(v) VALUES (randomblob(?))", (300 + i,))
        old_header = read_header(wal)
        assert old_header is not None
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        assert busy == 0
        assert frames == done > 0
        conn.execute("INSERT INTO t(v) VALUES (x'42')")  # restarts the WAL from frame 1
        want = db_pages(conn)
        header, txs = read_wal(wal)
        assert header is not None
        assert (header.salt1, header.salt2) != (old_header.salt1, old_header.salt2)
        assert len(txs) == 1
        # Precondition of the test: old-generation frames still follow the new commit frame.
        raw = wal.read_bytes()
        nxt = WAL_HEADER_SIZE + txs[0].commit_frame * (FRAME_HEADER_SIZE + page_size)
        assert len(raw) >= nxt + FRAME_HEADER_SIZE + page_size
        assert struct.unpack_from(">II", raw, nxt + 8) == (old_header.salt1, old_header.salt2)
        state = replay(file_pages(db, page_size), txs[0])
        assert state == want
    finally:
        conn.close()


def test_salt_mismatch_alone_ends_the_wal() -> None:
    """Frames whose checksums chain correctly but that carry other salts are not read."""
    page_size = 512
    rnd = random.Random(5)
    frames = [(1, 0, rnd.randbytes(page_size)), (2, 2, rnd.randbytes(page_size))]
    good = build_wal(frames, page_size=page_size, big_endian=False)
    header = parse_header(good)
    assert header is not None
    bad = build_wal(frames, page_size=page_size, big_endian=False, frame_salts=(1, 2))
    for data, expect in ((good, 1), (bad, 0)):
        with TmpWal(data) as path:
            assert len(read_wal(path)[1]) == expect


def test_uncommitted_spilled_transaction_is_not_read(tmp_path: Path) -> None:
    page_size = 512
    db = tmp_path / "db"
    conn = open_wal_db(db, page_size)
    wal = Path(f"{db}-wal")
    try:
        conn.execute("INSERT INTO t(v) VALUES (randomblob(1000))")
        conn.execute("INSERT INTO t(v) VALUES (randomblob(1000))")
        committed = db_pages(conn)
        _, before = read_wal(wal)
        assert len(before) == 2
        conn.execute("PRAGMA cache_size=4")
        conn.execute("BEGIN")
        for _ in range(300):
            conn.execute("INSERT INTO t(v) VALUES (randomblob(300))")
        size_in_txn = wal.stat().st_size
        conn.execute("ROLLBACK")
        # Precondition: the big transaction spilled frames into the WAL before rolling back.
        committed_end = WAL_HEADER_SIZE + before[-1].commit_frame * (FRAME_HEADER_SIZE + page_size)
        assert size_in_txn > committed_end + 10 * (FRAME_HEADER_SIZE + page_size)
        _, txs = read_wal(wal)
        assert same_txs(txs, before)
        state = file_pages(db, page_size)
        for tx in txs:
            state = replay(state, tx)
        assert state == committed

        # A later, shorter transaction overwrites the start of the spilled frames; the spilled
        # frames after it carry the same salts but break the checksum chain.
        conn.execute("PRAGMA cache_size=-2000")
        conn.execute("INSERT INTO t(v) VALUES (x'01')")
        want = db_pages(conn)
        _, txs = read_wal(wal)
        assert len(txs) == 3
        assert same_txs(txs[:2], before)
        assert wal.stat().st_size > WAL_HEADER_SIZE + txs[-1].commit_frame * (
            FRAME_HEADER_SIZE + page_size
        )
        assert replay(state, txs[-1]) == want
    finally:
        conn.close()


# ---- big-endian checksums ------------------------------------------------------------------------


class TmpWal:
    """A throwaway file holding ``data`` (read_wal takes a path)."""

    def __init__(self, data: bytes) -> None:
        self.dir = tempfile.mkdtemp(prefix="lc-wal-")
        self.path = Path(self.dir) / "x-wal"
        self.path.write_bytes(data)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir)


def _synthetic_frames(page_size: int, seed: int) -> list[tuple[int, int, bytes]]:
    rnd = random.Random(seed)
    return [
        (1, 0, rnd.randbytes(page_size)),
        (2, 0, rnd.randbytes(page_size)),
        (3, 3, rnd.randbytes(page_size)),  # commit: 3 pages
        (2, 0, rnd.randbytes(page_size)),
        (2, 3, rnd.randbytes(page_size)),  # commit: page 2 written twice, the last image wins
        (4, 0, rnd.randbytes(page_size)),  # never committed
    ]


def test_big_endian_wal_is_read(tmp_path: Path) -> None:
    page_size = 1024
    frames = _synthetic_frames(page_size, 1)
    path = write(tmp_path / "be-wal", build_wal(frames, page_size=page_size, big_endian=True))
    header, txs = read_wal(path)
    assert header is not None
    assert header.magic == WAL_MAGIC_BE
    assert header.big_endian
    assert [(t.db_size, t.first_frame, t.commit_frame) for t in txs] == [(3, 1, 3), (3, 4, 5)]
    assert txs[0].pages == {1: frames[0][2], 2: frames[1][2], 3: frames[2][2]}
    assert txs[1].pages == {2: frames[4][2]}


@pytest.mark.parametrize("big_endian", [False, True])
def test_checksums_in_the_wrong_byte_order_do_not_verify(tmp_path: Path, big_endian: bool) -> None:
    page_size = 512
    frames = _synthetic_frames(page_size, 2)
    wrong = build_wal(
        frames, page_size=page_size, big_endian=big_endian, checksum_big_endian=not big_endian
    )
    header, txs = read_wal(write(tmp_path / "x-wal", wrong))
    assert header is not None  # the header itself is fine
    assert txs == []


def test_big_endian_damage_ends_the_wal(tmp_path: Path) -> None:
    page_size = 512
    frames = _synthetic_frames(page_size, 3)
    raw = build_wal(frames, page_size=page_size, big_endian=True)
    fs = FRAME_HEADER_SIZE + page_size
    # A flip in frame 4 (first frame of the second transaction) keeps only the first one.
    damaged = bytearray(raw)
    damaged[WAL_HEADER_SIZE + 3 * fs + FRAME_HEADER_SIZE + 10] ^= 0x20
    _, txs = read_wal(write(tmp_path / "a-wal", bytes(damaged)))
    assert [t.commit_frame for t in txs] == [3]
    # Cut inside the second commit frame.
    _, txs = read_wal(write(tmp_path / "b-wal", raw[: WAL_HEADER_SIZE + 4 * fs + 30]))
    assert [t.commit_frame for t in txs] == [3]
    # A flipped byte in the big-endian header: nothing at all.
    damaged = bytearray(raw)
    damaged[13] ^= 1
    assert read_wal(write(tmp_path / "c-wal", bytes(damaged))) == (None, [])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    big_endian=st.booleans(),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5),
)
def test_hand_built_wals_read_back(seed: int, big_endian: bool, sizes: list[int]) -> None:
    """Any sequence of committed transactions, in either byte order, reads back exactly."""
    page_size = 512
    rnd = random.Random(seed)
    frames: list[tuple[int, int, bytes]] = []
    want: list[tuple[Pages, int]] = []
    db_size = 0
    for n in sizes:
        pgnos = [rnd.randint(1, 8) for _ in range(n)]
        pages: Pages = {}
        db_size = max(db_size, *pgnos)
        for i, p in enumerate(pgnos):
            data = rnd.randbytes(page_size)
            pages[p] = data
            frames.append((p, db_size if i == n - 1 else 0, data))
        want.append((pages, db_size))
    raw = build_wal(frames, page_size=page_size, big_endian=big_endian, salts=(seed & 0xFFFF, 9))
    with TmpWal(raw) as path:
        header, txs = read_wal(path)
    assert isinstance(header, WalHeader)
    assert [(t.pages, t.db_size) for t in txs] == want

"""The transaction log (:mod:`litecluster.engine.txlog`): durability, recovery, damage and retention."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from litecluster.engine.record import FRAME_SIZE, TRAILER_SIZE, TxRecord, encode
from litecluster.engine.txlog import SEGMENT_HEADER_SIZE, TxLog, TxlogConfig, repair
from litecluster.engine.wal import WalMark
from litecluster.errors import ConfigError, TxidNotFoundError, TxlogCorruptError, TxlogError

PAGE = 512
SEC = 1_000_000_000
SMALL = TxlogConfig(segment_bytes=4096, retention_bytes=1 << 30, fsync=False)


def rec(txid: int, *, epoch: int = 1, ts: int | None = None, n_pages: int = 1) -> TxRecord:
    """A deterministic record of about 600 bytes per page (random pages do not compress)."""
    rnd = random.Random(txid)
    pgnos = sorted(rnd.sample(range(1, 1000), n_pages))
    return TxRecord(
        epoch=epoch,
        txid=txid,
        page_size=PAGE,
        db_size=1000,
        pre_checksum=rnd.getrandbits(64),
        post_checksum=rnd.getrandbits(64),
        timestamp_ns=txid * SEC if ts is None else ts,
        pages=tuple((p, rnd.randbytes(PAGE)) for p in pgnos),
        annotations=rnd.randbytes(rnd.randint(0, 40)),
        wal=WalMark(rnd.getrandbits(32), rnd.getrandbits(32), 1, txid),
    )


def segments(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.endswith(".txlog"))


def build(d: Path, n: int, config: TxlogConfig = SMALL, first: int = 1) -> list[TxRecord]:
    recs = [rec(t) for t in range(first, first + n)]
    with TxLog(d, config) as log:
        log.append_sync(recs)
    return recs


def read_all(log: TxLog) -> list[TxRecord]:
    if not log.first_txid:
        return []
    return list(log.read(log.first_txid))


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(start, end) of each record in a healthy segment file."""
    data = path.read_bytes()
    spans = []
    off = SEGMENT_HEADER_SIZE
    while off < len(data):
        body_len = int.from_bytes(data[off + 4 : off + 8], "big")
        end = off + FRAME_SIZE + body_len + TRAILER_SIZE
        spans.append((off, end))
        off = end
    return spans


def snapshot_dir(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "txlog"


# ---- append, sync, read ------------------------------------------------------------------------


def test_append_sync_read_from_any_txid(logdir: Path) -> None:
    recs = [rec(t) for t in range(1, 11)]
    with TxLog(logdir, TxlogConfig(fsync=True)) as log:
        assert (log.first_txid, log.last_txid, log.durable_txid) == (0, 0, 0)
        assert log.last() is None
        for r in recs:
            log.append(r)
        assert log.last_txid == 10
        assert log.durable_txid == 0
        assert list(log.read(1)) == []  # nothing is durable yet
        assert list(log.read(1, durable=False)) == recs
        assert log.sync() == 10
        assert log.durable_txid == 10
        for start in range(1, 11):
            assert list(log.read(start)) == recs[start - 1 :]
        assert list(log.read(3, 6)) == recs[2:6]
        assert list(log.read(11)) == []
        assert [log.get(t) for t in range(1, 11)] == recs
        assert log.last() == recs[-1]


def test_read_stops_at_durable(logdir: Path) -> None:
    recs = [rec(t) for t in range(1, 8)]
    with TxLog(logdir, SMALL) as log:
        log.append_sync(recs[:4])
        for r in recs[4:]:
            log.append(r)
        assert log.durable_txid == 4
        assert list(log.read(2)) == recs[1:4]
        assert list(log.read(2, 7)) == recs[1:4]
        assert list(log.read(5)) == []
        assert list(log.read(2, durable=False)) == recs[1:]
        assert log.get(7) == recs[6]  # get is not limited to durable records
        stats = log.stats()
        assert (stats.first_txid, stats.last_txid, stats.durable_txid) == (1, 7, 4)


def test_log_may_start_at_any_txid(logdir: Path) -> None:
    recs = build(logdir, 3, first=100)
    with TxLog(logdir, SMALL) as log:
        assert (log.first_txid, log.last_txid) == (100, 102)
        assert read_all(log) == recs
        with pytest.raises(TxidNotFoundError):
            log.get(99)


def test_segment_rollover(logdir: Path) -> None:
    recs = build(logdir, 30)
    segs = segments(logdir)
    assert len(segs) >= 5
    for p in segs:
        assert p.stat().st_size <= SMALL.segment_bytes
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs
        assert log.stats().segments == len(segs)
        assert log.stats().bytes == sum(p.stat().st_size for p in segs)
        for start in (1, 5, 6, 7, 19, 20):
            assert list(log.read(start)) == recs[start - 1 :]


def test_record_larger_than_a_segment_gets_its_own_segment(logdir: Path) -> None:
    big = rec(2, n_pages=12)
    assert len(encode(big)) > SMALL.segment_bytes
    with TxLog(logdir, SMALL) as log:
        log.append_sync([rec(1), big, rec(3)])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == [rec(1), big, rec(3)]
    assert len(segments(logdir)) == 3


def test_reopen_after_close_continues(logdir: Path) -> None:
    recs = build(logdir, 7)
    with TxLog(logdir, SMALL) as log:
        assert (log.first_txid, log.last_txid, log.durable_txid) == (1, 7, 7)
        assert read_all(log) == recs
        log.append_sync([rec(8), rec(9)])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == [*recs, rec(8), rec(9)]
        with pytest.raises(TxlogError):
            log.append(rec(10, epoch=0))  # the epoch of the last record survives a reopen


def test_append_rejects_txid_gap_and_epoch_going_backwards(logdir: Path) -> None:
    with TxLog(logdir, SMALL) as log:
        log.append_sync([rec(1, epoch=5), rec(2, epoch=5)])
        size = log.stats().bytes
        for bad in (rec(4, epoch=5), rec(2, epoch=5), rec(1, epoch=5), rec(3, epoch=4)):
            with pytest.raises(TxlogError) as info:
                log.append(bad)
            assert not isinstance(info.value, TxlogCorruptError)
        assert log.last_txid == 2
        assert log.stats().bytes == size
        log.append_sync([rec(3, epoch=6)])  # a newer epoch is fine
    with TxLog(logdir, SMALL) as log:
        assert [r.epoch for r in read_all(log)] == [5, 5, 6]


def test_get_or_read_outside_the_log_raises(logdir: Path) -> None:
    build(logdir, 20)
    with TxLog(logdir, TxlogConfig(segment_bytes=4096, retention_bytes=8192, fsync=False)) as log:
        log.enforce_retention(now_ns=13 * SEC)
        first = log.first_txid
        assert first > 1
        for txid in (0, 1, first - 1):
            with pytest.raises(TxidNotFoundError) as info:
                log.get(txid)
            assert info.value.context["first_txid"] == first
            with pytest.raises(TxidNotFoundError):
                list(log.read(txid))
        with pytest.raises(TxidNotFoundError):
            log.get(21)
        assert log.get(first).txid == first


@pytest.mark.parametrize(
    "kwargs",
    [
        {"segment_bytes": 4095},
        {"segment_bytes": 0},
        {"segment_bytes": 8192, "retention_bytes": 8191},
        {"retention_seconds": 0},
        {"retention_seconds": -1.0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TxlogConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_the_smallest_valid_values() -> None:
    cfg = TxlogConfig(segment_bytes=4096, retention_bytes=4096, retention_seconds=0.001)
    assert cfg.segment_bytes == 4096


# ---- locking and read-only mode ----------------------------------------------------------------


def test_second_writer_is_refused(logdir: Path) -> None:
    log = TxLog(logdir, SMALL)
    try:
        with pytest.raises(TxlogError) as info:
            TxLog(logdir, SMALL)
        assert info.value.context["dir"] == str(logdir)
        log.append_sync([rec(1)])
    finally:
        log.close()
    with TxLog(logdir, SMALL) as again:  # the lock goes with the first writer
        assert again.last_txid == 1


def test_readonly_reads_beside_a_writer_and_never_writes(logdir: Path) -> None:
    recs = build(logdir, 6)
    with TxLog(logdir, SMALL) as writer:
        ro = TxLog(logdir, readonly=True)
        try:
            assert read_all(ro) == recs
            with pytest.raises(TxlogError):
                ro.append(rec(7))
        finally:
            ro.close()
        writer.append_sync([rec(7)])


@pytest.mark.parametrize("damage", ["torn-tail", "zero-tail", "empty-segment"])
def test_readonly_never_modifies_files(logdir: Path, damage: str) -> None:
    recs = build(logdir, 9)
    last = segments(logdir)[-1]
    start, end = record_spans(last)[-1]
    data = last.read_bytes()
    if damage == "torn-tail":
        last.write_bytes(data[: (start + end) // 2])
        recs = recs[:-1]
    elif damage == "zero-tail":
        last.write_bytes(data + bytes(5000))
    else:  # a crash right after creating a new segment file
        (logdir / f"{10:020d}.txlog").write_bytes(b"")
    (logdir / "LOCK").unlink()
    before = snapshot_dir(logdir)
    with TxLog(logdir, readonly=True) as ro:
        assert read_all(ro) == recs
        assert ro.last_txid == recs[-1].txid
    assert snapshot_dir(logdir) == before
    assert not (logdir / "LOCK").exists()


def test_readonly_on_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(TxlogError):
        TxLog(tmp_path / "nope", readonly=True)
    assert not (tmp_path / "nope").exists()


# ---- crash recovery: torn and zero-filled tails ------------------------------------------------


def _cut_and_check(
    logdir: Path, last: Path, data: bytes, cut: int, start: int, recs: list[TxRecord]
) -> None:
    last.write_bytes(data[:cut])
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == recs[-1].txid - 1, cut
        assert last.stat().st_size == start, cut
        assert read_all(log) == recs[:-1], cut
        log.append_sync([recs[-1]])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs, cut
    # Leave the segment as the test found it (an append may have rolled over).
    for p in segments(logdir):
        if p.name > last.name:
            p.unlink()


@pytest.mark.parametrize("n", [3, 14], ids=["one-segment", "many-segments"])
def test_torn_tail_is_cut_at_every_offset(
    logdir: Path, n: int, caplog: pytest.LogCaptureFixture
) -> None:
    recs = build(logdir, n)
    last = segments(logdir)[-1]
    data = last.read_bytes()
    start, end = record_spans(last)[-1]
    assert end == len(data)
    caplog.set_level(logging.WARNING, logger="litecluster.engine.txlog")
    for cut in range(start + 1, end):
        caplog.clear()
        _cut_and_check(logdir, last, data, cut, start, recs)
        cuts = [r for r in caplog.records if "torn_tail_cut" in r.getMessage()]
        assert len(cuts) == 1, cut
        assert str(last) in cuts[0].getMessage()
        assert f"offset={start}" in cuts[0].getMessage()


def test_torn_first_record_of_a_new_segment(logdir: Path) -> None:
    """A crash while appending the first record of a fresh segment leaves header + partial."""
    recs = build(logdir, 20)
    last = segments(logdir)[-1]
    spans = record_spans(last)
    data = last.read_bytes()
    first_start, first_end = spans[0]
    last.write_bytes(data[: first_start + (first_end - first_start) // 3])
    kept = recs[: len(recs) - len(spans)]
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == kept[-1].txid
        assert read_all(log) == kept
        log.append_sync(recs[len(kept) :])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs


def test_epoch_survives_reopen_when_the_last_segment_holds_no_record(logdir: Path) -> None:
    """The epoch fence must come from the newest record, even when the newest segment lost its
    only (torn) record in a crash."""
    with TxLog(logdir, SMALL) as log:
        log.append_sync([rec(t, epoch=5) for t in range(1, 8)])
    last = segments(logdir)[-1]
    spans = record_spans(last)
    assert len(spans) == 1  # precondition: the last segment holds one record
    start, end = spans[0]
    last.write_bytes(last.read_bytes()[: start + (end - start) // 2])
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == 6
        with pytest.raises(TxlogError):
            log.append(rec(7, epoch=4))
        log.append_sync([rec(7, epoch=5)])


def test_empty_last_segment_is_removed(logdir: Path) -> None:
    recs = build(logdir, 5)
    empty = logdir / f"{6:020d}.txlog"
    empty.write_bytes(b"")
    with TxLog(logdir, SMALL) as log:
        assert not empty.exists()
        assert read_all(log) == recs
        log.append_sync([rec(6)])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == [*recs, rec(6)]


@pytest.mark.parametrize("zeros", [1, FRAME_SIZE - 1, FRAME_SIZE, 700, 8192])
def test_zero_filled_tail_is_cut(
    logdir: Path, zeros: int, caplog: pytest.LogCaptureFixture
) -> None:
    recs = build(logdir, 9)
    last = segments(logdir)[-1]
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(bytes(zeros))
    caplog.set_level(logging.WARNING, logger="litecluster.engine.txlog")
    with TxLog(logdir, SMALL) as log:
        assert last.stat().st_size == size
        assert read_all(log) == recs
        log.append_sync([rec(10)])
    assert any("torn_tail_cut" in r.getMessage() for r in caplog.records)
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == [*recs, rec(10)]


@pytest.mark.parametrize("extra", [0, 4096], ids=["at-eof", "zeros-after"])
@pytest.mark.parametrize("keep", [FRAME_SIZE + 10, 300, -TRAILER_SIZE], ids=str)
def test_last_record_ending_in_zeros_is_a_torn_append(logdir: Path, keep: int, extra: int) -> None:
    """The file grew to hold the last record but only its first bytes reached the disk (what
    XFS or ext4 without data=ordered leave after a power loss): the rest reads as zeros. That is
    a zero-filled tail like any other, cut at the record's start."""
    recs = build(logdir, 9)
    last = segments(logdir)[-1]
    data = last.read_bytes()
    start, end = record_spans(last)[-1]
    cut = start + keep if keep > 0 else end + keep
    last.write_bytes(data[:cut] + bytes(end - cut + extra))
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs[:-1]
        assert last.stat().st_size == start
        log.append_sync([recs[-1]])
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs


def test_zeros_followed_by_a_record_are_corruption_not_a_tail(logdir: Path) -> None:
    build(logdir, 3)
    last = segments(logdir)[-1]
    data = last.read_bytes()
    start, end = record_spans(last)[1]
    last.write_bytes(data[:start] + bytes(end - start) + data[end:])
    with pytest.raises(TxlogCorruptError) as info:
        TxLog(logdir, SMALL)
    assert info.value.context == {"file": str(last), "offset": start}
    assert last.read_bytes() == data[:start] + bytes(end - start) + data[end:]


def test_torn_tail_in_a_non_last_segment_is_corruption(logdir: Path) -> None:
    build(logdir, 20)
    segs = segments(logdir)
    victim = segs[1]
    data = victim.read_bytes()
    start, end = record_spans(victim)[-1]
    victim.write_bytes(data[: end - 5])
    with pytest.raises(TxlogCorruptError) as info:
        TxLog(logdir, SMALL)
    assert info.value.context["file"] == str(victim)
    assert info.value.context["offset"] == start
    assert victim.stat().st_size == end - 5  # nothing cut


def test_missing_middle_segment_is_corruption(logdir: Path) -> None:
    build(logdir, 20)
    segs = segments(logdir)
    segs[1].unlink()
    with pytest.raises(TxlogCorruptError) as info:
        TxLog(logdir, SMALL)
    assert info.value.context["file"] == str(segs[2])


def test_renamed_segment_is_corruption(logdir: Path) -> None:
    build(logdir, 20)
    segs = segments(logdir)
    segs[-1].rename(logdir / f"{999:020d}.txlog")
    with pytest.raises(TxlogCorruptError):
        TxLog(logdir, SMALL)


# ---- damage anywhere ----------------------------------------------------------------------------


def _flip_targets(files: list[Path], rnd: random.Random) -> Iterator[tuple[Path, int, int]]:
    """(file, offset, start of the structure the offset belongs to) over every kind of byte."""
    for path in files:
        size = path.stat().st_size
        for off in range(SEGMENT_HEADER_SIZE):
            yield path, off, 0
        for start, end in record_spans(path):
            body = range(start + FRAME_SIZE, end - TRAILER_SIZE)
            offs = set(range(start, start + FRAME_SIZE))  # magic, length, check, reserved
            offs.update(range(end - TRAILER_SIZE, end))  # trailer
            offs.update((body.start, body.start + 1, body.stop - 1))
            offs.update(rnd.sample(body, 12))
            for off in sorted(offs):
                yield path, off, start
        assert size == record_spans(path)[-1][1]


def test_byte_flips_anywhere_are_detected_never_replayed(logdir: Path) -> None:
    recs = build(logdir, 20)
    files = segments(logdir)
    assert len(files) >= 3
    originals = {p: p.read_bytes() for p in files}
    last_file = files[-1]
    last_start = record_spans(last_file)[-1][0]
    rnd = random.Random(1234)
    failures: list[str] = []
    checked = 0
    for path, off, start in _flip_targets(files, rnd):
        damaged = bytearray(originals[path])
        damaged[off] ^= rnd.randrange(1, 256)
        path.write_bytes(bytes(damaged))
        where = f"{path.name}@{off}"
        # Every offset read-only; a sample, and every offset of the last record, writable too
        # (the writable open is the one that may cut a torn tail).
        writable = (path == last_file and off >= last_start) or rnd.random() < 0.25
        for readonly in (True, False) if writable else (True,):
            if not readonly:
                # A fresh LOCK file: a failed open must not be refused because an earlier failed
                # open in this process kept the old one locked (tested on its own below).
                (logdir / "LOCK").unlink(missing_ok=True)
            try:
                log = TxLog(logdir, SMALL, readonly=readonly)
            except TxlogCorruptError as err:
                if err.context.get("file") != str(path) or err.context.get("offset") != start:
                    failures.append(f"{where}: error names {err.context}, expected {start}")
                continue
            try:
                got = read_all(log)
            finally:
                log.close()
            if got != recs[: len(got)]:
                failures.append(f"{where}: a damaged record was returned")
            if path != last_file or off < last_start or len(got) != len(recs) - 1:
                failures.append(f"{where}: damage accepted, {len(got)} records read")
        for p, data in originals.items():
            p.write_bytes(data)
        checked += 1
    assert checked > 400
    assert not failures, "\n".join(failures[:20])


def test_failed_open_releases_the_writer_lock(logdir: Path) -> None:
    """Opening a damaged log fails; once the damage is dealt with, the same process must be able
    to open the log again (``repair`` relies on exactly this)."""
    build(logdir, 20)
    victim = segments(logdir)[1]
    original = victim.read_bytes()
    damaged = bytearray(original)
    damaged[SEGMENT_HEADER_SIZE + 20] ^= 0x01
    victim.write_bytes(bytes(damaged))
    with pytest.raises(TxlogCorruptError):
        TxLog(logdir, SMALL)
    victim.write_bytes(original)
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == 20


def test_damage_after_open_is_reported_by_get_and_read(logdir: Path) -> None:
    recs = build(logdir, 20)
    with TxLog(logdir, SMALL) as log:
        victim = segments(logdir)[1]
        start, end = record_spans(victim)[1]
        txid = int(victim.name.split(".")[0]) + 1  # the second record of the segment
        data = bytearray(victim.read_bytes())
        data[(start + end) // 2] ^= 0x10
        victim.write_bytes(bytes(data))
        with pytest.raises(TxlogCorruptError) as info:
            log.get(txid)
        assert info.value.context == {"file": str(victim), "offset": start}
        with pytest.raises(TxlogCorruptError):
            list(log.read(1))
        assert log.get(1) == recs[0]


# ---- repair ---------------------------------------------------------------------------------------


def test_repair_of_a_healthy_log_changes_nothing(logdir: Path) -> None:
    build(logdir, 20)
    before = {p.name: p.read_bytes() for p in segments(logdir)}
    assert repair(logdir) is None
    assert {p.name: p.read_bytes() for p in segments(logdir)} == before


def test_repair_cuts_at_damage_and_moves_the_rest_aside(logdir: Path) -> None:
    recs = build(logdir, 20)
    segs = segments(logdir)
    victim = segs[1]
    spans = record_spans(victim)
    start = spans[1][0]
    original = victim.read_bytes()
    damaged = bytearray(original)
    damaged[start + FRAME_SIZE + 3] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    later = {p.name: p.read_bytes() for p in segs[2:]}
    assert repair(logdir) == (victim, start)

    assert victim.read_bytes() == original[:start]
    aside = logdir / f"{victim.name}.tail-{start}.damaged"
    assert aside.read_bytes() == bytes(damaged[start:])
    for name, data in later.items():
        assert not (logdir / name).exists()
        assert (logdir / f"{name}.damaged").read_bytes() == data
    first_lost = int(victim.name.split(".")[0]) + 1
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == first_lost - 1
        assert read_all(log) == recs[: first_lost - 1]
        log.append_sync(recs[first_lost - 1 :])  # the log takes appends again
    with TxLog(logdir, SMALL) as log:
        assert read_all(log) == recs


def test_repair_of_a_damaged_segment_header_moves_the_segment_aside(logdir: Path) -> None:
    recs = build(logdir, 20)
    segs = segments(logdir)
    victim = segs[1]
    data = bytearray(victim.read_bytes())
    data[9] ^= 1
    victim.write_bytes(bytes(data))
    assert repair(logdir) == (victim, 0)
    assert not victim.exists()
    assert (logdir / f"{victim.name}.damaged").read_bytes() == bytes(data)
    with TxLog(logdir, SMALL) as log:
        kept = int(victim.name.split(".")[0]) - 1
        assert read_all(log) == recs[:kept]


# ---- retention ------------------------------------------------------------------------------------


def _retention_log(logdir: Path, n: int = 20, **cfg: float) -> TxLog:
    config = TxlogConfig(segment_bytes=4096, fsync=False, **cfg)  # type: ignore[arg-type]
    log = TxLog(logdir, config)
    log.append_sync([rec(t) for t in range(1, n + 1)])
    return log


def test_retention_by_size(logdir: Path) -> None:
    with _retention_log(logdir, retention_bytes=3 * 4096) as log:
        before = segments(logdir)
        removed = log.enforce_retention(now_ns=21 * SEC)
        assert removed == before[: len(removed)]
        assert removed
        assert log.stats().bytes <= 3 * 4096
        assert segments(logdir) == before[len(removed) :]
        assert log.first_txid == int(segments(logdir)[0].name.split(".")[0])
        assert list(log.read(log.first_txid))[-1].txid == 20
        assert log.enforce_retention(now_ns=21 * SEC) == []


def _segment_last_txids(logdir: Path) -> list[int]:
    firsts = [int(p.name.split(".")[0]) for p in segments(logdir)]
    return [f - 1 for f in firsts[1:]]


def test_retention_by_age(logdir: Path) -> None:
    with _retention_log(logdir, retention_seconds=5.0) as log:
        segs = segments(logdir)
        lasts = _segment_last_txids(logdir)  # a record's timestamp is txid seconds
        assert len(segs) >= 3
        limit = 5 * SEC
        assert log.enforce_retention(now_ns=lasts[0] * SEC + limit) == []  # exactly 5 s old
        assert log.enforce_retention(now_ns=lasts[0] * SEC + limit + 1) == segs[:1]
        assert log.first_txid == lasts[0] + 1
        assert log.enforce_retention(now_ns=lasts[1] * SEC + limit + 1) == segs[1:2]
        assert log.first_txid == lasts[1] + 1
        assert segments(logdir) == segs[2:]


def test_retention_never_deletes_the_active_segment(logdir: Path) -> None:
    with _retention_log(logdir, retention_bytes=4096, retention_seconds=0.001) as log:
        log.enforce_retention(now_ns=10**6 * SEC)
        segs = segments(logdir)
        assert len(segs) == 1
        assert log.last_txid == 20
        assert log.get(20) == rec(20)
        log.append_sync([rec(21)])
    with TxLog(logdir, SMALL) as log:
        assert log.last_txid == 21


def test_retention_keeps_the_segment_holding_keep_from_txid(logdir: Path) -> None:
    with _retention_log(logdir, retention_bytes=4096, retention_seconds=0.001) as log:
        segs = segments(logdir)
        lasts = _segment_last_txids(logdir)
        keep = lasts[0] + 2  # inside the second segment
        removed = log.enforce_retention(now_ns=10**6 * SEC, keep_from_txid=keep)
        assert removed == segs[:1]
        assert log.first_txid == lasts[0] + 1
        assert [r.txid for r in log.read(keep)] == list(range(keep, 21))
        # Keeping the first txid held keeps everything.
        assert log.enforce_retention(now_ns=10**6 * SEC, keep_from_txid=log.first_txid) == []
        assert segments(logdir) == segs[1:]


def test_read_overtaken_by_retention_raises_txid_not_found(logdir: Path) -> None:
    with _retention_log(logdir, retention_bytes=4096) as log:
        reader = log.read(1)
        assert next(reader).txid == 1
        assert len(log.enforce_retention(now_ns=21 * SEC)) >= 2
        with pytest.raises(TxidNotFoundError):
            list(reader)


def test_retention_survives_reopen(logdir: Path) -> None:
    with _retention_log(logdir, retention_bytes=2 * 4096) as log:
        log.enforce_retention(now_ns=21 * SEC)
        first = log.first_txid
    with TxLog(logdir, TxlogConfig(segment_bytes=4096, fsync=False)) as log:
        assert log.first_txid == first
        assert [r.txid for r in read_all(log)] == list(range(first, 21))


def test_read_raw_returns_stored_bytes_across_segments_and_respects_limits(tmp_path: Path) -> None:
    recs = build(tmp_path, 30)
    with TxLog(tmp_path, SMALL) as log:
        assert len(segments(tmp_path)) > 3
        raw = log.read_raw(1, max_records=100, max_bytes=1 << 30)
        assert raw == [encode(r) for r in recs]
        # A byte limit cuts between records but always returns the first one.
        three = sum(len(r) for r in raw[:3])
        assert log.read_raw(5, max_bytes=1) == [encode(recs[4])]
        assert len(log.read_raw(1, max_bytes=three)) == 3
        assert len(log.read_raw(1, max_bytes=three - 1)) == 2
        assert log.read_raw(28, max_records=2) == [encode(recs[27]), encode(recs[28])]
        assert log.read_raw(31) == []
        # Only durable records are shipped.
        log.append(rec(31))
        assert log.read_raw(31) == []
        log.sync()
        assert log.read_raw(31) == [encode(rec(31))]

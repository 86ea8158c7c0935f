"""Transaction records (:mod:`litecluster.engine.record`): encoding, and that damage never decodes."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.engine.record import (
    FRAME,
    FRAME_SIZE,
    HEADER,
    RECORD_MAGIC,
    RECORD_VERSION,
    TRAILER,
    TRAILER_SIZE,
    RecordKind,
    TxRecord,
    decode,
    encode,
    frame_check,
)
from litecluster.engine.wal import WalMark
from litecluster.errors import TxlogCorruptError

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


@st.composite
def records(draw: st.DrawFn) -> TxRecord:
    page_size = draw(st.sampled_from([512, 1024, 4096]))
    kind = draw(st.sampled_from(list(RecordKind)))
    pgnos = draw(st.lists(st.integers(1, 2**32 - 1), max_size=5, unique=True))
    pages = []
    for p in pgnos:
        # Mostly compressible pages with some random bytes in them.
        fill = draw(st.binary(min_size=0, max_size=64))
        pages.append(
            (p, (fill * (page_size // max(1, len(fill)) + 1))[:page_size].ljust(page_size, b"\0"))
        )
    return TxRecord(
        epoch=draw(U64),
        txid=draw(U64),
        page_size=page_size,
        db_size=draw(U32),
        pre_checksum=draw(U64),
        post_checksum=draw(U64),
        timestamp_ns=draw(st.integers(-(2**63), 2**63 - 1)),
        pages=tuple(pages),
        annotations=draw(st.binary(max_size=300)),
        kind=kind,
        wal=WalMark(draw(U32), draw(U32), draw(U32), draw(U32)),
    )


@settings(max_examples=200, deadline=None)
@given(rec=records())
def test_encode_decode_round_trip(rec: TxRecord) -> None:
    data = encode(rec)
    assert decode(data) == rec
    assert decode(memoryview(data)) == rec
    assert encode(decode(data)) == data


def small_record() -> TxRecord:
    rnd = random.Random(11)
    return TxRecord(
        epoch=3,
        txid=42,
        page_size=512,
        db_size=9,
        pre_checksum=rnd.getrandbits(64),
        post_checksum=rnd.getrandbits(64),
        timestamp_ns=1_700_000_000_000_000_000,
        pages=((2, rnd.randbytes(40).ljust(512, b"\0")), (9, bytes(512))),
        annotations=b"key=value",
        wal=WalMark(1, 2, 3, 4),
    )


def test_every_single_byte_flip_is_detected() -> None:
    data = encode(small_record())
    assert len(data) < 400  # small enough to try every offset and several flips
    for off in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[off] ^= mask
            with pytest.raises(TxlogCorruptError) as info:
                decode(bytes(damaged), where="seg", offset=1000)
            assert info.value.context == {"file": "seg", "offset": 1000}, (off, mask)


def test_truncated_or_extended_records_are_rejected() -> None:
    data = encode(small_record())
    for cut in range(len(data)):
        with pytest.raises(TxlogCorruptError):
            decode(data[:cut])
    for extra in (b"\0", b"x" * 100):
        with pytest.raises(TxlogCorruptError):
            decode(data + extra)


def test_record_without_pages_round_trips() -> None:
    rec = TxRecord(1, 7, 4096, 3, 1, 2, 0, pages=(), kind=RecordKind.RESET)
    assert decode(encode(rec)) == rec


def forge(
    *, n_pages: int, page_size: int, payload: bytes, version: int = RECORD_VERSION, kind: int = 0
) -> bytes:
    """A record whose checksums are all valid but whose contents are whatever the caller says
    (what a buggy or hostile sender could produce; damage on disk cannot)."""
    header = HEADER.pack(
        version, kind, 0, page_size, 1, 1, n_pages, n_pages, 0, 0, 0, 0, 0, 0, 0, 0, len(payload)
    )
    body_len = len(header) + len(payload)
    frame = FRAME.pack(RECORD_MAGIC, body_len, frame_check(RECORD_MAGIC, body_len), 0)
    trailer = TRAILER.pack(xxhash.xxh3_64_intdigest(frame + header + payload))
    return frame + header + payload + trailer


def test_forged_record_is_accepted_when_well_formed() -> None:
    """The forging helper itself produces decodable records (so the rejections below are about
    the contents, not the helper)."""
    page = b"\x07" * 512
    raw = struct.pack(">I", 5) + page
    rec = decode(forge(n_pages=1, page_size=512, payload=zstandard.ZstdCompressor().compress(raw)))
    assert rec.pages == ((5, page),)


@pytest.mark.parametrize(
    ("version", "kind"), [(RECORD_VERSION + 1, 0), (RECORD_VERSION, 2), (0, 0)]
)
def test_unknown_version_or_kind_is_rejected(version: int, kind: int) -> None:
    with pytest.raises(TxlogCorruptError):
        decode(forge(n_pages=0, page_size=512, payload=b"", version=version, kind=kind))


@pytest.mark.parametrize("size", [0, 100, 516 * 2])
def test_payload_of_the_wrong_size_is_rejected(size: int) -> None:
    payload = zstandard.ZstdCompressor().compress(bytes(size))
    with pytest.raises(TxlogCorruptError):
        decode(forge(n_pages=1, page_size=512, payload=payload))


def test_payload_that_is_not_zstd_is_rejected() -> None:
    with pytest.raises(TxlogCorruptError):
        decode(forge(n_pages=1, page_size=512, payload=b"not zstd at all" * 10))


def _bomb(size: int, *, content_size: bool) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    obj = cctx.compressobj(size=size if content_size else -1)
    chunk = bytes(1 << 20)
    parts = [obj.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(obj.flush())
    return b"".join(parts)


@pytest.mark.parametrize("content_size", [False, True], ids=["streamed", "size-in-frame"])
def test_decompression_bomb_is_rejected_without_inflating_it(content_size: bool) -> None:
    """A record that claims one page but whose payload inflates to 64 MiB must be refused
    without allocating the 64 MiB: the decompressor may produce at most what the header
    announces (n_pages * (4 + page_size) bytes)."""
    bomb = _bomb(64 << 20, content_size=content_size)
    assert len(bomb) < 64 * 1024
    data = forge(n_pages=1, page_size=512, payload=bomb)
    tracemalloc.start()
    try:
        with pytest.raises(TxlogCorruptError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"decoding a 1-page record allocated {peak / 2**20:.0f} MiB"


def test_frame_and_trailer_sizes() -> None:
    """The layout the txlog's scanner relies on."""
    data = encode(small_record())
    assert FRAME_SIZE == 16
    assert TRAILER_SIZE == 8
    magic, body_len, check, reserved = FRAME.unpack_from(data)
    assert (magic, reserved) == (RECORD_MAGIC, 0)
    assert check == frame_check(magic, body_len)
    assert len(data) == FRAME_SIZE + body_len + TRAILER_SIZE


def _claiming(content_size: int) -> bytes:
    """A small zstd frame whose header claims ``content_size`` bytes of output."""
    raw = zstandard.ZstdCompressor(write_content_size=True).compress(b"x" * 1000)
    fhd = raw[4]
    single = (fhd >> 5) & 1
    fcs_len = {0: single, 1: 2, 2: 4, 3: 8}[fhd >> 6]
    blocks = raw[5 + (0 if single else 1) + fcs_len :]
    new_fhd = (3 << 6) | (1 << 5) | (fhd & 0x07)  # 8-byte content size, single segment
    forged = raw[:4] + bytes([new_fhd]) + struct.pack("<Q", content_size) + blocks
    assert zstandard.frame_content_size(forged) == content_size
    return forged


def test_payload_claiming_an_impossible_size_is_corruption_not_memory_error() -> None:
    """A frame header announcing 4 EiB of output must be a TxlogCorruptError like any other
    malformed payload, not a MemoryError from trying to allocate it."""
    data = forge(n_pages=1, page_size=512, payload=_claiming(1 << 62))
    with pytest.raises(TxlogCorruptError):
        decode(data)

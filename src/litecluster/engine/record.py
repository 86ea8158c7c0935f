"""Transaction records: one committed transaction of the primary, as the txlog stores it.

On disk and on the wire a record is framed as::

    magic u32 | body length u32 | frame check u32 | reserved u32     (16 bytes)
    body: fixed header, annotations, zstd(page numbers + pages)
    record checksum u64 = xxh3_64(frame + body)

The frame check covers magic and length on their own, so a damaged length field is reported as
corruption instead of being mistaken for a record torn at the end of a file.
"""

from __future__ import annotations

import enum
import struct
import threading
from dataclasses import dataclass, field

import xxhash
import zstandard

from litecluster.engine.wal import WalMark
from litecluster.errors import TxlogCorruptError

RECORD_MAGIC = 0x4C435231  # "LCR1"
RECORD_VERSION = 1
FRAME = struct.Struct(">IIII")
TRAILER = struct.Struct(">Q")
# version, kind, flags, page_size, epoch, txid, db_size, n_pages, pre, post, timestamp_ns,
# wal salt1, salt2, ckpt_seq, frame, annotations length, payload length
HEADER = struct.Struct(">BBHIQQIIQQqIIIIII")
FRAME_SIZE = FRAME.size
TRAILER_SIZE = TRAILER.size
MAX_BODY = 1 << 31


class RecordKind(enum.IntEnum):
    PAGES = 0
    """Pages changed by one transaction (or a batch merged by the writer)."""
    RESET = 1
    """History cannot be followed page by page past this point: replicas must re-snapshot."""


@dataclass(frozen=True)
class TxRecord:
    epoch: int
    txid: int
    page_size: int
    db_size: int
    pre_checksum: int
    post_checksum: int
    timestamp_ns: int
    pages: tuple[tuple[int, bytes], ...]
    annotations: bytes = b""
    kind: RecordKind = RecordKind.PAGES
    wal: WalMark = field(default_factory=WalMark)
    """Where in the primary's WAL the record ended (lets capture resume after a restart)."""

    @property
    def payload_bytes(self) -> int:
        return len(self.pages) * self.page_size


def frame_check(magic: int, length: int) -> int:
    return int(xxhash.xxh32_intdigest(struct.pack(">II", magic, length)))


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "cctx", None)
    if c is None:
        c = _local.cctx = zstandard.ZstdCompressor(level=1)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def encode(rec: TxRecord) -> bytes:
    """The framed bytes of a record."""
    pgnos = struct.pack(f">{len(rec.pages)}I", *(p for p, _ in rec.pages))
    raw = pgnos + b"".join(d for _, d in rec.pages)
    payload = _compressor().compress(raw) if raw else b""
    w = rec.wal
    header = HEADER.pack(
        RECORD_VERSION, int(rec.kind), 0, rec.page_size, rec.epoch, rec.txid, rec.db_size,
        len(rec.pages), rec.pre_checksum, rec.post_checksum, rec.timestamp_ns,
        w.salt1, w.salt2, w.ckpt_seq, w.frame, len(rec.annotations), len(payload),
    )  # fmt: skip
    body_len = len(header) + len(rec.annotations) + len(payload)
    frame = FRAME.pack(RECORD_MAGIC, body_len, frame_check(RECORD_MAGIC, body_len), 0)
    h = xxhash.xxh3_64(frame)
    h.update(header)
    h.update(rec.annotations)
    h.update(payload)
    return b"".join((frame, header, rec.annotations, payload, TRAILER.pack(h.intdigest())))


def parse_frame(buf: bytes, *, where: str, offset: int) -> int:
    """Validate a 16-byte frame header and return the body length."""
    magic, length, check, _ = FRAME.unpack_from(buf)
    if magic != RECORD_MAGIC or check != frame_check(magic, length) or length > MAX_BODY:
        raise TxlogCorruptError("record frame is damaged", file=where, offset=offset)
    if length < HEADER.size:
        raise TxlogCorruptError("record body is too short", file=where, offset=offset)
    return int(length)


def decode(buf: bytes | memoryview, *, where: str = "<buffer>", offset: int = 0) -> TxRecord:
    """Decode one framed record (``buf`` holds exactly one), verifying every checksum."""
    mv = memoryview(buf)
    if len(mv) < FRAME_SIZE + TRAILER_SIZE:
        raise TxlogCorruptError("record is truncated", file=where, offset=offset)
    body_len = parse_frame(bytes(mv[:FRAME_SIZE]), where=where, offset=offset)
    end = FRAME_SIZE + body_len
    if len(mv) != end + TRAILER_SIZE:
        raise TxlogCorruptError("record length does not match its frame", file=where, offset=offset)
    (stored,) = TRAILER.unpack_from(mv, end)
    if stored != xxhash.xxh3_64_intdigest(mv[:end]):
        raise TxlogCorruptError("record checksum mismatch", file=where, offset=offset)
    fields = HEADER.unpack_from(mv, FRAME_SIZE)
    (version, kind, _flags, page_size, epoch, txid, db_size, n_pages, pre, post, ts,
     s1, s2, seq, wframe, ann_len, payload_len) = fields  # fmt: skip
    if version != RECORD_VERSION or kind not in (0, 1):
        raise TxlogCorruptError(
            f"unsupported record version {version} kind {kind}", file=where, offset=offset
        )
    pos = FRAME_SIZE + HEADER.size
    if pos + ann_len + payload_len != end:
        raise TxlogCorruptError("record sections do not add up", file=where, offset=offset)
    annotations = bytes(mv[pos : pos + ann_len])
    pos += ann_len
    pages: tuple[tuple[int, bytes], ...] = ()
    if n_pages:
        expect = n_pages * (4 + page_size)
        payload = bytes(mv[pos:end])
        try:
            # decompress() sizes its output from the frame header when the header states the
            # content size, ignoring max_output_size: check the claim before inflating anything.
            if zstandard.frame_content_size(payload) not in (-1, expect):
                raise TxlogCorruptError(
                    "record payload has the wrong size", file=where, offset=offset
                )
            raw = _decompressor().decompress(payload, max_output_size=expect)
        except zstandard.ZstdError as exc:
            raise TxlogCorruptError(
                f"record payload does not decompress: {exc}", file=where, offset=offset
            ) from exc
        if len(raw) != expect:
            raise TxlogCorruptError("record payload has the wrong size", file=where, offset=offset)
        pgnos = struct.unpack_from(f">{n_pages}I", raw)
        base = 4 * n_pages
        pages = tuple(
            (pgnos[i], raw[base + i * page_size : base + (i + 1) * page_size])
            for i in range(n_pages)
        )
    return TxRecord(
        epoch=epoch, txid=txid, page_size=page_size, db_size=db_size, pre_checksum=pre,
        post_checksum=post, timestamp_ns=ts, pages=pages, annotations=annotations,
        kind=RecordKind(kind), wal=WalMark(s1, s2, seq, wframe),
    )  # fmt: skip

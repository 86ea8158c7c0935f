"""Who may connect: the cluster token, TLS, and peers that speak garbage."""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.errors import ProtocolError, TxlogCorruptError
from litecluster.replication.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Heartbeat,
    Hello,
    Message,
    Pos,
    Records,
    SnapshotStart,
    decode_frames,
    encode_message,
    split_records,
)
from support import wait_for
from support.certs import make_ca, make_server_cert
from support.nodes import Nodes, db_file, position, stats, wait_converged, write


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    n.close()


def test_wrong_or_missing_token_is_refused_with_a_clear_log_line_and_no_data(
    nodes: Nodes, tmp_path: Path
) -> None:
    primary = nodes.node("p1")
    write(db_file(primary), 50)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("x" * 40)
    wrong.chmod(0o600)
    intruder = nodes.node("r-bad", primary, token_file=wrong)
    wait_for(lambda: "auth.refused" in primary.log_text, 30, "the primary's refusal")
    wait_for(lambda: "replication.refused" in intruder.log_text, 30, "the replica's log line")
    assert "wrong or missing cluster token" in intruder.log_text
    up = intruder.status()["upstream"]
    assert up["state"] != "streaming"
    assert "token" in up["last_error"]
    assert not db_file(intruder).exists(), "a refused replica receives nothing"
    assert intruder.status()["databases"] == {}
    # A node with a token too short to be a secret does not start at all.
    short = tmp_path / "short"
    short.write_text("abc")
    bad = nodes.node("r-short", primary, token_file=short, start=False)
    with pytest.raises(Exception, match="too short"):
        bad.start()
    # The primary is unharmed: a replica with the right token replicates.
    good = nodes.node("r1", primary)
    wait_converged(primary, [good])
    assert stats(primary)["errors"].get("auth", 0) >= 1


def _frames_to_try(rng: random.Random) -> list[bytes]:
    hello = encode_message(Hello(PROTOCOL_VERSION, "litecluster", "fuzz", "t" * 64,
                                 {"main": Pos(1, 5, 7)}))  # fmt: skip
    tries = [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xff\xff\xff\x01",  # a 4 GiB frame length
        b"\x00\x00\x00\x05\x63hello",  # unknown message type
        b"\x00\x00\x00\x03\x01\xc1\xc1\xc1",  # HELLO that is not msgpack
        hello[:7],  # a frame cut short
    ]
    for _ in range(40):
        tries.append(rng.randbytes(rng.randint(1, 300)))
    for _ in range(60):
        b = bytearray(hello)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        tries.append(bytes(b))
    return tries


def test_peers_speaking_garbage_are_refused_without_harming_the_node(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    write(db_file(primary), 20)
    host, port = primary.listen.rsplit(":", 1)
    rng = random.Random(1234)
    for payload in _frames_to_try(rng):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            # The node answers with at most a refusal, then closes: never data.
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
            assert len(got) < 200, got[:100]
    assert primary.running
    assert replica.running
    write(db_file(primary), 20)
    wait_converged(primary, [replica])
    assert stats(primary)["errors"].get("ProtocolError", 0) > 0
    assert "Traceback" not in primary.log_text
    # The garbage never reached the stream: the replica applied every record exactly once.
    assert stats(replica)["snapshots_installed"] == 0


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    ca, ca_cert, ca_key = make_ca(tmp_path, "cluster-ca")
    other_ca, _, _ = make_ca(tmp_path, "other-ca")
    cert, key = make_server_cert(tmp_path, ca_cert, ca_key)
    return ca, other_ca, cert, key


def test_tls_replica_with_the_right_ca_replicates_and_the_wrong_ca_cannot_connect(
    nodes: Nodes, tls: tuple[Path, Path, Path, Path]
) -> None:
    ca, other_ca, cert, key = tls
    ctx = ssl.create_default_context(cafile=str(ca))
    server = ["--tls-cert", str(cert), "--tls-key", str(key)]
    primary = nodes.node("p1", args=server)
    assert primary.url.startswith("https://")
    write(db_file(primary), 100)
    good = nodes.node("r1", primary, args=[*server, "--tls-ca", str(ca)])
    bad = nodes.node("r2", primary, args=[*server, "--tls-ca", str(other_ca)])
    plain = nodes.node("r3", primary)  # no TLS at all
    wait_for(lambda: position(good, verify=ctx) == position(primary, verify=ctx), 60,
             "the TLS replica")  # fmt: skip
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.log_text, 30, "the certificate error")
    assert not db_file(bad).exists()
    assert not db_file(plain).exists()
    # The HTTP port is TLS too: plain HTTP fails, the right CA verifies.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{primary.http}/status", timeout=5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(
            f"https://{primary.http}/status",
            timeout=5,
            verify=ssl.create_default_context(cafile=str(other_ca)),
        )
    out = subprocess.run(
        [sys.executable, "-m", "litecluster", "status", "--http", primary.http, "--ca", str(ca)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "r1" in out
    assert "streaming" in out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_frame_decoder_rejects_random_bytes_only_with_protocol_error(data: bytes) -> None:
    try:
        msgs, used = decode_frames(data)
    except ProtocolError:
        return
    assert used <= len(data)
    assert all(isinstance(m, Message.__args__) for m in msgs)  # type: ignore[attr-defined]


_VALID = [
    encode_message(Hello(PROTOCOL_VERSION, "c", "n1", "t" * 32, {"main": Pos(1, 2, 3)}, "h:1")),
    encode_message(Records("main", b"\x00" * 40)),
    encode_message(Heartbeat(3, {"main": 10, "other": 2})),
    encode_message(Ack({"main": Pos(1, 9, 12345)})),
    encode_message(SnapshotStart("main", Pos(1, 2, 3), 1000)),
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_frame_decoder_rejects_mutated_frames_only_with_protocol_error(
    frame: bytes, flips: list[tuple[int, int]]
) -> None:
    b = bytearray(frame)
    for where, value in flips:
        b[where % len(b)] = value
    with contextlib.suppress(ProtocolError):
        decode_frames(bytes(b))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_record_splitter_rejects_garbage_with_typed_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError, TxlogCorruptError):
        split_records(data)

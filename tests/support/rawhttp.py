"""HTTP/1.1 by hand over a socket, for tests that send what a well-behaved client library
refuses to: any method, any request target, any header bytes, a ``Content-Length`` that lies,
a body that is not what its ``Content-Encoding`` says.

Only the first response is read (the request says ``Connection: close``); anything the server
sends after it is ignored.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes = b""


def build(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """The request's bytes exactly as given: no header is added, none is checked."""
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(address: str, raw: bytes, *, timeout: float, method: bytes = b"GET") -> Answer | None:
    """Send ``raw`` and read the first response; None when the server closed without one or
    sent none within ``timeout`` (a body shorter than its ``Content-Length`` waits forever)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # it answered and closed before taking all of it
            sock.sendall(raw)
        data = b""
        while True:
            answer = _parse(data, head_only=method == b"HEAD")
            if answer is not None:
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:  # reset after a refusal: what arrived before is the answer
                chunk = b""
            if not chunk:
                return _parse(data, head_only=method == b"HEAD", eof=True)
            data += chunk


def _parse(data: bytes, *, head_only: bool, eof: bool = False) -> Answer | None:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    if head.startswith(
        (b"HTTP/1.1 1", b"HTTP/1.0 1")
    ):  # an interim answer (100 Continue): the real one follows
        return _parse(rest, head_only=head_only, eof=eof)
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"not an HTTP status line: {status_line!r}")
    answer = Answer(int(parts[1]), parts[2].decode("latin-1") if len(parts) > 2 else "")
    for line in header_lines:
        name, _, value = line.partition(b":")
        answer.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if head_only or answer.status in (204, 304) or 100 <= answer.status < 200:
        return answer
    if answer.headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(rest)
        if body is None:
            return answer if eof else None
        answer.body = body
        return answer
    length = answer.headers.get("content-length")
    if length is None:
        if not eof:
            return None
        answer.body = rest
        return answer
    if len(rest) < int(length):
        if eof:
            answer.body = rest
            return answer
        return None
    answer.body = rest[: int(length)]
    return answer


def _dechunk(data: bytes) -> bytes | None:
    out = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return None
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        if len(data) < size + 2:
            return None
        out, data = out + data[:size], data[size + 2 :]

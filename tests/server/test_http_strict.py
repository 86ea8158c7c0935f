"""What the HTTP fuzz found, one test each, on real nodes: compressed, oversized and broken
request bodies, JSON that is not JSON (both ways), junk durations, malformed HTTP, an unknown
``Expect``. Each answer
is the port's JSON error (or a statement's error), never a 5xx but 503, never a traceback."""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import AUTH_ON, Nodes, wait_streaming
from support.rawhttp import Answer, build, exchange

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNode, LocalNode]]:
    n = Nodes(tmp_path_factory.mktemp("strict"))
    env = {"LITECLUSTER_MAX_REQUEST_BYTES": str(LIMIT), "LITECLUSTER_READ_WAIT_TIMEOUT": "0.5"}
    try:  # nodes that failed to get ready are killed too
        primary = n.node("p1", env=env)
        replica = n.node("r1", primary, env=env)
        wait_streaming(replica)
        httpx.post(f"http://{primary.http}/db/execute",
                   json=["CREATE TABLE t(id INTEGER PRIMARY KEY, v)"]).raise_for_status()  # fmt: skip
        yield primary, replica
    finally:
        n.close()
    for node in n.all:
        assert "Traceback" not in node.log_text


def _error(r: httpx.Response | Answer, status: int) -> dict[str, Any]:
    code = r.status_code if isinstance(r, httpx.Response) else r.status
    body = r.content if isinstance(r, httpx.Response) else r.body
    assert code == status, (code, body[:300])
    got: dict[str, Any] = json.loads(body)
    assert {"error", "retryable", "indeterminate", "committed", "hint"} <= set(got), got
    return got


def _rows(node: LocalNode) -> int:
    r = httpx.get(f"http://{node.http}/db/query",
                  params={"q": "SELECT count(*) FROM t", "level": "none"}, timeout=10)  # fmt: skip
    count: int = r.json()["results"][0]["values"][0][0]
    return count


def _raw(node: LocalNode, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
         body: bytes = b"", timeout: float = 10) -> Answer | None:  # fmt: skip
    base = [(b"Host", b"127.0.0.1"), (b"Connection", b"close")]
    return exchange(node.http, build(method, target, base + headers, body), timeout=timeout)


def test_a_compressed_body_is_refused_with_415_and_runs_nothing(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = pair
    body = json.dumps(["INSERT INTO t(v) VALUES ('compressed')"]).encode()
    before = _rows(primary)
    for node in (primary, replica):
        for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                               ("br", body), ("gzip", b"not gzip at all")):  # fmt: skip
            r = httpx.post(f"http://{node.http}/db/execute", content=data, timeout=10,
                           headers={"Content-Encoding": encoding})  # fmt: skip
            got = _error(r, 415)
            assert got["content_encoding"] == encoding
    assert _rows(primary) == before
    # Content-Encoding: identity is no compression at all.
    r = httpx.post(f"http://{primary.http}/db/execute", content=body, timeout=10,
                   headers={"Content-Encoding": "identity"})  # fmt: skip
    assert r.status_code == 200, r.text


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_sent(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, _ = pair
    started = time.monotonic()
    # Only the headers: a node that waited for the gigabyte would never answer.
    got = _raw(primary, b"POST", b"/db/execute", [(b"Content-Length", b"1000000000")], timeout=5)
    assert time.monotonic() - started < 5
    assert got is not None
    assert _error(got, 413)["limit"] == LIMIT
    # A chunked body has no length to check first: refused once reading passes the limit.
    big = b"[" + b'"SELECT 1",' * (LIMIT // 10) + b'"SELECT 1"]'
    chunked = f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n"
    got = _raw(primary, b"POST", b"/db/query", [(b"Transfer-Encoding", b"chunked")], chunked)
    assert got is not None
    assert _error(got, 413)["limit"] == LIMIT
    r = httpx.post(f"http://{primary.http}/kv/exec", content=b"x" * (LIMIT + 1), timeout=10)
    _error(r, 413)


def test_a_body_cut_short_is_a_400_or_a_log_line_never_a_traceback(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = pair
    for node in (primary, replica):
        # A broken chunk: refused by the HTTP parser itself, in plain text.
        got = _raw(node, b"POST", b"/db/execute", [(b"Transfer-Encoding", b"chunked")],
                   b"5\r\n[1]\r\n0\r\n\r\n")  # fmt: skip
        assert got is not None
        assert got.status == 400
        # A client that sends part of its body and hangs up: nobody to answer.
        assert _raw(node, b"POST", b"/db/execute", [(b"Content-Length", b"100")],
                    b'["SELECT 1"', timeout=0.3) is None  # fmt: skip
    for node in (primary, replica):
        wait_for(lambda n=node: "http.client_gone" in n.log_text, 10, "the client_gone event")  # type: ignore[misc]
        assert "http.bad_request" in node.log_text
        assert "Traceback" not in node.log_text
        assert _rows(node) >= 0  # still serving


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'[["INSERT INTO t(v) VALUES (?)", NaN]]', "NaN is not JSON"),
        (b'[["INSERT INTO t(v) VALUES (?)", Infinity]]', "Infinity is not JSON"),
        (b'[["INSERT INTO t(v) VALUES (?)", -Infinity]]', "-Infinity is not JSON"),
        (b'[["INSERT INTO t(v) VALUES (?)", 1e999]]', "beyond the range of a double"),
        (b'[["INSERT INTO t(v) VALUES (:v)", {"v": -1e400}]]', "beyond the range of a double"),
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"a":' * 8_000 + b"1" + b"}" * 8_000, "nested too deeply"),
    ],
)
def test_json_that_is_not_json_is_a_400_and_writes_nothing(
    pair: tuple[LocalNode, LocalNode], body: bytes, says: str
) -> None:
    primary, replica = pair
    before = _rows(primary)
    for node in (primary, replica):
        for route in ("/db/execute", "/db/query", "/db/request"):
            r = httpx.post(f"http://{node.http}{route}", content=body, timeout=10)
            assert says in _error(r, 400)["error"], r.text
    assert _rows(primary) == before


def test_an_infinite_real_is_null_in_every_answer_never_infinity(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = pair
    w = httpx.post(f"http://{primary.http}/db/execute", timeout=10,
                   json=["INSERT INTO t(v) VALUES (9e999)", "SELECT 9e999, 2"]).json()  # fmt: skip
    assert "error" not in w["results"][0], w
    assert w["results"][1]["values"] == [[None, 2]]
    for node, level in ((primary, "weak"), (replica, "none"), (replica, "weak")):
        r = httpx.get(f"http://{node.http}/db/query", timeout=10, params={
            "q": ["SELECT v FROM t WHERE v = 9e999", "SELECT CAST(v AS TEXT) FROM t "
                  "WHERE v = 9e999", "SELECT -9e999"], "level": level, "min_position":
            f"{w['position']['epoch']}:{w['position']['txid']}", "associative": ""})  # fmt: skip
        assert r.status_code == 200
        got = json.loads(r.content, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
        infinite, text, negative = got["results"]
        assert infinite["rows"] == [{"v": None}], (node.node_id, level, got)
        assert text["rows"] == [{"CAST(v AS TEXT)": "Inf"}]
        assert negative["rows"] == [{"-9e999": None}]


@pytest.mark.parametrize(
    "freshness", ["nan", "NaN", "inf", "-1s", "-5ms", "infms", "x", "", "1e999s", "5"]
)
def test_a_freshness_that_is_not_a_finite_duration_is_a_400(
    pair: tuple[LocalNode, LocalNode], freshness: str
) -> None:
    _, replica = pair
    r = httpx.get(f"http://{replica.http}/db/query", timeout=10,
                  params={"q": "SELECT 1", "level": "none", "freshness": freshness})  # fmt: skip
    assert "freshness" in _error(r, 400)["error"]


def test_malformed_http_is_refused_by_the_server_and_logged_in_one_line(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, _ = pair
    for raw in (b"FOO /status HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /status HTTP/1.1\r\n: x\r\n\r\n",
                b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc",
                b"GET /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"):  # fmt: skip
        got = exchange(primary.http, raw, timeout=10)
        assert got is None or got.status == 400, (raw, got)
    got = _raw(primary, b"GET", b"/status", [(b"Expect", b"junk")])
    assert got is not None
    assert "Expect" in _error(got, 417)["detail"]
    wait_for(lambda: primary.log_text.count("http.bad_request") >= 3, 10, "bad_request lines")
    assert "Traceback" not in primary.log_text


def test_credentials_that_are_not_utf8_are_wrong_credentials_not_a_crash(
    tmp_path: Path,
) -> None:
    n = Nodes(tmp_path)
    node = n.node("a1", env=AUTH_ON)
    try:
        token = n.token_file.read_text().strip().encode()
        for value in (b"Bearer \xff", b"Bearer " + token + b"\xc3", b"Basic \xff\xfe",
                      b"Basic " + base64.b64encode(b"\xff\xfe:\xc3"), b"Bearer \xed\xa0\x80"):  # fmt: skip
            got = _raw(node, b"POST", b"/db/execute", [(b"Authorization", value),
                                                       (b"Content-Length", b"2")], b"[]")  # fmt: skip
            assert got is not None
            _error(got, 401)
        # The token itself still passes.
        got = _raw(node, b"GET", b"/status", [(b"Authorization", b"Bearer " + token)])
        assert got is not None
        assert got.status == 200
        assert "Traceback" not in node.log_text
    finally:
        n.close()

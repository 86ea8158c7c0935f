"""hypothesis fuzzes the HTTP port of real nodes (issue 16, issue 26): methods, paths, query
strings, JSON bodies of every shape, headers (content type and encoding, lying lengths,
authorization). Whatever arrives, the node answers no 5xx but 503, a 4xx is one JSON body
with ``error`` (when the request was well-formed HTTP, so that it reached the app), and the
node's log never gets a traceback. Afterwards both nodes still serve writes and reads.

The examples are derandomized (no example database), so every run sends the same requests;
``LITECLUSTER_FUZZ_EXAMPLES`` sends more of them and ``LITECLUSTER_FUZZ_SEED=N`` other ones,
for a longer local hunt, and
``LITECLUSTER_FUZZ_DEBUG=1`` (with ``pytest -s``) prints each request's answer.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import string
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import Nodes
from support.rawhttp import Answer, build, exchange

MAX_REQUEST_BYTES = 64 * 1024
BOMB = gzip.compress(b"[" + b"0," * 2_000_000 + b"0]")
"""4 MB of JSON in 4 KB of gzip."""
EXAMPLES = int(os.environ.get("LITECLUSTER_FUZZ_EXAMPLES", "600"))
SEED = os.environ.get("LITECLUSTER_FUZZ_SEED")
"""Set: a random run from that seed instead of the derandomized one (to hunt further)."""


class Fuzzed:
    """The two nodes under fuzz and how much of their logs has been read."""

    def __init__(self, primary: LocalNode, replica: LocalNode, token: str) -> None:
        self.primary, self.replica = primary, replica
        self.token = token.encode()
        self.auth = {"Authorization": f"Bearer {token}"}
        self.log_seen: dict[str, int] = {}
        self.statuses: Counter[int | None] = Counter()
        self.sent: set[str] = set()
        """Which of :data:`_MARKERS` the requests held, and to which node they went."""

    def __repr__(self) -> str:
        return f"Fuzzed(primary={self.primary.http}, replica={self.replica.http})"

    def new_log(self, node: LocalNode) -> str:
        """What ``node`` logged since the last call (read from where the last call stopped:
        the whole log, read after every request, would cost more than the request)."""
        path = node.log_path or node.data_dir.with_name(node.data_dir.name + ".log")
        with open(path, "rb") as f:
            f.seek(self.log_seen.get(node.node_id, 0))
            data = f.read()
        self.log_seen[node.node_id] = self.log_seen.get(node.node_id, 0) + len(data)
        return data.decode(errors="replace")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    n = Nodes(tmp_path_factory.mktemp("fuzz"))
    env = {
        "LITECLUSTER_READ_WAIT_TIMEOUT": "0.3",
        "LITECLUSTER_STATEMENT_TIMEOUT": "1",
        "LITECLUSTER_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        # HTTP authentication (issue 16; tests/support/nodes.py turns it off by default): the
        # fuzz sends right, wrong and no credentials.
        "LITECLUSTER_HTTP_AUTH": "true",
    }
    args = ["--http-allow-origin", "https://app.example"]
    token = n.token_file.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    try:  # nodes that failed to get ready are killed too
        primary = n.node("p1", env=env, args=args)
        replica = n.node("r1", primary, env=env, args=args)
        wait_for(lambda: httpx.get(f"http://{replica.http}/readyz", headers=auth).status_code
                 == 200, 30, "the replica to stream from its primary")  # fmt: skip
        httpx.post(f"http://{primary.http}/db/execute", headers=auth,
                   json=["CREATE TABLE t(id INTEGER PRIMARY KEY, v)"]).raise_for_status()  # fmt: skip
        yield Fuzzed(primary, replica, token)
    finally:
        n.close()


# ---- what a request is made of -------------------------------------------------------------------

ROUTES = ["/db/execute", "/db/query", "/db/request", "/db/backup", "/readyz", "/nodes", "/leader",
          "/status", "/health", "/metrics", "/kv/exec", "/switchover", "/promote",
          "/follow"]  # fmt: skip
CHANGES_ROLE = ("/promote", "/follow")
"""Routes that re-point a replica when they succeed: sent to the primary only (which refuses
them), so the fuzz never takes the replica away from the cluster it tests."""

PARAMS = ["q", "db", "level", "freshness", "timings", "pretty", "transaction", "associative",
          "min_position", "queue", "wait", "timeout", "redirect", "force", "primary", "to",
          "noleader", "nonvoters", "ver", "freshness_strict", "blob_array", "fmt", "compress"]  # fmt: skip

JUNK_VALUES = ["", "1", "0", "true", "false", "no", "yes", "none", "weak", "strong",
               "linearizable", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1", "1s",
               "500ms", "ms", "s", "0.0001ms", "1:2", "0:0", "1:99999999", ":", "a:b",
               "99999999999999999999999:1", "main", "../main", "x" * 300, "127.0.0.1:1",
               "%ff%fe", "%00", "%", "%zz", "+", "\u00e9", "\u2603", "\ud800"]  # fmt: skip

GOOD_PARAMS = [("level", "none"), ("level", "weak"), ("level", "strong"),
               ("level", "linearizable"), ("timings", ""), ("timings", "true"), ("pretty", ""),
               ("associative", ""), ("transaction", ""), ("transaction", "false"),
               ("freshness", "1s"), ("freshness", "500ms"), ("db", "main"), ("db", "other"),
               ("queue", ""), ("wait", ""), ("min_position", "1:1"), ("timeout", "5s"),
               ("level", "auto"), ("freshness_strict", ""), ("blob_array", ""), ("fmt", "sql"),
               ("compress", ""), ("db", "kv"), ("redirect", ""), ("ver", "2"),
               ("nonvoters", "")]  # fmt: skip

SQL = [
    "SELECT 1", "SELECT * FROM t", "INSERT INTO t(v) VALUES(?)", "SELECT ?, ?", "SELECT :a",
    "INSERT INTO t(v) VALUES(:v)", "SELECT 9e999", "SELECT -9e999, 1", "SELECT 0.0/0",
    "SELECT x'ff00fe'", "SELECT CAST(x'fffe80' AS TEXT)", "SELECT char(0, 55296)",
    "SELECT zeroblob(100)", "SELECT 9223372036854775807 + 1", "SELECT abs(-9223372036854775808)",
    "SELECT printf('%.*c', 20000, 'x')", "PRAGMA query_only=ON", "PRAGMA user_version",
    "ATTACH 'fuzz.db' AS x", "VACUUM", "BEGIN", "COMMIT", "ROLLBACK", "SELECT 1; SELECT 2",
    ";;", "", " ", "SELECT load_extension('x')", "CREATE TABLE IF NOT EXISTS t2(a, b)",
    "UPDATE t SET v = ? WHERE id = ?", "DELETE FROM t WHERE id > 1000000",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) "
    "SELECT count(*) FROM c",
    "SELECT json('[1,2')", "SELECT json_extract('{\"a\": 1e999}', '$.a')", "SELECT ?1, ?999",
    "SELECT * FROM sqlite_dbpage", "SELECT -0.0", "SELECT 1e308 * 10", "SELECT randomblob(8)",
    "SELECT ?", "SELECT value FROM generate_series(1, 200000)",
]  # fmt: skip


class Raw:
    """A JSON text written as is (literals json.dumps does not produce, bad UTF-8)."""

    def __init__(self, text: bytes) -> None:
        self.text = text


def dump(value: object) -> bytes:
    """JSON text of ``value`` that may hold Raw pieces, NaN and infinities."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return b"[" + b",".join(dump(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(dump(str(k)) + b":" + dump(v) for k, v in value.items()) + b"}"
    if isinstance(value, float) and not math.isfinite(value):
        return b"NaN" if math.isnan(value) else (b"Infinity" if value > 0 else b"-Infinity")
    return json.dumps(value).encode()


def _plain(value: object) -> object:
    """``value`` as msgpack can hold it: Raw pieces and strings with lone surrogates as bytes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k).encode("utf-8", "surrogatepass"): _plain(v) for k, v in value.items()}
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


RAW_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" * 400,
                b"123456789012345678901234567890", b"-0", b"1E+2", b"0.1e-400", b"tru",
                b'"\\ud800"', b'"\\u0000"', b'"\xff\xfe"', b'"\xc3"', b'"a\x00b"', b"",
                b"\x00", b"'single'", b"[1,]", b"{,}"]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\x00", "\ud800", "a\x00b", "\udfff\ud800"]),
    st.sampled_from(RAW_LITERALS).map(Raw),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=4),
    max_leaves=12,
)  # fmt: skip
sql_text = st.sampled_from(SQL) | st.text(max_size=40)
statement = st.one_of(
    sql_text,
    st.tuples(sql_text, st.lists(json_values, max_size=3)).map(lambda t: [t[0], *t[1]]),
    st.tuples(
        sql_text,
        st.dictionaries(st.sampled_from(["a", "v", "", "1", ":a"]), json_values, max_size=3),
    ).map(list),
    json_values,
)
statements = st.lists(statement, min_size=0, max_size=5)
tame_scalars = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=10),
                         st.floats(allow_nan=False, allow_infinity=False),
                         st.sampled_from(["X'00ff'", "x''", "X'0'", "X'zz'"]),
                         st.lists(st.integers(0, 255), max_size=4))  # fmt: skip
tame_statement = st.one_of(
    st.sampled_from(SQL),
    st.tuples(st.sampled_from(SQL), st.lists(tame_scalars, max_size=3)).map(
        lambda t: [t[0], *t[1]]
    ),
    st.tuples(
        st.sampled_from(SQL), st.dictionaries(st.sampled_from(["a", "v"]), tame_scalars, max_size=2)
    ).map(list),
)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """JSON nested deeper than any parser's recursion: closed, left open, arrays, objects."""
    # 12,000 deep is under the request limit as arrays, over it as objects.
    depth = draw(st.sampled_from([50, 999, 1001, 5000, 12_000]))
    opener, closer = draw(
        st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'["SELECT 1",[', b"]")])
    )
    tail = closer * depth if draw(st.booleans()) else b""
    return opener * depth + b"1" + tail


bodies = st.one_of(
    statements.map(dump),
    json_values.map(dump),
    nested(),
    st.binary(max_size=200),
    json_values.map(lambda v: msgspec.msgpack.encode(_plain(v))),
    st.just(b"x" * (MAX_REQUEST_BYTES + 1)),
    st.just(dump(["SELECT 1"] * 1500)),
    st.builds(
        lambda s, junk: s[: len(s) // 2] + junk + s[len(s) // 2 :],
        statements.map(dump),
        st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80"]),
    ),
)

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
header_name = st.text(
    string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=20
)
header_bytes = st.binary(min_size=1, max_size=20).map(
    lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F) or b"\xff"
)
b64 = st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())
# A well-formed Basic login costs the node a bcrypt check (~0.2 s of CPU, on purpose: a wrong
# user takes as long as a wrong password), so the fuzz sends few of them.
basic_login = st.tuples(header_text, header_text).map(
    lambda t: "Basic " + base64.b64encode(f"{t[0]}:{t[1]}".encode()).decode()
)
authorization = st.one_of(
    header_text.map(lambda s: f"Bearer {s}"),
    st.just("Bearer "),
    st.sampled_from(range(10)).flatmap(lambda i: basic_login if i == 9 else st.just("Basic =")),
    b64.filter(lambda s: b":" not in base64.b64decode(s)).map(lambda s: f"Basic {s}"),
    st.sampled_from(["Basic", "Basic !!!", "Basic =", "bearer x", "Digest x", "Bearer a b c"]),
    header_text,
)
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/msgpack", "a/b/c;;;", "", "application/json; charset=\"",
])  # fmt: skip


@dataclass
class Request:
    to_replica: bool
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    well_formed: bool
    """False when the fuzz broke HTTP itself (then the app may never see the request, and
    aiohttp's own plain-text refusal is fine)."""
    waits: bool = False
    """The declared length is more than is sent: nobody answers until the client gives up."""
    version: bytes = b"HTTP/1.1"

    def __repr__(self) -> str:
        return f"Request({'replica' if self.to_replica else 'primary'}, {self.raw()!r:.2000})"

    def raw(self, token: bytes = b"") -> bytes:
        """The request's bytes, with ``token`` as the cluster token where it asks for it."""
        headers = [(k, v.replace(TOKEN, token)) for k, v in self.headers]
        return build(self.method, self.target, headers, self.body, self.version)


TOKEN = b"<cluster token>"
"""Stands for the cluster token in a generated request (the fixture makes the token)."""


def _encode_query(pairs: list[tuple[str, str]], raw: bool) -> str:
    if raw:  # as written, percent signs and all
        return "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}"
                    for k, v in pairs)  # fmt: skip


GET_ROUTES = (
    "/db/query",
    "/db/backup",
    "/leader",
    "/readyz",
    "/nodes",
    "/status",
    "/health",
    "/metrics",
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Half of the requests are tame (a known route, its method, a body of statements, honest
    framing) with a few hostile parts; the others are hostile in every part."""
    # hypothesis starts from the simplest choices (False, 0, the first of a list): those are
    # the tame ones here, so that the tame requests are not crowded out.
    hostile = draw(st.booleans())

    def odd(one_in: int) -> bool:
        """Whether to make this part hostile: always in a hostile request, else 1 in N."""
        return hostile or draw(st.sampled_from(range(one_in))) == one_in - 1

    to_replica = draw(st.booleans())
    routes = [r for r in ROUTES if not (to_replica and r in CHANGES_ROLE)]
    path = draw(st.sampled_from(routes))
    if odd(8):
        path = draw(st.one_of(
            st.sampled_from(routes).map(lambda r: r + "/"),
            st.sampled_from(["/", "//db/query", "/db/query/../status", "/DB/QUERY", "/db/%71uery",
                             "/db/query%00", "/%2e%2e/status", "/db", "/kv", "*", "/" + "a" * 5000,
                             "http://example/db/query", "/db/query;x=1", "/db/query#frag"]),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                  exclude_characters="?#%"), max_size=30).map(lambda s: "/" + s),
        ))  # fmt: skip
    method = (
        b"GET" if path in GET_ROUTES and (path != "/db/query" or draw(st.booleans())) else b"POST"
    )
    if odd(10):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS",
                                       b"PATCH", b"TRACE", b"CONNECT", b"FOO"]))  # fmt: skip
    # aiohttp's parser (llhttp) knows the methods by name and refuses others itself, and a
    # CONNECT must name a host, not a path.
    well_formed = method not in (b"CONNECT", b"FOO")

    pairs: list[tuple[str, str]] = []
    if method == b"GET" and path == "/db/query":
        pairs += [("q", q) for q in draw(st.lists(sql_text, min_size=1, max_size=3))]
    pairs += draw(st.lists(st.sampled_from(GOOD_PARAMS), max_size=3))
    if odd(3):
        pairs += draw(st.lists(st.tuples(st.sampled_from(PARAMS), st.sampled_from(JUNK_VALUES)),
                               max_size=3))  # fmt: skip
    if odd(4):
        pairs += draw(st.lists(st.tuples(st.sampled_from(PARAMS) | st.text(max_size=8),
                                         st.sampled_from(JUNK_VALUES) | sql_text), max_size=6))  # fmt: skip
    query = _encode_query(draw(st.permutations(pairs)), raw=odd(8) and draw(st.booleans()))
    target = (path + ("?" + query if query else "")).encode("utf-8", "surrogatepass")
    if any(c <= 0x20 or c >= 0x7F for c in target) or (
        path == "*" and (method != b"OPTIONS" or query)
    ):
        well_formed = False
    if odd(30) and draw(st.sampled_from(range(10))) == 9:  # bytes no request target may hold
        target += draw(st.sampled_from([b" ", b"\x00", b"\xff", b"\r\n", b"\t"]))
        well_formed = False

    body = b""
    if method not in (b"GET", b"HEAD") or odd(6):
        body = draw(bodies) if odd(4) else dump(draw(st.lists(tame_statement, min_size=1,
                                                              max_size=4)))  # fmt: skip
        if path == "/kv/exec" and not odd(3):
            body = msgspec.msgpack.encode(_plain(draw(json_values)))
    headers: list[tuple[bytes, bytes]] = [(b"Connection", b"close")]
    host: bytes | None = b"127.0.0.1"
    if odd(10):
        host = draw(st.sampled_from([b"", b"[::1", b"a:b:c", b"%%", b"x" * 300, b"h:99999",
                                     b"\xff", b"app.example:-1", b"@", None]))  # fmt: skip
    if host is not None:
        headers.insert(0, (b"Host", host))
    well_formed = well_formed and host is not None  # HTTP/1.1 requires it
    if not odd(4):
        headers.append((b"Content-Type", b"application/json"))
    elif draw(st.booleans()):
        headers.append((b"Content-Type", draw(content_types).encode()))
    if odd(10):
        encoding = draw(st.sampled_from(["gzip", "deflate", "br", "zstd", "identity",
                                         "gzip, deflate", "x-junk", ""]))  # fmt: skip
        if encoding == "gzip":
            body = draw(st.sampled_from([gzip.compress(body), body, BOMB]))
        elif encoding == "deflate":
            body = draw(st.sampled_from([zlib.compress(body), body]))
        headers.append((b"Content-Encoding", encoding.encode()))
    # The right token (tame, and a third of the hostile ones: else the auth guard would answer
    # them all before the rest of the port sees them), a wrong one, or none.
    if odd(3) and draw(st.sampled_from(range(3))) != 0:
        if draw(st.booleans()):
            headers.append((b"Authorization", draw(authorization).encode()))
        elif draw(st.booleans()):  # bytes that are not UTF-8 (HTTP allows them in a value)
            headers.append((b"Authorization", draw(st.sampled_from([b"Bearer ", b"Basic "]))
                            + draw(header_bytes)))  # fmt: skip
    else:
        headers.append((b"Authorization", b"Bearer " + TOKEN))
    if odd(4):
        headers.append((b"Origin", draw(st.sampled_from(
            [b"https://app.example", b"https://evil.example", b"null", b""]))))  # fmt: skip
        if method == b"OPTIONS" and draw(st.booleans()):
            headers.append((b"Access-Control-Request-Method", b"POST"))
    if odd(6):
        headers.append((b"X-Litecluster-Position", draw(st.sampled_from(JUNK_VALUES)).encode(
            "utf-8", "surrogatepass")))  # fmt: skip
    if odd(8) and draw(st.sampled_from(range(4))) == 3:
        headers.append((b"Expect", draw(st.sampled_from([b"100-continue", b"junk"]))))
    if odd(6):
        headers.append((draw(header_name).encode(), draw(header_text).encode()))
    if odd(20) and draw(st.sampled_from(range(10))) == 9:  # not a header line at all
        headers.append((draw(st.sampled_from([b":", b"a b", b"\x00", b"\xff", b""])), b"x"))
        well_formed = False

    waits = False
    framing = "length"
    if odd(8):
        framing = draw(st.sampled_from(["length", "chunked", "chunked", "none", "short", "long",
                                        "junk", "twice", "both"]))  # fmt: skip
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif framing == "none":
        well_formed = well_formed and not body
    elif framing == "short":
        headers.append((b"Content-Length", str(max(len(body) - 3, 0)).encode()))
        well_formed = well_formed and not body  # the rest parses as a next request
    elif framing == "long":
        headers.append((b"Content-Length", str(len(body) + 5).encode()))
        well_formed, waits = False, True
    elif framing == "junk":
        headers.append((b"Content-Length", draw(st.sampled_from(
            [b"abc", b"-1", b"1, 2", b"99999999999999999999", b"0x10", b" "]))))  # fmt: skip
        well_formed = False
    elif framing == "twice":
        headers += [(b"Content-Length", str(len(body)).encode())] * 2
        well_formed = False
    else:
        headers += [(b"Content-Length", str(len(body)).encode()),
                    (b"Transfer-Encoding", b"chunked")]  # fmt: skip
        well_formed = False
    version = b"HTTP/1.1"
    if odd(10):
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9",
                                        b"HTTP/1", b"http/1.1", b"FOO"]))  # fmt: skip
        well_formed = well_formed and version in (b"HTTP/1.1", b"HTTP/1.0")
    return Request(to_replica, method, target, headers, body, well_formed, waits, version)


# ---- the property ---------------------------------------------------------------------------------


def check(answer: Answer | None, req: Request) -> None:
    if answer is None:
        # No answer is allowed only to a request HTTP cannot frame (a body that never ends).
        assert not req.well_formed, "a well-formed request got no answer"
        return
    assert answer.status < 500 or answer.status == 503, (answer.status, answer.body[:500])
    assert b"Traceback" not in answer.body
    if answer.status >= 400 and req.well_formed and req.method != b"HEAD":
        assert answer.headers.get("content-type", "").startswith("application/json"), answer
        got = json.loads(answer.body)
        assert isinstance(got.get("error"), str), got
        assert {"retryable", "indeterminate", "committed", "hint"} <= set(got), got
    json_type = answer.headers.get("content-type", "").startswith("application/json")
    if answer.status == 200 and req.method != b"HEAD" and json_type:
        # Strict JSON: NaN and the infinities are not JSON.
        json.loads(answer.body, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> object:
    raise AssertionError(f"{name} in a JSON answer")


def plain(
    method: bytes,
    target: bytes,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    replica: bool = False,
    length: bool = True,
    well_formed: bool = True,
) -> Request:
    """One request written out: each bug the fuzz found is sent every run, whatever the
    generator happens to draw."""
    h = [(b"Host", b"127.0.0.1"), (b"Connection", b"close"), *(headers or [])]
    if not any(k == b"Authorization" for k, _ in h):
        h.append((b"Authorization", b"Bearer " + TOKEN))
    if length:
        h.append((b"Content-Length", str(len(body)).encode()))
    return Request(replica, method, target, h, body, well_formed)


CHUNKED = [(b"Transfer-Encoding", b"chunked")]
BIG = b"x" * (MAX_REQUEST_BYTES + 1)
FOUND = [
    plain(b"POST", b"/db/execute", b'["SELECT 9e999"]'),
    plain(b"GET", b"/db/query?q=SELECT%20-9e999,1&level=none", replica=True),
    plain(b"POST", b"/db/query", b'[["SELECT ?", 1e999]]'),
    plain(b"POST", b"/db/request", b'[["SELECT ?", NaN]]', replica=True),
    plain(b"POST", b"/db/execute", b"[" * 100_000),
    plain(b"POST", b"/db/execute", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    plain(b"POST", b"/db/execute", b"[]", [(b"Content-Encoding", b"gzip")]),
    plain(b"POST", b"/db/execute", BOMB, [(b"Content-Encoding", b"gzip")]),
    plain(b"POST", b"/db/execute", b"x", [(b"Content-Length", b"99999999999")], length=False),
    plain(b"POST", b"/db/query", f"{len(BIG):x}\r\n".encode() + BIG + b"\r\n0\r\n\r\n",
          CHUNKED, length=False),
    plain(b"POST", b"/kv/exec", BIG),
    plain(b"POST", b"/db/execute", b"zz\r\n[]\r\n0\r\n\r\n", CHUNKED, length=False,
          well_formed=False),
    plain(b"GET", b"/status", headers=[(b"Expect", b"junk")]),
    plain(b"GET", b"/db/query?q=SELECT%201&level=none&min_position=1:99999", replica=True),
    plain(b"OPTIONS", b"/db/execute", headers=[(b"Origin", b"https://app.example"),
                                              (b"Access-Control-Request-Method", b"POST")]),
    plain(b"OPTIONS", b"/db/execute", headers=[(b"Origin", b"https://evil.example"),
                                              (b"Access-Control-Request-Method", b"POST")]),
    plain(b"POST", b"/db/execute", b'["SELECT 1"]', [(b"Authorization", b"Bearer \x80\xff")]),
    plain(b"GET", b"/db/query?q=SELECT%201&freshness=nan&level=none", replica=True),
    plain(b"GET", b"/status", headers=[(b"Authorization", b"Bearer " + b"x" * 9000)],
          well_formed=False),
    plain(b"GET", b"/db/query?q=" + b"1" * 9000, well_formed=False),
    plain(b"POST", b"/db/execute", b'["SELECT 1"]', [(b"Content-Length", b"5")], length=False,
          well_formed=False),
]  # fmt: skip


def _with_examples(test: Any) -> Any:
    for req in FOUND:
        test = example(req=req)(test)
    return test if SEED is None else seed(int(SEED))(test)


@_with_examples
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(req=requests())
def test_no_request_gets_a_5xx_or_leaves_a_traceback(fuzzed: Fuzzed, req: Request) -> None:
    node = fuzzed.replica if req.to_replica else fuzzed.primary
    raw = req.raw(fuzzed.token)
    started = time.monotonic()
    answer = exchange(node.http, raw, timeout=0.5 if req.waits else 10, method=req.method)
    took = time.monotonic() - started
    fuzzed.statuses[answer.status if answer else None] += 1
    fuzzed.sent.update(k for k, marker in _MARKERS.items() if marker in req.raw(TOKEN))
    fuzzed.sent.add("replica" if req.to_replica else "primary")
    fuzzed.sent.add("well-formed" if req.well_formed else "broken")
    if os.environ.get("LITECLUSTER_FUZZ_DEBUG") and answer:
        print("DBG", f"{took:.3f}", answer.status, req.method, req.target[:60], answer.body[:150])
    check(answer, req)
    for n in (fuzzed.primary, fuzzed.replica):
        logged = fuzzed.new_log(n)
        assert "Traceback" not in logged, logged[-3000:]
        assert n.running, n.log_text[-3000:]


def test_after_the_fuzz_both_nodes_still_write_and_read(fuzzed: Fuzzed) -> None:
    if fuzzed.statuses:  # the fuzz ran first (not deselected): it reached every kind of answer
        print(dict(fuzzed.statuses))
        assert {200, 204, 400, 403, 404, 405, 413, 415} <= set(fuzzed.statuses), fuzzed.statuses
        # A fuzz that silently sent only GET / would pass everything.
        kinds = {*_MARKERS, "replica", "primary", "well-formed", "broken"}
        assert kinds <= fuzzed.sent, kinds - fuzzed.sent
    for node in (fuzzed.primary, fuzzed.replica):
        mark = f"after the fuzz, through {node.node_id}"  # no fuzzed request writes this
        r = httpx.post(f"http://{node.http}/db/execute", headers=fuzzed.auth,
                       json=[["INSERT INTO t(v) VALUES(?)", mark]], timeout=10)  # fmt: skip
        assert r.status_code == 200, r.text
        assert "error" not in r.json()["results"][0], r.text
        r = httpx.post(f"http://{node.http}/db/query", headers=fuzzed.auth, timeout=10,
                       json=[["SELECT count(*) FROM t WHERE v = ?", mark]])  # fmt: skip
        assert r.json()["results"][0]["values"] == [[1]], r.text
    for node in (fuzzed.primary, fuzzed.replica):
        assert "Traceback" not in node.log_text
        assert node.running


_MARKERS = {
    "execute": b"POST /db/execute",
    "query": b"/db/query?",
    "kv": b"/kv/exec",
    "backup": b"GET /db/backup",
    "level": b"level=",
    "freshness": b"freshness=",
    "min_position": b"min_position=",
    "gzip": b"Content-Encoding: gzip",
    "bearer": b"Authorization: Bearer",
    "token": b"Authorization: Bearer " + TOKEN,
    "basic": b"Authorization: Basic",
    "chunked": b"Transfer-Encoding: chunked",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "deep": b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "origin": b"Origin: https://app.example",
}

"""The asyncio client: ``await litecluster.client.aio.connect(...)`` (remote mode over HTTP).

The same calls as :class:`litecluster.client.sync.Client`, as coroutines, on one pooled
``httpx.AsyncClient``. Embedded replicas are a synchronous feature (their reads are local
function calls of a few microseconds, cheaper than any await).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import httpx

from litecluster.client.errors import transport_error
from litecluster.client.sync import (
    ExecuteResult,
    Params,
    QueryResult,
    auth_headers,
    parse_response,
    query_result,
    statement,
    write_results,
)
from litecluster.engine.position import Position
from litecluster.replication.tls import client_context


class AsyncClient:
    def __init__(
        self, url: str, *, db: str = "main", ca: str | None = None, timeout: float = 10.0,
        token: str | None = None, token_file: str | os.PathLike[str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Credentials as :class:`litecluster.client.sync.Client`'s."""
        self.url = url if "://" in url else f"http://{url}"
        self.db = db
        verify = client_context(ca, tls=True)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=verify,
                                       headers=auth_headers(token, token_file, auth))  # fmt: skip

    async def _post(self, path: str, body: list[Any], params: dict[str, str]) -> dict[str, Any]:
        try:
            resp = await self._http.post(path, json=body, params={"db": self.db, **params})
        except httpx.HTTPError as exc:
            raise transport_error(self.url, exc, write=path != "/db/query") from None
        return parse_response(resp)

    async def execute(self, sql: str, params: Params | None = None) -> ExecuteResult:
        data = await self._post("/db/execute", [statement(sql, params)], {})
        results, position = write_results(data)
        r = results[0]
        return ExecuteResult(r.get("last_insert_id"), int(r.get("rows_affected", 0)), position)

    async def transaction(self, statements: list[tuple[str, Params | None]]) -> Position | None:
        data = await self._post(
            "/db/execute", [statement(s, p) for s, p in statements], {"transaction": "true"}
        )
        return write_results(data)[1]

    async def query(
        self, sql: str, params: Params | None = None, *, level: str = "weak",
        min_position: Position | None = None,
    ) -> QueryResult:  # fmt: skip
        q = {"level": level}
        if min_position is not None:
            q["min_position"] = f"{min_position.epoch}:{min_position.txid}"
        return query_result(await self._post("/db/query", [statement(sql, params)], q))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def connect(url: str = "http://127.0.0.1:4002", **kwargs: Any) -> AsyncClient:
    return AsyncClient(url, **kwargs)

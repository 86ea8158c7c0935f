"""The one error body of the HTTP port (docs/http-api.md, "Nothing answers 500")."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def error_response(
    status: int,
    message: str,
    context: dict[str, Any] | None = None,
    *,
    retryable: bool = False,
    indeterminate: bool = False,
    committed: bool = False,
    hint: str = "",
    values: dict[str, Any] | None = None,
) -> web.Response:
    """The one error body of the HTTP port: ``error``, ``retryable``, ``indeterminate``,
    ``committed`` and ``hint`` always, plus an error's ``context`` (as strings) and ``values``
    (as JSON values). The fixed keys win: neither overrides them."""
    body: dict[str, Any] = {k: str(v) for k, v in (context or {}).items()}
    body.update(values or {})
    body.update(error=message, retryable=retryable, indeterminate=indeterminate,
                committed=committed, hint=hint)  # fmt: skip
    return web.json_response(body, status=status)

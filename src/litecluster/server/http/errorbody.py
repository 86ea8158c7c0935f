"""The one error body of the HTTP port (docs/http-api.md, "Nothing answers 500")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from litecluster.errors import COMMITTED_HINT, INDETERMINATE_HINT


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
    hint = hint or _fallback_hint(retryable=retryable, indeterminate=indeterminate,
                                  committed=committed)  # fmt: skip
    body.update(error=message, retryable=retryable, indeterminate=indeterminate,
                committed=committed, hint=hint)  # fmt: skip
    return web.json_response(body, status=status)


def _fallback_hint(*, retryable: bool, indeterminate: bool, committed: bool) -> str:
    """What a client can do, from the flags alone, when the error names no hint of its own
    (a class without one, a foreign primary's answer): every body carries one."""
    if indeterminate:
        return INDETERMINATE_HINT
    if committed:
        return COMMITTED_HINT
    if retryable:
        return "retry, on the primary or another node"
    return "the request fails again as is: see the error, the node's log and docs/http-api.md"

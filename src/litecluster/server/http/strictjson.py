"""Strict JSON on the HTTP port, both ways: only what RFC 8259 calls JSON.

In: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's parser accepts) and numbers that
overflow a double (``1e999`` would become an infinity) are refused, as is JSON nested deeper
than the parser recurses; each is a :class:`~litecluster.errors.RequestError` (400).

Out: never ``NaN`` or an infinity. The SQL results carry none (an infinite REAL is ``null``,
see ``Result.as_json``); anything else that would (none is expected: a status figure, a
forwarded body) becomes ``null`` too instead of failing the answer. The check costs nothing
on the normal path: the encoder refuses non-finite numbers, and only then is the body
rewritten.
"""

from __future__ import annotations

import json
import math
from typing import Any

from litecluster.errors import RequestError


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


def loads(raw: bytes | str) -> Any:
    """The request body ``raw`` as Python values; RequestError when it is not strict JSON."""
    try:
        return json.loads(raw, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an int of more than 4300 digits
        raise RequestError(f"malformed JSON: {exc}") from None


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` as JSON text without NaN or infinities (see the module's docstring)."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj

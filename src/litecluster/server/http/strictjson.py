"""Strict JSON on the HTTP port, both ways: only what RFC 8259 calls JSON.

In: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's parser accepts) and numbers that
overflow a double (``1e999`` would become an infinity) are refused, as is JSON nested deeper
than the parser recurses; each is a :class:`~litecluster.errors.RequestError` (400).

Out: a REAL that is infinite (``SELECT 9e999``; SQLite turns NaN into NULL itself) has no JSON
form. A statement's result that holds one becomes that statement's error, saying how to get
the value; any other non-finite number (none is expected) becomes ``null``. The check costs
nothing on the normal path: the encoder refuses non-finite numbers, and only then is the
body searched.
"""

from __future__ import annotations

import json
import math
from typing import Any

from litecluster.errors import RequestError

NOT_FINITE = ("the result holds an infinite REAL, which JSON cannot carry; "
              "select it as text (CAST(x AS TEXT)) or test it in SQL (x > 1e308)")  # fmt: skip


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
        return json.dumps(_finite(obj, top=True), indent=indent, allow_nan=False)


def _finite(obj: Any, *, top: bool = False) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, dict):
        out = {k: _finite(v) for k, v in obj.items()}
        if top and isinstance(obj.get("results"), list):
            out["results"] = [r if _all_finite(r) else _refused(r) for r in obj["results"]]
        return out
    return obj


def _refused(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"error": NOT_FINITE}
    if isinstance(result, dict) and "time" in result:
        out["time"] = result["time"]
    return out


def _all_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, list):
        return all(_all_finite(v) for v in obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    return True

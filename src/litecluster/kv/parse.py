"""Numbers as redis-server reads and prints them.

Redis is strict and C-shaped: integers are canonical decimal int64 (``string2ll``: no sign
``+``, no leading zero, no space); doubles are what ``strtod`` reads in full (decimal, hex,
``inf``; never NaN, never an overflow); INCRBYFLOAT computes in x87 ``long double`` and prints
``%.17Lf`` with the trailing zeros removed. Python's own ``int()``/``float()`` accept more
(``"1_0"``, ``" 1"``), so every argument goes through these functions instead.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Final

import numpy as np

from litecluster.kv.errors import NOT_FLOAT, NOT_INTEGER, OVERFLOW, fail
from litecluster.kv.resp import parse_ll

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# The strtod grammar (C locale), matched in full: decimal, hexadecimal, inf/infinity, nan.
_FLOAT = re.compile(
    rb"[+-]?(?:(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<inf>(?i:inf(?:inity)?))|(?P<nan>(?i:nan)(?:\([0-9A-Za-z_]*\))?))"
)
_SPACES: Final = b" \t\n\v\f\r"


def to_int(arg: bytes, error: str = NOT_INTEGER) -> int:
    value = parse_ll(arg)
    if value is None:
        raise fail(error)
    return value


def incremented(stored: bytes | None, delta: int, not_an_integer: str) -> int:
    """INCRBY's and HINCRBY's arithmetic: the integer ``stored`` (0 when None; else
    ``not_an_integer`` if it is not one) plus ``delta``, the overflow error if the sum leaves
    int64 (checked before adding, as Redis does)."""
    value = 0 if stored is None else to_int(stored, not_an_integer)
    if (delta < 0 and value < 0 and delta < INT64_MIN - value) or (
        delta > 0 and value > 0 and delta > INT64_MAX - value
    ):
        raise fail(OVERFLOW)
    return value + delta


def is_int(arg: bytes) -> bool:
    return parse_ll(arg) is not None


def _strict_match(arg: bytes) -> re.Match[bytes] | None:
    """The whole argument as one strtod number (no blank first: Redis checks ``isspace``)."""
    if not arg or arg[0] in _SPACES:
        return None
    return _FLOAT.fullmatch(arg)


def _refused(m: re.Match[bytes], is_nan: bool, is_inf: bool, is_zero: bool) -> bool:
    """What Redis refuses of a strtod result: NaN, an overflow, an underflow to zero."""
    if m.group("nan") is not None or is_nan:
        return True
    if is_inf and m.group("inf") is None:
        return True  # overflow (ERANGE, HUGE_VAL)
    if is_zero:
        dec = m.group("dec")
        if dec is not None:
            return re.search(rb"[1-9]", re.split(rb"[eE]", dec)[0]) is not None
        hexa = m.group("hex")
        if hexa is not None:
            return re.search(rb"[1-9a-fA-F]", re.split(rb"[pP]", hexa[2:])[0]) is not None
    return False


def _strtod_value(m: re.Match[bytes]) -> float:
    """The value strtod gives for a full match (overflow: +-inf, underflow: 0; NaN kept)."""
    text = m.group(0)
    sign, body = (text[:1], text[1:]) if text[:1] in (b"+", b"-") else (b"", text)
    if m.group("nan") is not None:
        return math.nan
    if m.group("hex") is not None:
        try:
            return float.fromhex((sign + body).decode())
        except OverflowError:
            return -math.inf if sign == b"-" else math.inf
    return float(text)  # decimal and inf: Python rounds as strtod does


def strtod(arg: bytes) -> float | None:
    """Plain ``strtod`` over the whole argument as ZRANGEBYSCORE's bounds are read: leading
    blanks skipped, an empty string is 0, overflow is infinite; None if not all of it is a
    number or it is NaN (the argument is a C string: it ends at a NUL byte)."""
    nul = arg.find(b"\0")
    text = (arg[:nul] if nul >= 0 else arg).lstrip(_SPACES)
    if not text:
        return 0.0
    m = _FLOAT.fullmatch(text)
    if m is None:
        return None
    value = _strtod_value(m)
    return None if math.isnan(value) else value


def parse_double(arg: bytes) -> float | None:
    """Redis's ``string2d``: all of it a number, no leading blank, no NaN, no overflow."""
    m = _strict_match(arg)
    if m is None:
        return None
    value = _strtod_value(m)
    if _refused(m, math.isnan(value), math.isinf(value), value == 0):
        return None
    return value


def to_double(arg: bytes, error: str = NOT_FLOAT) -> float:
    value = parse_double(arg)
    if value is None:
        raise fail(error)
    return value


def parse_long_double(arg: bytes) -> np.longdouble | None:
    """Redis's ``string2ld`` (``strtold``, at most 5 KiB, no leading blank, no NaN)."""
    if len(arg) >= 5 * 1024:
        return None
    m = _strict_match(arg)
    if m is None or m.group("nan") is not None:
        return None
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = np.longdouble(m.group(0).decode())
    except (ValueError, OverflowError):
        return None
    if _refused(m, bool(np.isnan(value)), bool(np.isinf(value)), bool(value == 0)):
        return None
    return value


def to_long_double(arg: bytes, error: str = NOT_FLOAT) -> np.longdouble:
    value = parse_long_double(arg)
    if value is None:
        raise fail(error)
    return value


def add_long_double(a: np.longdouble, b: np.longdouble) -> np.longdouble | None:
    """``a + b`` in long double; None if the sum is NaN or infinite (Redis refuses those)."""
    with np.errstate(all="ignore"):
        total = a + b
    return total if bool(np.isfinite(total)) else None


def format_long_double(value: np.longdouble) -> bytes:
    """``ld2string(..., LD_STR_HUMAN)``: ``%.17Lf`` without trailing zeros, "-0" as "0"."""
    text = np.format_float_positional(value, precision=17, unique=False, fractional=True)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    return text.encode()


def format_double_human(value: float) -> bytes:
    """A double as Redis prints a score in a string context (``%.17g``)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


def upper(arg: bytes) -> bytes:
    return arg.upper()

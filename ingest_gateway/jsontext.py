"""Strict JSON in and compact JSON out, the way the gateway needs it.

``loads`` refuses what is not JSON even though Python's parser takes it (``NaN``, ``Infinity``) and turns every
parser failure — including nesting too deep for the recursion limit and integers with too many digits — into
one ``JSONError``.  ``dumps_compact`` writes the JSON text an entity value travels as.
"""

from __future__ import annotations

import json
import json.encoder
import math
from typing import Any


class JSONError(ValueError):
    """Invalid input: the text is not (strict) JSON. ``reason`` says why, briefly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constants(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_COMPACT_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_STR = json.encoder.encode_basestring  # the C implementations behind json.dumps(str)
_ASCII_STR = json.encoder.encode_basestring_ascii
_CANONICAL = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False, sort_keys=True)


def loads(text: str | bytes) -> Any:
    """Parse strict JSON. Raises JSONError (never anything else) for input that is not JSON."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        if text.startswith("\ufeff"):  # a UTF-8 byte-order mark some Windows clients send
            text = text[1:]
        return _DECODER.decode(text)
    except JSONError:  # invalid input (NaN/Infinity), already in our form
        raise
    except UnicodeDecodeError as exc:  # invalid input
        raise JSONError(f"not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:  # invalid input
        raise JSONError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # invalid input: nesting beyond the interpreter's recursion limit
        raise JSONError("not acceptable JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's int-from-string digit limit
        raise JSONError(f"not acceptable JSON: {exc}") from None


def dumps_compact(value: Any, ascii_only: bool = False) -> str:
    """Compact JSON text of ``value`` (member order kept). Raises ValueError for non-finite numbers.

    Scalars — most entity values — skip the encoder machinery (same output, several times faster).
    """
    kind = type(value)
    if kind is str:
        return _ASCII_STR(value) if ascii_only else _STR(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return (_COMPACT_ASCII if ascii_only else _COMPACT).encode(value)


def dumps_canonical(value: Any) -> str:
    """Canonical JSON text (sorted members, ASCII only) for hashing. Raises ValueError for non-finite numbers."""
    return _CANONICAL.encode(value)

"""Compact JSON text of the state machines' keys and persisted state, fast — pure, stdlib only.

The sessions and joins machines name a state entry by the JSON text of a few strings (``["acc","sess","TYPE"]``:
distinct tuples never share a key, and the key is stored in ``consumer_state``). ``json.dumps`` with non-default
arguments builds a new encoder on every call, which cost 5–15 % of those workers per record; ids as the
workloads have them need no escaping, so their text is assembled directly. Every function returns exactly what
``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` / ``json.loads`` would (tests/unit/test_keys.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from hashlib import sha1
from uuid import UUID

# json.dumps(value, ensure_ascii=False, separators=(",", ":")) without a new encoder per call
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _plain(text: str) -> bool:
    """True when JSON writes ``text`` as itself between quotes (no quote, backslash or control character)."""
    return '"' not in text and "\\" not in text and text.isprintable()


def strings_key(*parts: str) -> str:
    """``json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))``."""
    if _plain("".join(parts)):
        return '["' + '","'.join(parts) + '"]'
    return dumps(list(parts))


def split_key(key: str) -> list[str]:
    """``json.loads(key)`` for a key made by ``strings_key``."""
    if "\\" not in key:  # then no part holds a quote either: the separators are the only '","'
        return key[2:-2].split('","')
    return json.loads(key)


def uuid5_int(namespace: UUID, name: str) -> int:
    """``uuid.uuid5(namespace, name).int``, without building UUID objects."""
    h = bytearray(sha1(_bytes_of(namespace) + name.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    return int.from_bytes(h, "big")


@lru_cache(maxsize=8)
def _bytes_of(namespace: UUID) -> bytes:
    return namespace.bytes  # a property that converts the UUID's int each time


def uuid_text(value: int) -> str:
    """``str(uuid.UUID(int=value))``."""
    x = value.to_bytes(16, "big").hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


__all__ = ["dumps", "split_key", "strings_key", "uuid5_int", "uuid_text"]

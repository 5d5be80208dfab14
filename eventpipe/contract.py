"""The limits of SPEC section 1 that two places check: the gateway on HTTP input, the consumers again on records
that direct producers wrote straight to Kafka. One definition, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

SESSION_MIN, SESSION_MAX = 8, 20
# A UNIX time in seconds reaches 10^11 only in the year 5138; anything that large is milliseconds (or finer).
SECONDS_CEILING = 100_000_000_000
MESSAGE_MAX, VERSION_MAX = 8000, 255  # JoinEvents Message and Version, in characters
_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def load_event_types(path: str | Path) -> frozenset[str]:
    """The configured set of v3 types: one per line, ``#`` comments. Blocks on the read; raises ValueError/OSError."""
    types = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not _TYPE_NAME.match(name):
            raise ValueError(f"{path}:{number}: event type {name!r} must be 1-64 letters, digits, '_', '.', '-'")
        types.add(name)
    if not types:
        raise ValueError(f"{path} configures no event types")
    return frozenset(types)

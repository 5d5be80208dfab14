"""Data helpers of the gateway tests (unit and integration): the seed requests and an event builder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# The request examples of the two seed documents (../shared/seeds), copied verbatim.
DATA = Path(__file__).resolve().parent / "data"
KEY = "key-of-acme"
OTHER_KEY = "key-of-globex"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def seed_v3_form() -> str:
    """The v3 seed's request body exactly as written: ``data=[ … ]``."""
    return (DATA / "v3_seed_request.txt").read_text().strip()


def seed_join_body(secret: str, guids: Sequence[str]) -> str:
    """The JoinEvents seed's request exactly as written, with its placeholders filled in: first the secret key,
    then the EventId, ComponentId and TypeId."""
    body = (DATA / "join_seed_request.json").read_text()
    placeholder = "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX"
    for value in (secret, *guids):
        body = body.replace(placeholder, value, 1)
    return body


def event(**overrides) -> dict:
    """A valid APPSTART event like the seed's; pass a field as ``...`` to leave it out."""
    base = {"action": "START", "type": "APPSTART", "timestamp": 1365772427, "session": "8nc92io9q",
            "entities": [{"key": "app", "value": "BigBrother"}]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}

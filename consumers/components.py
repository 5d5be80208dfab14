"""PREFIX.components → ``components``: Zidium components as the gateway answered for them (SPEC §1.2).

Stateless. Which write of a component the table keeps is decided by ``row_version``, computed here from the record
alone so a replay writes the identical row: an ``add`` gets ``2^62 - received_at`` (the first add wins, as
GetOrAddComponent returns an existing component unchanged) and an ``update`` ``2^62 + received_at`` (it beats
every add; the latest update wins). Records that do not decode or break a rule are dead-lettered.
"""

from __future__ import annotations

import re
from typing import Any

from eventpipe.codec import COMPONENT, DecodeError
from eventpipe.settings import Settings

from .processors import Message, NoState, Outcome, dead_letter, ms, seconds

VERSION_BASE = 2**62
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_component(record: dict[str, Any]) -> str | None:
    """The first rule a decoded component breaks (naming the field), or None."""
    if not record["account_id"]:
        return "account_id: empty"
    for name in ("component_id", "type_id"):
        if not _GUID.match(record[name]):
            return f"{name}: not a lower-case GUID"
    if record["parent_id"] is not None and not _GUID.match(record["parent_id"]):
        return "parent_id: not a lower-case GUID"
    if not record["system_name"]:
        return "system_name: empty"
    return None


def row_version(operation: str, received_at_ms: int) -> int:
    return VERSION_BASE + received_at_ms if operation == "update" else VERSION_BASE - received_at_ms


class ComponentsSink(NoState):
    """One row per component write; ``components_final`` shows each component's current state."""

    worker = "components"
    table = "components"
    columns = ("account_id", "component_id", "parent_id", "system_name", "display_name", "type_id", "version",
               "properties.name", "properties.value", "properties.type", "created_at", "created_at_ms",
               "updated_at", "operation", "source", "row_version")

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_components

    def handle(self, message: Message) -> Outcome:
        try:
            record = COMPONENT.decode(message.value or b"")
        except DecodeError as exc:  # invalid input: dead letter, move on
            return Outcome("dead_letter", dead_letter=dead_letter(message, exc.reason))
        reason = check_component(record)
        if reason is not None:
            return Outcome("dead_letter", dead_letter=dead_letter(message, reason, record["account_id"]))
        created_ms, received_ms = max(ms(record["created_at"]), 0), max(ms(record["received_at"]), 0)
        props = record["properties"]
        row = (record["account_id"], record["component_id"], record["parent_id"], record["system_name"],
               record["display_name"], record["type_id"], record["version"], [p["name"] for p in props],
               [p["value"] or "" for p in props], [p["type"] for p in props], seconds(created_ms), created_ms,
               seconds(received_ms), record["operation"], record["source"],
               row_version(record["operation"], received_ms))
        return Outcome("written", rows=[(None, row)])

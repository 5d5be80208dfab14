"""Zidium components without coordination: ids derived from what names them, records for Kafka, DTOs for clients.

Zidium's server creates a component under a lock and looks it up by (parent, system name). Here any gateway process
must answer ``GetOrAddComponent`` alike without asking another, so the id *is* a function of what names the
component: ``derive_id("component", account, parent id + lower-cased system name)`` (Zidium's lookup is
case-insensitive, its database collation being so), and the root's id a function of the account alone. A retry, a
second process or a restarted one all give the same id; ``GetRootComponent`` needs no storage at all.

The id encodes nothing that could be read back (it is a hash), so what a component *is* — its names, parent,
type — lives in ClickHouse (``components``, fed through Kafka) and ``directory.py`` reads it from there.
Pure functions; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import MissingField
from ..records import derive_id
from .wire import Property, format_date, optional_text, parse_properties, required_guid

NAME_MAX = 255  # Zidium cuts system and display names to 255 characters
VERSION_MAX = 255
ROOT_TYPE_ID = "14f601ad-2946-4990-8480-517a6d3c6d64"
# Zidium's system component types (Api/Client/ComponentTypeControl/SystemComponentType.cs, apijava ComponentTypeId)
SYSTEM_TYPES = {
    ROOT_TYPE_ID: ("System.ComponentTypes.Root", "Root"),
    "05d8d8e8-1050-41d3-b98e-c17eb22378b9": ("System.ComponentTypes.Folder", "Folder"),
    "685678f9-d778-45bd-8ad2-d11c80fdccad": ("System.ComponentTypes.Others", "Others"),
    "17f4d980-8f31-4cc7-8f5f-f8c1b556e561": ("System.ComponentTypes.DataBase", "DataBase"),
}


@dataclass(frozen=True, slots=True)
class Component:
    """What a component is, as stored in ``components`` and answered as Zidium's ``ComponentDto``."""

    id: str
    parent_id: str | None
    system_name: str
    display_name: str
    type_id: str
    version: str | None
    properties: tuple[Property, ...]
    created_at_ms: int

    def as_dto(self) -> dict[str, Any]:
        """Zidium's ComponentDto (Api.Dto/Components/ComponentDto.cs); CreatedDate in the 24-character form."""
        system, display = SYSTEM_TYPES.get(self.type_id, (self.type_id, self.type_id))
        return {
            "Id": self.id, "ParentId": self.parent_id,
            "Type": {"Id": self.type_id, "SystemName": system, "DisplayName": display,
                     "IsSystem": self.type_id in SYSTEM_TYPES},
            "SystemName": self.system_name, "DisplayName": self.display_name,
            "CreatedDate": format_date(self.created_at_ms), "Version": self.version,
            "Properties": [p.as_dto() for p in self.properties],
        }

    def as_record(self, account: str, operation: str, received_at_ms: int) -> dict[str, Any]:
        """The dict ``eventpipe.codec.COMPONENT`` encodes (``operation``: add | update)."""
        return {
            "account_id": account, "component_id": self.id, "parent_id": self.parent_id,
            "system_name": self.system_name, "display_name": self.display_name, "type_id": self.type_id,
            "version": self.version, "properties": [p.as_record() for p in self.properties],
            "operation": operation, "created_at": self.created_at_ms, "received_at": received_at_ms,
            "source": "http",
        }


def root_id(account: str) -> str:
    return derive_id("component-root", account, "", 0)


def child_id(account: str, parent_id: str, system_name: str) -> str:
    """The id of ``system_name`` under ``parent_id`` (a lower-case GUID): the same from every process."""
    return derive_id("component", account, f"{parent_id}/{system_name.lower()}", 0)


def root(account: str, now_ms: int) -> Component:
    """The account's root component. Its created date is the time of the answer: nothing stores it."""
    return Component(root_id(account), None, "Root", "Root", ROOT_TYPE_ID, None, (), now_ms)


def get_or_add_request(account: str, fields: dict[str, Any], now_ms: int) -> Component:
    """The component a ``GetOrAddComponent`` names (its id derived), as it is when it is new.

    ``fields`` is the case-folded Data. Raises MissingField (1140) for a missing or non-GUID TypeId, a missing
    SystemName or a non-GUID ParentComponentId; InvalidParameter (1141) for fields of the wrong type."""
    system_name = optional_text(fields, "SystemName", NAME_MAX)
    if not system_name:
        raise MissingField("Data.SystemName is required")
    type_id = required_guid(fields, "TypeId")
    parent = fields.get("parentcomponentid")
    parent_id = root_id(account) if parent is None else required_guid(fields, "ParentComponentId")
    display_name = optional_text(fields, "DisplayName", NAME_MAX) or system_name
    version = optional_text(fields, "Version", VERSION_MAX)
    return Component(child_id(account, parent_id, system_name), parent_id, system_name, display_name, type_id,
                     version, parse_properties(fields), now_ms)


def update_request(current: Component, fields: dict[str, Any]) -> Component:
    """``current`` changed as ``UpdateComponent`` asks: null fields stay; properties merge by name (a null value
    removes one), as Zidium's ComponentService does. The id never changes. Raises MissingField/InvalidParameter."""
    changes: dict[str, Any] = {}
    if fields.get("parentid") is not None:
        changes["parent_id"] = required_guid(fields, "ParentId")
    if fields.get("typeid") is not None:
        changes["type_id"] = required_guid(fields, "TypeId")
    for name, attr, limit in (("SystemName", "system_name", NAME_MAX), ("DisplayName", "display_name", NAME_MAX),
                              ("Version", "version", VERSION_MAX)):
        value = optional_text(fields, name, limit)
        if value:
            changes[attr] = value
    updates = parse_properties(fields)
    if updates:
        merged = {p.name: p for p in current.properties}
        for prop in updates:
            if prop.value is None:
                merged.pop(prop.name, None)
            else:
                merged[prop.name] = prop
        changes["properties"] = tuple(merged.values())
    return replace(current, **changes)


def from_record(record: dict[str, Any]) -> Component:
    """A Component from a decoded COMPONENT record or a ClickHouse row dict of the same names."""
    props = tuple(Property(p["name"], p["value"], p["type"]) for p in record["properties"])
    return Component(record["component_id"], record["parent_id"], record["system_name"], record["display_name"],
                     record["type_id"], record["version"], props, record["created_at_ms"])

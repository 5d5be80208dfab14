"""What Zidium's clients put on the wire and expect back: dates, GUIDs, field look-ups, the success body.

Zidium's Java client (``net.zidium:apijava``, Gson) parses a date only when it is exactly 24 characters
(``yyyy-MM-ddTHH:mm:ss.SSSZ``) or 20 (without the milliseconds), else the whole response counts as failed; so every
date we answer is :func:`format_date`'s 24 characters (or null). Field names are matched case-insensitively,
as Zidium's .NET server (fastJSON) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidParameter, MissingField
from ..jsontext import dumps_compact
from ..validation import casefold_keys, parse_guid, parse_start_date

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_DATE_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: beyond it a year has five digits


def format_date(epoch_ms: int) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC — always 24 characters (years 1970..9999)."""
    ms = min(max(epoch_ms, 0), MAX_DATE_MS)
    moment = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def success(data: Any) -> str:
    """The body of a successful Zidium answer: ``{"Code":10,"Data":…}``."""
    return dumps_compact({"Code": 10, "Data": data})


def data_object(data: Any, action: str) -> dict[str, Any]:
    """``Data`` of a request as a case-folded dict. Raises MissingField (1140) when it is missing or no object."""
    if data is None:
        raise MissingField(f"Data is missing ({action} needs Data)")
    if not isinstance(data, dict):
        raise MissingField(f"Data must be an object for {action}")
    return casefold_keys(data)


def required_guid(fields: dict[str, Any], name: str) -> str:
    """``Data.<name>`` as a GUID. Raises MissingField (1140, naming the field) when missing or not a GUID."""
    value = fields.get(name.lower())
    if value is None or value == "":
        raise MissingField(f"Data.{name} is required")
    guid = parse_guid(value)
    if guid is None:
        raise MissingField(f"Data.{name} must be a GUID, not {str(value)[:64]!r}")
    return guid


def optional_text(fields: dict[str, Any], name: str, limit: int) -> str | None:
    """``Data.<name>`` as a string cut to ``limit`` characters (as Zidium cuts names), None when absent.

    Raises InvalidParameter (1141) when it is present but not a string."""
    value = fields.get(name.lower())
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"Data.{name} must be a string")
    return value[:limit]


def parse_date_ms(value: Any) -> int | None:
    """A request date (ISO-8601, UTC without an offset, or ``/Date(ms)/``) as epoch ms; None when unreadable."""
    if not isinstance(value, str):
        return None
    return parse_start_date(value)


def epoch_ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# Zidium's DataType enum (Api.Dto/Enums/DataType.cs): names by number, as .NET accepts either spelling.
DATA_TYPES = {0: "Unknown", 1: "Boolean", 10: "Int32", 20: "Int64", 30: "Double", 40: "DateTime", 50: "Binary",
              60: "Guid", 100: "String"}
_DATA_TYPE_BY_NAME = {name.lower(): name for name in DATA_TYPES.values()}
PROPERTIES_MAX = 1000
PROPERTY_TEXT_MAX = 65536


@dataclass(frozen=True, slots=True)
class Property:
    """One Zidium extended property ``{Name, Value, Type}``; ``value`` None when the client sent null."""

    name: str
    value: str | None
    type: str = "String"

    def as_record(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "type": self.type}

    def as_dto(self) -> dict[str, Any]:
        return {"Name": self.name, "Value": self.value, "Type": self.type}


def parse_properties(fields: dict[str, Any]) -> tuple[Property, ...]:
    """``Data.Properties`` (absent or null: none). Raises MissingField (1140) or InvalidParameter (1141), naming the
    broken element."""
    raw = fields.get("properties")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidParameter("Data.Properties must be an array of {Name, Value, Type}")
    if len(raw) > PROPERTIES_MAX:
        raise InvalidParameter(f"Data.Properties has {len(raw)} elements; at most {PROPERTIES_MAX}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidParameter(f"Data.Properties[{i}] must be an object {{Name, Value, Type}}")
        prop = casefold_keys(item)
        name = prop.get("name")
        if not isinstance(name, str) or not name:
            raise MissingField(f"Data.Properties[{i}].Name is required")
        value = prop.get("value")
        if value is not None and not isinstance(value, str):
            value = dumps_compact(value)  # a number or boolean sent unquoted: keep its JSON text
        type_ = prop.get("type")
        if type_ is None:
            type_name = "String"
        elif isinstance(type_, int) and not isinstance(type_, bool) and type_ in DATA_TYPES:
            type_name = DATA_TYPES[type_]
        elif isinstance(type_, str) and type_.strip().lower() in _DATA_TYPE_BY_NAME:
            type_name = _DATA_TYPE_BY_NAME[type_.strip().lower()]
        else:
            raise InvalidParameter(f"Data.Properties[{i}].Type {str(type_)[:40]!r} is not a Zidium DataType")
        if len(name) > PROPERTY_TEXT_MAX or (value is not None and len(value) > PROPERTY_TEXT_MAX):
            raise InvalidParameter(f"Data.Properties[{i}] is longer than {PROPERTY_TEXT_MAX} characters")
        out.append(Property(name, value, type_name))
    return tuple(out)

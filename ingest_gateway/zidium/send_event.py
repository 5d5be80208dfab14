"""``SendEvent`` as Zidium's server does it (Core/AccountDb/Services/EventService/EventService.cs), then a join record.

The server's derivations, followed here:

* names: a missing TypeSystemName takes TypeDisplayName and the other way round; both missing → 1140
  naming TypeSystemName; both cut to 255 characters, TypeCode to 20;
* Category: ``ComponentEvent`` unless given (``ApplicationError`` = 3, ``ComponentEvent`` = 1);
* event type: one per (category, system name) — its id here is derived from (account, category, lower-cased
  system name), so every process resolves a TypeSystemName to the same TypeId without a lookup;
* JoinKey when none is given: for ``ApplicationError`` ``HashHelper.GetInt64(TypeSystemName, Properties["Stack"])``
  — MD5 of ``"name:stack"`` (UTF-8), the two little-endian int64 halves XOR-ed — else 0;
* JoinIntervalSeconds when none is given: ``ApplicationError`` one day, otherwise 0;
* Importance when none is given: ``Alarm`` for ``ApplicationError``, else ``Unknown``; StartDate: the receive time;
  Count < 1 → 1.

Not followed (no coordination, no per-account settings here): the check that the component exists (an unknown
ComponentId is stored like any other), intervals and importances overridden per event type in Zidium's UI, and
the extra "System.FutureEvent" event (a StartDate beyond ``max_future_s`` is refused with 1151, nothing stored).

The answer's ``EventId`` is the id the joined event gets when this record starts one; when it joins an existing
joined event (same component, type, importance, JoinKey within the interval) that event keeps its own id.
Pure functions; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import FutureEvent, InvalidParameter, MissingField
from ..records import derive_id, raw_canonical
from ..validation import JoinFields, Rejection, validate_join_record
from .wire import Property, optional_text, parse_properties

NAME_MAX = 255
TYPE_CODE_MAX = 20
ONE_DAY_S = 86400.0
CATEGORIES = {"applicationerror": "ApplicationError", "componentevent": "ComponentEvent", "3": "ApplicationError",
              "1": "ComponentEvent"}
STACK_PROPERTY = "Stack"  # ExtentionPropertyName.Stack; matched exactly (ordinal), as the server does


@dataclass(frozen=True, slots=True)
class SendEvent:
    """A valid SendEvent: the join record's fields plus what SendEvent adds (type names, category, properties)."""

    record_id: str  # deterministic id of the join record (a retried request gets the same one)
    fields: JoinFields
    category: str
    type_system_name: str
    type_display_name: str
    type_code: str | None
    properties: tuple[Property, ...]


def zidium_join_key(*values: str | None) -> int:
    """Zidium's ``HashHelper.GetInt64(params string[])``: ``string.Join(":", values)`` (null as ""), MD5 over its
    UTF-8, the two halves read as little-endian int64 and XOR-ed."""
    digest = hashlib.md5(":".join(v or "" for v in values).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little", signed=True) ^ int.from_bytes(digest[8:], "little", signed=True)


def event_type_id(account: str, category: str, system_name: str) -> str:
    return derive_id("event-type", account, f"{category}/{system_name.lower()}", 0)


def _category(value: Any) -> str:
    if value is None:
        return "ComponentEvent"
    found = CATEGORIES.get(str(value).strip().lower()) if isinstance(value, (str, int)) else None
    if found is None or isinstance(value, bool):
        raise InvalidParameter(f"Data.Category must be ApplicationError or ComponentEvent, not {str(value)[:40]!r}")
    return found


def parse_send_event(account: str, data: dict[str, Any], received_at_ms: int, max_future_s: int) -> SendEvent:
    """Validate ``Data`` (case-folded) of a SendEvent and derive what Zidium derives.

    Raises MissingField (1140) naming a missing field or a non-GUID ComponentId, InvalidParameter (1141) for an
    unusable value, FutureEvent (1151) for a StartDate more than ``max_future_s`` after ``received_at_ms``."""
    if data.get("componentid") is None:
        raise MissingField("Data.ComponentId is required")
    system_name = optional_text(data, "TypeSystemName", NAME_MAX)
    display_name = optional_text(data, "TypeDisplayName", NAME_MAX)
    system_name = system_name if system_name is not None else display_name
    display_name = display_name if display_name is not None else system_name
    if not system_name:
        raise MissingField("Data.TypeSystemName is required (or TypeDisplayName)")
    type_code = optional_text(data, "TypeCode", TYPE_CODE_MAX)
    category = _category(data.get("category"))
    properties = parse_properties(data)
    error = category == "ApplicationError"

    record = {name: data.get(name.lower()) for name in ("ComponentId", "StartDate", "Count", "Message", "Version")}
    record["TypeId"] = event_type_id(account, category, system_name)
    record["JoinKey"] = data.get("joinkey")
    if record["JoinKey"] is None and error:
        stack = next((p.value for p in properties if p.name == STACK_PROPERTY), None)
        record["JoinKey"] = zidium_join_key(system_name, stack)
    interval = data.get("joinintervalseconds", data.get("joininterval"))
    record["JoinInterval"] = interval if interval is not None else (ONE_DAY_S if error else 0.0)
    importance = data.get("importance")
    record["Importance"] = importance if importance is not None else ("Alarm" if error else "Unknown")
    # The event id: a retry of the same request gets the same one; an event without a StartDate is dated by its
    # arrival, so its arrival is part of what it is (two identical dateless events sent apart are two events).
    canonical = raw_canonical(data) + ("" if data.get("startdate") is not None else f"@{received_at_ms}")
    record["EventId"] = derive_id("zidium-event", account, canonical, 0)
    record_id = derive_id("zidium-send", account, canonical, 0)

    result = validate_join_record(record, received_at_ms, max_future_s)
    if isinstance(result, Rejection):
        raise _as_error(result)
    return SendEvent(record_id, result, category, system_name, display_name or system_name, type_code, properties)


def _as_error(rejection: Rejection) -> Exception:
    field = rejection.rule.split(":", 1)[0]
    if rejection.rule == "StartDate:future":
        return FutureEvent(f"Data.StartDate: {rejection.reason}")
    if rejection.rule in ("ComponentId:guid", "ComponentId:required"):
        return MissingField(f"Data.{rejection.reason}")
    return InvalidParameter(f"Data.{field}: {rejection.reason}")


def extras_record(event: SendEvent) -> dict[str, Any]:
    """The join record fields (schema v2) that SendEvent adds to a JoinEvents record."""
    return {"category": event.category, "type_system_name": event.type_system_name,
            "type_display_name": event.type_display_name, "type_code": event.type_code,
            "properties": [p.as_record() for p in event.properties]}

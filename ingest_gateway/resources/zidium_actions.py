"""The Zidium actions besides JoinEvents, each ``(account, Data, received_at_ms) -> response Data`` (SPEC §1.2).

What each answers follows Zidium's server (Core/Api/Dispatcher/DispatcherService.cs); the derivations live in
``ingest_gateway.zidium``. Components and SendEvent records go to Kafka through ``publish`` (which raises
``Unavailable`` when Kafka does not acknowledge); a request whose Data breaks a rule raises a ``GatewayError``
before anything is published, so a refused request stores nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from eventpipe.codec import COMPONENT, JOIN_RECORD
from eventpipe.settings import Settings

from ..errors import Unavailable, UnknownComponent
from ..jsontext import dumps_compact
from ..records import Message, join_key, join_record
from ..zidium import components
from ..zidium.components import Component
from ..zidium.directory import ComponentDirectory, DirectoryUnavailable
from ..zidium.send_event import extras_record, parse_send_event
from ..zidium.wire import data_object, format_date, required_guid

Publish = Callable[[list[Message]], None]


class ZidiumActions:
    """GetRootComponent, GetOrAddComponent, GetComponentById, UpdateComponent, SendEvent, GetEcho, GetServerTime.

    Every method blocks on Kafka (and, for the component look-ups, on ClickHouse); raises GatewayError."""

    def __init__(self, settings: Settings, publish: Publish, directory: ComponentDirectory) -> None:
        self.settings = settings
        self.publish = publish
        self.directory = directory
        self.handlers: dict[str, Callable[[str, Any, int], Any]] = {
            "getrootcomponent": self.get_root_component,
            "getoraddcomponent": self.get_or_add_component,
            "getcomponentbyid": self.get_component_by_id,
            "updatecomponent": self.update_component,
            "sendevent": self.send_event,
            "getecho": self.get_echo,
        }

    # --- components ----------------------------------------------------------------------------------------------
    def get_root_component(self, account: str, data: Any, now_ms: int) -> dict[str, Any]:
        return self._get_or_add(account, components.root(account, now_ms), now_ms).as_dto()

    def get_or_add_component(self, account: str, data: Any, now_ms: int) -> dict[str, Any]:
        wanted = components.get_or_add_request(account, data_object(data, "GetOrAddComponent"), now_ms)
        return self._get_or_add(account, wanted, now_ms).as_dto()

    def get_component_by_id(self, account: str, data: Any, now_ms: int) -> dict[str, Any]:
        component_id = required_guid(data_object(data, "GetComponentById"), "ComponentId")
        return self._existing(account, component_id, now_ms).as_dto()

    def update_component(self, account: str, data: Any, now_ms: int) -> dict[str, Any]:
        fields = data_object(data, "UpdateComponent")
        current = self._existing(account, required_guid(fields, "Id"), now_ms)
        updated = components.update_request(current, fields)
        self._store(account, updated, "update", now_ms)
        return updated.as_dto()

    def _get_or_add(self, account: str, wanted: Component, now_ms: int) -> Component:
        """The component as stored when it is known (the first add wins, as in Zidium), else ``wanted``, stored."""
        try:
            found = self.directory.find(account, wanted.id)
        except DirectoryUnavailable:  # transient: adding again is harmless (the table keeps the first add)
            found = None
        if found is not None:
            return found
        self._store(account, wanted, "add", now_ms)
        return wanted

    def _existing(self, account: str, component_id: str, now_ms: int) -> Component:
        """A known component; the root is always known. Raises UnknownComponent (1100) or Unavailable (503)."""
        try:
            found = self.directory.find(account, component_id)
        except DirectoryUnavailable as exc:  # transient: the client retries
            raise Unavailable(f"components cannot be read right now ({exc})", self.settings.publish_timeout_s) \
                from None
        if found is None and component_id == components.root_id(account):
            found = components.root(account, now_ms)
        if found is None:
            raise UnknownComponent(f"unknown component {component_id} (a component added through another gateway "
                                   "process is known once it is stored, about a second later)")
        return found

    def _store(self, account: str, component: Component, operation: str, now_ms: int) -> None:
        value = COMPONENT.encode(component.as_record(account, operation, now_ms))
        key = dumps_compact([account, component.id]).encode("utf-8")
        self.publish([Message(self.settings.topic_components, key, value)])
        self.directory.remember(account, component)

    # --- events --------------------------------------------------------------------------------------------------
    def send_event(self, account: str, data: Any, now_ms: int) -> dict[str, Any]:
        event = parse_send_event(account, data_object(data, "SendEvent"), now_ms, self.settings.max_future_s)
        record = join_record(account, event.record_id, event.fields, now_ms) | extras_record(event)
        self.publish([Message(self.settings.topic_joins, join_key(account, event.fields), JOIN_RECORD.encode(record))])
        return {"EventId": event.fields.event_id, "EventTypeId": event.fields.type_id}

    # --- misc ----------------------------------------------------------------------------------------------------
    def get_echo(self, account: str, data: Any, now_ms: int) -> Any:
        return data_object(data, "GetEcho").get("message")


def server_time(now_ms: int) -> dict[str, str]:
    """GetServerTime's Data (GetServerTimeResponseDataDto): no key needed, as on Zidium's server."""
    return {"Date": format_date(now_ms)}

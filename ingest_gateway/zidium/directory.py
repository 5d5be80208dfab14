"""Where a gateway process finds a component it may never have seen: ClickHouse, behind a small in-process memory.

A component id is a hash of what names the component (``components.py``), so nothing can be read back from the
id itself: ``GetComponentById`` and ``UpdateComponent`` need the component's names, parent and type from
somewhere. The choices were: keep a registry in Kafka and replay it in every gateway (a new stateful consumer in
each web worker), coordinate the gateways (what the design avoids), or read what the components worker already
writes to ClickHouse. We read ClickHouse — one small point query on the table's sorting key — and remember the
components this process answered for, so a client that adds a component and asks for it at once (before the
components worker has written it) still finds it here. A component added through *another* process is found
once the components worker has written it (about a second); until then it is unknown (Zidium code 1100), which
Zidium's clients treat as "not yet" and retry later.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Protocol

from eventpipe.settings import Settings

from .components import Component
from .wire import Property

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """Transient: ClickHouse did not answer. The caller answers 503 (or goes on without the lookup)."""


class ComponentDirectory(Protocol):
    def find(self, account: str, component_id: str) -> Component | None:
        """The component, or None when unknown. Blocks on the network; raises DirectoryUnavailable."""

    def remember(self, account: str, component: Component) -> None:
        """Note a component this process just published (so it is found before ClickHouse has it)."""


class RecentComponents:
    """The last ``capacity`` components this process published, by (account, id). Thread-safe; never blocks."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Component] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, account: str, component_id: str) -> Component | None:
        with self._lock:
            found = self._items.get((account, component_id))
            if found is not None:
                self._items.move_to_end((account, component_id))
            return found

    def remember(self, account: str, component: Component) -> None:
        with self._lock:
            self._items[(account, component.id)] = component
            self._items.move_to_end((account, component.id))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


_QUERY = ("SELECT component_id, parent_id, system_name, display_name, type_id, version, properties.name, "
          "properties.value, properties.type, created_at_ms FROM components FINAL "
          "WHERE account_id = %(account)s AND component_id = %(id)s LIMIT 1")


class ClickHouseDirectory:
    """``components`` in ClickHouse, behind :class:`RecentComponents`. One client per thread (clickhouse-driver's
    ``Client`` is not thread-safe and the gateway serves with threads)."""

    def __init__(self, settings: Settings, recent: RecentComponents | None = None, timeout_s: float = 2.0) -> None:
        self.settings = settings
        self.recent = recent or RecentComponents()
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from clickhouse_driver import Client

            s = self.settings
            failover = {"alt_hosts": s.clickhouse_alt_hosts} if s.clickhouse_alt_hosts else {}  # a cluster's replicas
            client = Client(host=s.clickhouse_host, port=s.clickhouse_port, user=s.clickhouse_user,
                            password=s.clickhouse_password, database=s.clickhouse_database,
                            connect_timeout=self.timeout_s, send_receive_timeout=self.timeout_s, **failover)
            self._local.client = client
        return client

    def find(self, account: str, component_id: str) -> Component | None:
        found = self.recent.find(account, component_id)
        if found is not None:
            return found
        from clickhouse_driver.errors import Error as ClickHouseError

        try:
            rows = self._client().execute(_QUERY, {"account": account, "id": component_id})
        except (ClickHouseError, OSError, EOFError) as exc:  # transient: server away or restarting
            self._local.client = None
            log.warning("components lookup failed: %s", exc)
            raise DirectoryUnavailable(str(exc)) from None
        if not rows:
            return None
        cid, parent, system, display, type_id, version, names, values, types, created_ms = rows[0]
        props = tuple(Property(n, v, t) for n, v, t in zip(names, values, types))
        return Component(cid, parent, system, display, type_id, version, props, created_ms)

    def remember(self, account: str, component: Component) -> None:
        self.recent.remember(account, component)

"""SendEvent's additions through the joins machine, and the components sink (pure, no I/O)."""

from __future__ import annotations

import json

from consumers.components import ComponentsSink, row_version
from consumers.joins import JoinRecord, JoinWindows
from consumers.processors import JoinsWorker, Message, joined_row
from consumers.state import Restored
from eventpipe.codec import COMPONENT, JOIN_RECORD
from eventpipe.settings import Settings

C, T = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
EXTRAS = ["ApplicationError", "E in M.run", "E in run", "", [["Stack", "at x", "String"]]]


def rec(n: int, start: int, extras=None, interval: float = 600.0) -> JoinRecord:
    return JoinRecord("acme", f"r{n}", None, C, T, 7, start, interval, "Alarm", 1, f"m{n}", None, extras)


def test_a_joined_event_keeps_the_extras_of_the_last_record_that_had_any() -> None:
    machine = JoinWindows()
    machine.process(rec(1, 1_000_000, EXTRAS), 0)
    changes = machine.process(rec(2, 1_001_000), 1)  # a JoinEvents record without extras joins it
    (row,) = [c.row for c in changes if c.row is not None]
    assert row.count == 2 and row.extras == EXTRAS
    columns = joined_row(row)[1][-7:]
    assert columns == ("ApplicationError", "E in M.run", "E in run", "", ["Stack"], ["at x"], ["String"])


def test_a_restored_joined_event_keeps_its_extras() -> None:
    machine = JoinWindows()
    machine.process(rec(1, 1_000_000, EXTRAS), 0)
    machine.process(rec(2, 1_001_000), 1)
    restored = JoinWindows(watermark=machine.watermark, states=[s for _, s in machine.snapshot()])
    (row,) = restored.rows()
    assert row.extras == EXTRAS and row.count == 2 and restored.rows() == machine.rows()


def test_the_joins_worker_reads_join_records_of_both_schema_versions() -> None:
    worker = JoinsWorker(Settings.from_env({}))
    worker.assign(0, Restored(None, ()))
    base = {"account_id": "acme", "record_id": "r1", "event_id": None, "component_id": C, "type_id": T,
            "join_key": 0, "start_date": 1_000_000, "join_interval": 0.0, "importance": "Alarm", "count": 1,
            "message": "m", "version": None, "received_at": 1_000_000, "source": "kafka"}
    v2 = dict(base, record_id="r2", category="ApplicationError", type_system_name="S", type_display_name="D",
              type_code=None, properties=[{"name": "k", "value": None, "type": "String"}])
    out1 = worker.handle(Message("t.joins", 0, 0, 0, JOIN_RECORD.encode(base)))
    out2 = worker.handle(Message("t.joins", 0, 1, 0, JOIN_RECORD.encode(v2)))
    assert out1.rows[0][1][-7:] == ("", "", "", "", [], [], [])
    assert out2.rows[0][1][-7:] == ("ApplicationError", "S", "D", "", ["k"], [""], ["String"])


def component(operation: str, received: int, **overrides) -> bytes:
    record = {"account_id": "acme", "component_id": C, "parent_id": None, "system_name": "Root",
              "display_name": "Root", "type_id": T, "version": None, "properties": [], "operation": operation,
              "created_at": 5000, "received_at": received, "source": "http"}
    record.update(overrides)
    return COMPONENT.encode(record)


def test_components_sink_orders_writes_first_add_then_latest_update() -> None:
    sink = ComponentsSink(Settings.from_env({}))
    early, late = (sink.handle(Message("t.components", 0, i, 0, component("add", r))) for i, r in
                   enumerate((1000, 2000)))
    update = sink.handle(Message("t.components", 0, 2, 0, component("update", 1500)))
    versions = [o.rows[0][1][-1] for o in (early, late, update)]
    assert versions[0] > versions[1] and versions[2] > versions[0]
    assert versions[2] == row_version("update", 1500)
    bad = sink.handle(Message("t.components", 0, 3, 0, component("add", 1, parent_id="nope")))
    assert bad.outcome == "dead_letter" and "parent_id" in bad.dead_letter["reason"]
    assert sink.handle(Message("t.components", 0, 4, 0, b"junk")).outcome == "dead_letter"

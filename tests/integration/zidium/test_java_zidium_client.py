"""Zidium's published Java client (net.zidium:apijava 1.0.5, unchanged) delivers its events through eventpipe:
root → child component → an error (sent twice) and a custom event → rows in joined_events_final and
components_final (SPEC §1.2; issue 9)."""

from __future__ import annotations

from deploy.migrate import client as clickhouse, statements
from eventpipe.settings import REPO_ROOT

from . import java_build
from .conftest import Stack, wait_rows

JOINED = """
SELECT e.type_system_name, e.type_display_name, e.category, e.importance, e.message, e.count, e.records,
       e.properties.name, e.properties.value, c.system_name, c.parent_id
FROM joined_events_final AS e
ANY LEFT JOIN (SELECT component_id, system_name, parent_id FROM components_final) AS c USING component_id
WHERE e.component_id = %(component)s
ORDER BY e.type_display_name DESC
"""


def test_the_published_java_client_delivers_events_into_clickhouse(stack: Stack, java_classpath: str) -> None:
    stack.workers.start("joins")
    stack.workers.start("components")
    run = java_build.run(java_classpath, "ZidiumClientRun", stack.url + "/api/", stack.key)
    assert run.returncode == 0, run.stderr[-3000:]
    out = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    assert out["childFake"] == "false", run.stdout  # GetRootComponent and GetOrAddComponent answered
    assert out["echo"] == "10:ping"
    assert out["byIdFake"] == "false"  # GetComponentById found the child
    # The one request this client cannot make: GetServerTime (it dereferences its own null body before sending).
    assert out.get("lastFailed", "GetServerTime").startswith(("GetServerTime", "null")), out

    ch = clickhouse(stack.settings, stack.settings.clickhouse_database)
    child, root = out["child"], out["root"]
    rows = wait_rows(ch, JOINED, {"component": child}, 2, until=lambda rows: sum(r[5] for r in rows) >= 3)
    print("\n".join(map(repr, rows)))
    assert len(rows) == 2, rows
    error, custom = rows
    system, display, category, importance, message, count, records, names, values, comp_name, parent = error
    assert system == "java.lang.IllegalStateException in io.eventpipe.interop.ZidiumClientRun.main"
    assert display == "IllegalStateException in ZidiumClientRun.main"
    assert (category, importance, message) == ("ApplicationError", "Alarm", "Payment failed")
    assert (count, records) == (2, 2)  # the same error twice: joined (ApplicationError: a day's JoinInterval)
    assert {"Stack", "LineNumber", "FileName", "MethodName"} <= set(names)
    assert dict(zip(names, values))["MethodName"] == "main"
    assert (comp_name, parent) == ("billing-service", root)
    system, display, category, importance, message, count, records, names, values, comp_name, parent = custom
    # This client sends every event as Category ApplicationError; without a TypeSystemName the display name is used
    assert (system, display, category, importance, message, count) == (
        "Export finished", "Export finished", "ApplicationError", "Success", "Nightly export done", 1)
    assert dict(zip(names, values)) == {"rows": "1200"} and comp_name == "billing-service"

    components = wait_rows(ch, "SELECT component_id, parent_id, system_name FROM components_final "
                               "ORDER BY system_name", {}, 2)
    assert sorted(components) == sorted([(root, None, "Root"), (child, root, "billing-service")])

    # The analysts' query of docs/queries.sql that reads joined events with their component and its parent.
    query = next(q for q in statements((REPO_ROOT / "docs" / "queries.sql").read_text(), "unused")
                 if "components_final" in q and "parent" in q)
    named = {(r[0], r[1], r[2], r[4]) for r in ch.execute(query)}
    assert named == {("billing-service", "Root", "IllegalStateException in ZidiumClientRun.main", 2),
                     ("billing-service", "Root", "Export finished", 1)}

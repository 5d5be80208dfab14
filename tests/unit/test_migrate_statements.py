import re

import pytest

from deploy.migrate import SQL_DIR, statements

# Types and clauses that ClickHouse 18.16 lacks or current ClickHouse rejects (SPEC section 3).
FORBIDDEN = {
    "Map/DateTime64/LowCardinality/SimpleAggregateFunction/Object type": re.compile(
        r"\b(?:Map|DateTime64|LowCardinality|SimpleAggregateFunction|Object)\s*\("),
    "TTL clause": re.compile(r"\bTTL\b"),
    "JSON type": re.compile(r"\sJSON\s*(?:,|\)|$)", re.M),
}


def test_statements_split_at_line_end_semicolons_and_substitute_the_database() -> None:
    sql = "-- a comment\nCREATE TABLE t (s String DEFAULT ';') ENGINE = Memory;\nCREATE VIEW v AS SELECT * FROM {database}.t;\n"
    assert statements(sql, "db1") == [
        "CREATE TABLE t (s String DEFAULT ';') ENGINE = Memory", "CREATE VIEW v AS SELECT * FROM `db1`.t"]


@pytest.mark.parametrize("rule", FORBIDDEN)
def test_the_forbidden_list_catches_what_it_names(rule: str) -> None:
    samples = {"Map/DateTime64/LowCardinality/SimpleAggregateFunction/Object type": "c LowCardinality(String)",
               "TTL clause": "ORDER BY x TTL d + INTERVAL 1 DAY", "JSON type": "CREATE TABLE t (j JSON)"}
    assert FORBIDDEN[rule].search(samples[rule])


def test_migrations_avoid_what_clickhouse_18_16_or_current_clickhouse_lack() -> None:
    for path in sorted(SQL_DIR.glob("*.sql")):
        for statement in statements(path.read_text(), "db"):
            for rule, pattern in FORBIDDEN.items():
                assert not pattern.search(statement), f"{path.name} uses a {rule}: {statement[:200]}"

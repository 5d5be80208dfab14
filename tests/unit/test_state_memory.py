"""bench.state_memory attributes an open key's memory to where it is allocated (issue 16's profile)."""

from bench.state_memory import per_key


def test_joins_windows_are_profiled_per_key_with_their_sites() -> None:
    rows = per_key("joins", 2_000, 5)
    (total, label), sites = rows[0], rows[1:]
    assert label == "total" and total > 500  # a join window holds far more than its 16-byte digest
    assert len(sites) == 5 and any("consumers/joins.py" in site for _, site in sites)
    assert sum(size for size, _ in sites) <= total + 1


def test_sessions_are_profiled_too() -> None:
    (total, _), *sites = per_key("sessions", 2_000, 3)
    assert 50 < total < 2_000 and any("consumers/sessions.py" in site for _, site in sites)

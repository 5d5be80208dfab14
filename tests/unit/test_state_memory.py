"""bench.state_memory attributes an open key's memory to where it is allocated (issue 16's profile), and guards it."""

from bench.state_memory import per_key


def test_a_join_window_costs_about_300_bytes_and_is_profiled_by_site() -> None:
    rows = per_key("joins", 2_000, 5)
    (total, label), sites = rows[0], rows[1:]
    # 298 B at 2 000 windows (297 at 100 000: the value 123, its UUID id 44, the dict slot and the group index,
    # the digest table, the timer bucket); it was 935 B with a list of fields per window
    assert label == "total" and 200 < total < 330
    assert len(sites) == 5 and any("consumers/joins.py" in site for _, site in sites)
    assert sum(size for size, _ in sites) <= total + 1


def test_a_session_costs_about_210_bytes() -> None:
    (total, _), *sites = per_key("sessions", 2_000, 3)
    assert 150 < total < 250 and any("consumers/sessions.py" in site for _, site in sites)  # 212 B at 2 000

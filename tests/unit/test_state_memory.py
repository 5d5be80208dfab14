"""bench.state_memory attributes an open key's memory to where it is allocated (issue 16's profile), and guards it."""

import os
import subprocess
import sys

import pytest

from bench.state_memory import per_key
from eventpipe.settings import REPO_ROOT


def test_a_join_window_costs_about_300_bytes_and_is_profiled_by_site() -> None:
    rows = per_key("joins", 2_000, 5)
    (total, label), sites = rows[0], rows[1:]
    # 298 B at 2 000 windows (297 at 100 000: the value 123, its UUID id 44, the dict slot and the group index,
    # the digest table, the timer bucket); it was 935 B with a list of fields per window
    assert label == "total" and 200 < total < 330
    assert len(sites) == 5 and any("consumers/joins.py" in site for _, site in sites)
    assert sum(size for size, _ in sites) <= total + 1


def test_a_session_costs_about_200_bytes() -> None:
    (total, _), *sites = per_key("sessions", 2_000, 3)
    # 196 B at 2 000 (209 at 200 000): the key 93, the value 66 (a 33-byte header with 32-bit times) and its dict
    # slot, the timer bucket; it was 212 with 64-bit times
    assert 150 < total < 215 and any("consumers/sessions.py" in site for _, site in sites)


@pytest.mark.parametrize("module", ["consumers.clickhouse_io", "ingest_gateway.zidium.directory", "deploy.migrate"])
def test_clickhouse_drivers_date_table_is_not_built_in_our_processes(module: str) -> None:
    # 27 MB of dates 1900-2299 in every worker and gateway process otherwise (issue 16's 300 MB budget)
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_DRIVER_LASY_DATE_LUT"}
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}, clickhouse_driver.columns.datecolumn as d; print(len(d._date_lut))"],
        cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT)}, check=True, capture_output=True, text=True).stdout
    assert out.split() == ["0"]


def test_large_allocations_can_be_made_mappings_of_their_own_here() -> None:
    from eventpipe.memory import large_allocations_return_to_the_system

    # the gateway's and the workers' memory policy needs glibc's mallopt (the machines eventpipe runs on have it)
    assert large_allocations_return_to_the_system(4 * 1024 * 1024) is True

"""Peak RSS of a process holding N open sessions in the sessions worker's pure core (``SessionPairer``).

``python -m bench.memory N`` prints one JSON document. The events are made one at a time (never all held), with
session ids and types like the workload's; all keys sit in one pairer (the worker has one per partition; the
total is the same). The process imports only ``consumers.sessions``; the real worker adds its libraries and
buffers on top (the report shows that baseline, measured on the sessions worker in the consumer phase).
"""

from __future__ import annotations

import json
import random
import sys
import time

from .workload import ACCOUNT, EVENT_TYPES

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> int:
    n = int(sys.argv[1])
    from consumers.sessions import SessionConfig, SessionEvent, SessionPairer

    rng = random.Random(20261123)
    baseline = rss_kb("VmRSS")
    pairer = SessionPairer(SessionConfig())
    t0 = time.monotonic()
    base_ts = 1_763_900_000
    rows = 0
    for i in range(n):
        session = "".join(rng.choices(_ALNUM, k=10 + i % 7))
        event = SessionEvent(account_id=ACCOUNT, event_id=f"{rng.getrandbits(128):032x}", action="START",
                             type=EVENT_TYPES[i % len(EVENT_TYPES)], timestamp=base_ts + i // 50, session=session)
        rows += len(pairer.process(event, i))
    elapsed = time.monotonic() - t0
    print(json.dumps({"sessions": n, "open_keys": len(pairer), "rows": rows, "baseline_rss_mb": baseline / 1024,
                      "rss_mb": rss_kb("VmRSS") / 1024, "peak_rss_mb": rss_kb("VmHWM") / 1024,
                      "elapsed_s": elapsed, "events_per_s": n / elapsed if elapsed else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

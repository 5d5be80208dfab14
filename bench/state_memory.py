"""Where the memory of an open key goes in the stateful workers' processors (issue 16), by allocation site.

``python -m bench.state_memory [--keys N] [--worker sessions|joins] [--top K]`` feeds the real processor
(``consumers/processors.py``) the records of ``bench/recovery.py`` — N distinct open sessions or N open join
windows, as the recovery phase of ``make bench`` produces them — and prints, from ``tracemalloc``, the bytes per
open key still allocated afterwards, in total and for the K allocation sites that hold most. No Kafka, no
ClickHouse: what it measures is the pure state and what the processor keeps of each record.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

from consumers.processors import WORKERS, Message
from consumers.state import Restored
from eventpipe.settings import REPO_ROOT, Settings

from .recovery import join_frames, session_frames


def per_key(worker: str, keys: int, top: int) -> list[tuple[float, str]]:
    """``(bytes per key, site)``: the total first (site ``"total"``), then the ``top`` largest sites."""
    proc = WORKERS[worker](Settings.from_env())
    proc.assign(0, Restored(None, ()))
    frames = [value for _, value in (session_frames if worker == "sessions" else join_frames)(keys)]
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for offset, value in enumerate(frames):
        message = Message(proc.topic, 0, offset, 0, value)
        for partition, wanted in proc.prepare([message]).items():
            proc.recall(partition, wanted, [])
        proc.handle(message)
    del frames
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    tracemalloc.stop()
    sites = [(st.size_diff / keys, f"{st.traceback[0].filename.replace(str(REPO_ROOT) + '/', '')}:"
                                   f"{st.traceback[0].lineno}") for st in stats[:top]]
    return [(sum(st.size_diff for st in stats) / keys, "total"), *sites]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--worker", choices=("sessions", "joins"), default="joins")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    for size, site in per_key(args.worker, args.keys, args.top):
        print(f"{size:8.0f} B/key  {site}")


if __name__ == "__main__":
    main()

"""Where the memory of an open key goes in the stateful workers' processors (issue 16), by allocation site, and
what a restore of them costs.

``python -m bench.state_memory [--keys N] [--worker sessions|joins] [--top K]`` feeds the real processor
(``consumers/processors.py``) the records of ``bench/recovery.py`` — N distinct open sessions or N open join
windows, as the recovery phase of ``make bench`` produces them — and prints, from ``tracemalloc``, the bytes per
open key still allocated afterwards, in total and for the K allocation sites that hold most. No Kafka, no
ClickHouse: what it measures is the pure state and what the processor keeps of each record.

``--restore`` instead persists the N keys' states (to a file) and restores them in a fresh process through the
processor's ``assign``, as the worker does after a ``kill -9``: the states streamed in blocks of ``BLOCK`` (as
``load_state`` reads them from ClickHouse), or all read first (``--whole``, as before issue 16's second round).
It prints the restore's seconds (wall clock and CPU), and the process's RSS before it, at its peak and after.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Iterator

from consumers.processors import WORKERS, Message
from consumers.state import Checkpoint, Restored
from eventpipe.settings import REPO_ROOT, Settings

from .harness import status_kb
from .recovery import join_frames, session_frames

BLOCK = 65_536  # states per block: ClickHouse's max_block_size, what clickhouse-driver hands over at a time
_LEN = struct.Struct("<I")


def per_key(worker: str, keys: int, top: int) -> list[tuple[float, str]]:
    """``(bytes per key, site)``: the total first (site ``"total"``), then the ``top`` largest sites."""
    proc = WORKERS[worker](Settings.from_env())
    proc.assign(0, Restored(None, ()))
    frames = [value for _, value in (session_frames if worker == "sessions" else join_frames)(keys)]
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    _feed(proc, frames)
    del frames
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    tracemalloc.stop()
    sites = [(st.size_diff / keys, f"{st.traceback[0].filename.replace(str(REPO_ROOT) + '/', '')}:"
                                   f"{st.traceback[0].lineno}") for st in stats[:top]]
    return [(sum(st.size_diff for st in stats) / keys, "total"), *sites]


def _feed(proc: object, frames: list[bytes]) -> None:
    for offset, value in enumerate(frames):
        message = Message(proc.topic, 0, offset, 0, value)
        for partition, wanted in proc.prepare([message]).items():
            proc.recall(partition, wanted, [])
        proc.handle(message)


def restore(worker: str, keys: int, whole: bool = False) -> dict[str, float]:
    """Persist ``keys`` open keys' states, then restore them in a fresh process (so that RSS is the restore's
    alone): ``{"seconds", "cpu_s", "rss_mb", "peak_mb", "after_mb", "states", "keys"}``. Blocks."""
    proc = WORKERS[worker](Settings.from_env())
    proc.assign(0, Restored(None, ()))
    _feed(proc, [value for _, value in (session_frames if worker == "sessions" else join_frames)(keys)])
    with tempfile.NamedTemporaryFile(prefix="states-", dir="/tmp") as f:
        for _, state in proc.snapshot(0):
            f.write(_LEN.pack(len(state)) + state)
        f.flush()
        watermark = proc.watermark(0)
        del proc
        out = subprocess.run(
            [sys.executable, "-m", "bench.state_memory", "--worker", worker, "--restore-from", f.name,
             "--watermark", str(watermark), *(["--whole"] if whole else [])],
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True, capture_output=True,
            text=True).stdout
    return json.loads(out)


def _states(path: str) -> Iterator[list[bytes]]:
    """The states of a file ``restore`` wrote, ``BLOCK`` at a time."""
    with open(path, "rb") as f:
        block: list[bytes] = []
        while head := f.read(_LEN.size):
            block.append(f.read(_LEN.unpack(head)[0]))
            if len(block) == BLOCK:
                yield block
                block = []
        yield block


def _restore_from(worker: str, path: str, watermark: int, whole: bool) -> dict[str, float]:
    proc = WORKERS[worker](Settings.from_env())
    blocks = _states(path)
    states = tuple(s for block in blocks for s in block) if whole else (s for block in blocks for s in block)
    gc.collect()
    rss = status_kb(os.getpid(), "VmRSS") or 0
    restored = Restored(Checkpoint(watermark, 0), states)
    started, cpu = time.perf_counter(), time.process_time()
    proc.assign(0, restored)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rss_mb": rss / 1024, "peak_mb": (status_kb(os.getpid(), "VmHWM") or 0) / 1024,
            "after_mb": (status_kb(os.getpid(), "VmRSS") or 0) / 1024, "states": restored.count,
            "keys": proc.open_keys()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--worker", choices=("sessions", "joins"), default="joins")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--restore", action="store_true", help="time a restore of the keys instead")
    parser.add_argument("--whole", action="store_true", help="with --restore: all states read before the restore")
    parser.add_argument("--restore-from", help=argparse.SUPPRESS)  # the child process of --restore
    parser.add_argument("--watermark", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore_from:
        print(json.dumps(_restore_from(args.worker, args.restore_from, args.watermark, args.whole)))
    elif args.restore:
        r = restore(args.worker, args.keys, args.whole)
        print(f"restored {r['keys']} keys ({r['states']} states) in {r['seconds']:.2f} s ({r['cpu_s']:.2f} s of CPU: "
              f"the figure a busy machine disturbs least); RSS {r['rss_mb']:.0f} MB "
              f"before, {r['peak_mb']:.0f} MB at the peak, {r['after_mb']:.0f} MB after")
    else:
        for size, site in per_key(args.worker, args.keys, args.top):
            print(f"{size:8.0f} B/key  {site}")


if __name__ == "__main__":
    main()

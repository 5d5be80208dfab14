"""The consumer loop shared by the four workers: poll → decode → apply → batch → write → commit.

``Worker.step`` is the whole loop body. What is specific to a worker is its ``Processor`` (``processors.py``);
the I/O is in ``kafka_io`` and ``clickhouse_io``. Offsets are committed only after the batch's rows, dead
letters and state are written (see ``state.py`` for how the sessions and joins state survives a crash).

Outages: a write step that fails with ``Unavailable`` pauses every partition (poll keeps the group membership and
handles rebalances but returns nothing) and is retried from the step that failed, with exponential backoff, until
it goes through; then the partitions resume. Nothing is committed in between, so nothing is lost, and every write
is idempotent (ReplacingMergeTree by row_version / dedup key), so nothing is doubled. SIGTERM or SIGINT: stop
reading, flush (retrying up to ``SHUTDOWN_FLUSH_S``), commit, leave the group, exit 0.
"""

from __future__ import annotations

import logging
import signal

from eventpipe.settings import Settings

from . import metrics
from .batch import Backoff, Batch, Clock, SystemClock
from .clickhouse_io import ClickHouseStore
from .errors import Unavailable
from . import kafka_io
from .kafka_io import DeadLetters, Source, SourceFactory
from .processors import Processor
from .state import Checkpoint, compaction_due

log = logging.getLogger(__name__)

POLL_MAX_S = 0.5          # longest single poll: bounds how fast SIGTERM and retries are noticed
SHUTDOWN_FLUSH_S = 20.0   # on SIGTERM, how long to keep retrying the last flush before exiting uncommitted
OBSERVE_EVERY_S = 1.0     # gauges (lag, open keys) are refreshed at least this often, even when idle or paused
REFRESH_PAUSED_S = 10.0   # while paused, end offsets come from the broker at most this often
REJOIN_AFTER_S = 60.0     # without an assignment this long while Kafka answers: join again with a new consumer


class Worker:
    def __init__(self, settings: Settings, processor: Processor, store: ClickHouseStore,
                 publisher: DeadLetters, clock: Clock | None = None,
                 source_factory: SourceFactory | None = None) -> None:
        """``source_factory`` defaults to the configured Kafka client's (raises SettingsError if it is missing)."""
        self.settings, self.processor, self.store, self.publisher = settings, processor, store, publisher
        self.clock = clock or SystemClock()
        self.source_factory = source_factory or kafka_io.source_factory(settings)
        self.group = f"{settings.topic_prefix}.{processor.worker}"
        self.name = processor.worker
        self.max_records = max(1, settings.batch_rows)
        self.max_seconds = settings.batch_seconds
        self.batch = Batch()
        self.running = True
        self.source: Source | None = None
        self.unrestored: set[int] = set()           # assigned, paused until their state is restored
        self.positions: dict[int, int] = {}         # next offset to read, for the lag gauge
        self.uncommitted: dict[int, tuple[int, str]] = {}  # written to ClickHouse, commit still to send
        self.sent: dict[int, tuple[int, str]] = {}  # commits sent, not answered yet (a failed one is sent again)
        self.joining_since: float | None = None     # since when the member waits for an assignment
        self.floors: dict[int, int] = {}            # compaction floor per partition (state.py)
        self.garbage: dict[int, int] = {}           # state rows written (or found stale) since then
        self.live: dict[int, int] = {}              # live states at the last restore or compaction
        self.write_backoff, self.restore_backoff = Backoff(), Backoff()
        self.write_retry_at = self.restore_retry_at = 0.0
        self.paused = False
        metrics.PAUSED.labels(self.name).set(0)
        self.observed_at = 0.0
        self.refreshed_at = 0.0  # last time end offsets were asked from the broker (while paused)

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM/SIGINT. Blocks. Raises only on bugs."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        source = self.connect()
        if source is None:
            log.info("stopped before Kafka answered")
            return
        self.source = source
        self.joining_since = self.clock.time()
        log.info("started", extra={"group": self.group, "topic": self.processor.topic})
        while self.running:
            self.step()
        self.shutdown()

    def step(self) -> None:
        now = self.clock.time()
        if self.unrestored and now >= self.restore_retry_at:
            self.restore()                                                     # state of new partitions
        if self.batch.is_due(now, self.max_records, self.max_seconds) and now >= self.write_retry_at:
            self.flush()                                                       # write → commit
        elif self.uncommitted and now >= self.write_retry_at:
            self.commit({})
        elif self.paused and now >= self.write_retry_at:
            self.set_paused(False)  # a failed look-up paused reading; nothing is due to write: try again
        try:
            messages = self.source.poll(self.poll_timeout(), max(1, self.max_records - self.batch.records))  # poll
        except Unavailable as exc:
            metrics.FAILURES.labels(self.name, "poll").inc()
            log.warning("poll failed; retrying", extra={"error": str(exc)})
            self.clock.sleep(POLL_MAX_S)
            return
        self.settle_commits()
        if messages and not self.look_up(messages):
            return
        now = self.clock.time()
        outcomes: dict[str, int] = {}  # counted here, added to the metric once per poll (labels() is not free)
        for message in messages:
            if message.partition in self.unrestored or not self.processor.ready(message.partition):
                continue  # stale fetch for a partition being restored or gone: it is re-read after the seek
            outcome = self.processor.handle(message)                           # decode → apply
            self.batch.add(message, outcome, now)                              # batch
            self.positions[message.partition] = message.offset + 1
            outcomes[outcome.outcome] = outcomes.get(outcome.outcome, 0) + 1
            if outcome.dead_letter is not None:
                metrics.DEAD_LETTERS.labels(self.name, metrics.reason_label(outcome.dead_letter["reason"])).inc()
        for name, count in outcomes.items():
            metrics.RECORDS.labels(self.name, name).inc(count)
        if messages or now - self.observed_at >= OBSERVE_EVERY_S:
            self.observe()
            self.rejoin_if_stuck(now)
            self.observed_at = now

    def look_up(self, messages: list) -> bool:
        """Fetch from ClickHouse what the processor needs before it can handle ``messages`` (the tombstones of
        evicted sessions). False: ClickHouse is away — the messages are put back (seek), reading pauses, and a
        retry is scheduled. Blocks on ClickHouse."""
        proc = self.processor
        lookups = proc.prepare(messages)
        if not lookups:
            return True
        try:
            found = self.store.load_tombstones(self.group, proc.topic, lookups, self.floors)
            # a key without a tombstone in a compacted partition may have had one that compaction dropped
            # (forgettable): its output row, written at or below the floor, tells (see Compaction in state.py)
            unfound = {p: missing for p, keys in lookups.items() if proc.history and self.floors.get(p)
                       and (missing := [k for k in keys if k not in found[p]])}
            forgotten = self.store.seen_at_or_below(proc.history, unfound, self.floors) if unfound else {}
        except Unavailable as exc:
            first: dict[int, int] = {}
            for message in messages:
                first.setdefault(message.partition, message.offset)
            for partition, offset in first.items():
                self.source.seek(partition, offset)
            self.write_failed("lookup", exc)
            return False
        for partition, keys in lookups.items():
            proc.recall(partition, keys, list(found[partition].values()), forgotten.get(partition, []))
        metrics.LOOKUPS.labels(self.name).inc(sum(map(len, lookups.values())))
        return True

    def poll_timeout(self) -> float:
        """Until the next thing to do: the batch's age limit, a scheduled retry, or at most ``POLL_MAX_S``."""
        now = self.clock.time()
        due_in = self.batch.seconds_left(now, self.max_seconds) if self.batch.records else POLL_MAX_S
        if self.batch.is_due(now, self.max_records, self.max_seconds) or self.uncommitted:
            due_in = max(0.0, self.write_retry_at - now)  # waiting for a retry; paused meanwhile
        if self.unrestored:
            due_in = min(due_in, max(0.0, self.restore_retry_at - now))
        return min(POLL_MAX_S, due_in)

    def observe(self) -> None:
        metrics.OPEN_KEYS.labels(self.name).set(self.processor.open_keys())
        # Paused partitions are not fetched, so their cached end offsets freeze: ask the broker now and then, or
        # the lag of a worker waiting out a ClickHouse outage would look flat.
        now = self.clock.time()
        fresh = (self.paused or bool(self.unrestored)) and now - self.refreshed_at >= REFRESH_PAUSED_S
        if fresh:
            self.refreshed_at = now
        for partition, position in self.positions.items():
            high = self.source.highwater(partition, fresh)
            if high is not None:
                metrics.LAG.labels(self.name, self.processor.topic, str(partition)).set(max(0, high - position))

    # --- write step ------------------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Write the batch (rows, dead letters, state), then commit. False: transient failure, partitions paused
        and a retry scheduled. Blocks on ClickHouse and Kafka."""
        batch, proc = self.batch, self.processor
        started = self.clock.time()
        step = "rows"
        try:
            if not batch.rows_written:
                rows = batch.rows()
                if rows:
                    seconds = self.store.insert(proc.table, proc.columns, rows)
                    metrics.INSERT_SECONDS.labels(self.name, proc.table).observe(seconds)
                    metrics.ROWS.labels(self.name, proc.table).inc(len(rows))
                batch.rows_written = True
            step = "dead_letters"
            if not batch.letters_sent:
                self.publisher.send_all(batch.dead_letters)
                batch.letters_sent = True
            step = "state"
            checkpoints = {p: Checkpoint(proc.watermark(p), n, self.floors.get(p, 0))
                           for p, n in batch.next_offset.items()}
            if proc.stateful and not batch.state_written:
                changes = [(p, key, *value) for (p, key), value in batch.states.items()]
                seconds = self.store.write_state(self.group, proc.topic, changes,
                                                 {p: c.encode() for p, c in checkpoints.items()},
                                                 {p: c.next_offset for p, c in checkpoints.items()})
                metrics.INSERT_SECONDS.labels(self.name, "consumer_state").observe(seconds)
                batch.state_written = True
                proc.persisted()  # tombstones of keys evicted so far can be looked up in ClickHouse now
                for p, _key in batch.states:
                    self.garbage[p] = self.garbage.get(p, 0) + 1
        except Unavailable as exc:
            self.write_failed(step, exc)
            return False
        metrics.BATCH_RECORDS.labels(self.name).observe(batch.records)
        metrics.FLUSH_SECONDS.labels(self.name).observe(self.clock.time() - started)
        for p, c in checkpoints.items():
            metrics.WATERMARK.labels(self.name, str(p)).set(c.watermark)
        log.debug("flushed", extra={"records": batch.records, "rows": len(batch.rows()),
                                    "dead_letters": len(batch.dead_letters)})
        self.batch = Batch()
        self.write_backoff.reset()
        if self.paused:
            self.set_paused(False)
        self.commit({p: c.kafka_commit() for p, c in checkpoints.items()})
        if proc.stateful:
            for p, c in checkpoints.items():
                if compaction_due(self.garbage.get(p, 0), self.live.get(p, 0),
                                  self.settings.state_compact_min_rows):
                    self.compact(p, c)
        return True

    def compact(self, partition: int, checkpoint: Checkpoint) -> None:
        """Snapshot the partition's state as of ``checkpoint`` (just written) and drop what lies below it (see
        Compaction in state.py). A failure is left for a later flush to try again. Blocks on ClickHouse."""
        proc, floor = self.processor, checkpoint.next_offset - 1
        if floor <= self.floors.get(partition, 0):
            return
        try:
            found = self.store.all_tombstones(self.group, proc.topic, partition, self.floors.get(partition, 0))
            kept = [(key, tombstone) for key, tombstone in found if not proc.forgettable(partition, tombstone)]
            started = self.clock.time()
            rows = self.store.compact(self.group, proc.topic, partition, proc.snapshot(partition), kept,
                                      Checkpoint(checkpoint.watermark, checkpoint.next_offset, floor))
        except Unavailable as exc:
            metrics.FAILURES.labels(self.name, "compact").inc()
            log.warning("compacting state failed; a later flush tries again", extra={"partition": partition,
                                                                                      "error": str(exc)})
            return
        self.floors[partition], self.garbage[partition], self.live[partition] = floor, 0, rows
        log.info("state compacted", extra={"partition": partition, "floor": floor, "rows": rows,
                                           "tombstones": len(kept), "tombstones_dropped": len(found) - len(kept),
                                           "seconds": round(self.clock.time() - started, 3)})

    def commit(self, offsets: dict[int, tuple[int, str]]) -> None:
        """Send the commit of what is written; its answer is taken in by ``settle_commits``."""
        self.uncommitted.update(offsets)
        if not self.uncommitted:
            return
        self.source.commit(self.uncommitted)
        self.sent.update(self.uncommitted)
        self.uncommitted = {}
        self.settle_commits()

    def settle_commits(self) -> None:
        """Take in the broker's answers. A failure loses nothing: the rows (and state) are in ClickHouse; the
        commit is sent again (unless a newer one is on its way), or the next owner of the partition replays
        idempotently / seeks to the checkpoint."""
        for outcome in self.source.commit_outcomes():
            retry = isinstance(outcome.error, Unavailable)  # else committed, or LostPartitions: not ours now
            if outcome.error is None:
                metrics.COMMITS.labels(self.name).inc()
                for p, offset in outcome.offsets.items():
                    metrics.COMMITTED.labels(self.name, self.processor.topic, str(p)).set(offset)
            elif retry:
                metrics.FAILURES.labels(self.name, "commit").inc()
                self.write_retry_at = self.clock.time() + self.write_backoff.next_delay()
                log.warning("commit failed; will retry", extra={"error": str(outcome.error)})
            else:
                log.info("commit refused after a rebalance; the new owner takes over",
                         extra={"error": str(outcome.error)})
            for p, offset in outcome.offsets.items():
                if p in self.sent and self.sent[p][0] == offset:  # the latest sent: answered now
                    if retry:
                        self.uncommitted.setdefault(p, self.sent[p])
                    del self.sent[p]

    def write_failed(self, step: str, exc: Exception) -> None:
        metrics.FAILURES.labels(self.name, step).inc()
        delay = self.write_backoff.next_delay()
        self.write_retry_at = self.clock.time() + delay
        log.warning("write failed; paused, retrying", extra={"step": step, "error": str(exc),
                                                             "retry_in_s": round(delay, 2)})
        if not self.paused:
            self.set_paused(True)

    def set_paused(self, paused: bool) -> None:
        """Pause (or resume) every assigned partition; restored-pending ones stay paused."""
        self.paused = paused
        metrics.PAUSED.labels(self.name).set(1 if paused else 0)
        partitions = self.source.assignment()
        if paused:
            self.source.pause(partitions)
        else:
            self.source.resume([p for p in partitions if p not in self.unrestored])
            log.info("resumed")

    # --- partitions coming and going -------------------------------------------------------------------------
    def on_assigned(self, partitions: list[int]) -> None:
        """Rebalance callback (inside poll): stateful workers hold new partitions until their state is back."""
        log.info("partitions assigned", extra={"partitions": partitions})
        self.joining_since = None  # even with none: a member of a group with more members than partitions
        if self.processor.stateful and partitions:
            self.unrestored.update(partitions)
            self.source.pause(partitions)
            self.restore_retry_at = 0.0
        if self.paused:
            self.source.pause(partitions)

    def on_revoked(self, partitions: list[int]) -> None:
        """Rebalance callback (inside poll): flush and commit, then forget the partitions. If the flush cannot
        be done now, the batch is dropped uncommitted — the next owner reads it again."""
        log.info("partitions revoked", extra={"partitions": partitions})
        self.joining_since = self.clock.time()  # eager rebalancing: everything goes, then the new assignment comes
        if self.batch.records and not self.flush():
            log.warning("dropping an unwritten batch on revocation; it will be re-read",
                        extra={"records": self.batch.records})
            kept = [p for p in self.batch.first_offset if p not in partitions]
            for p in kept:  # partitions we keep must re-read what was dropped
                if self.processor.stateful:
                    self.processor.revoke(p)
                    self.unrestored.add(p)
                else:
                    self.source.seek(p, self.batch.first_offset[p])
            self.batch = Batch()
            self.set_paused(False)
        for p in partitions:
            self.processor.revoke(p)
            self.unrestored.discard(p)
            self.positions.pop(p, None)
            self.floors.pop(p, None)
            self.garbage.pop(p, None)
            self.live.pop(p, None)
            try:
                metrics.LAG.remove(self.name, self.processor.topic, str(p))
            except KeyError:  # no lag reported for it yet
                pass
        self.uncommitted = {p: v for p, v in self.uncommitted.items() if p not in partitions}
        self.sent = {p: v for p, v in self.sent.items() if p not in partitions}
        metrics.OPEN_KEYS.labels(self.name).set(self.processor.open_keys())

    def restore(self) -> None:
        """Rebuild the machine of one newly assigned partition from ClickHouse and seek to its checkpoint. One
        per step: the partitions restored so far are consumed in between (with 1 M keys a partition takes about
        a second), instead of all of them waiting for the last one."""
        for p in sorted(self.unrestored)[:1]:
            try:
                restored = self.store.load_state(self.group, self.processor.topic, p)
                offset = restored.checkpoint.next_offset if restored.checkpoint else self.source.committed(p)
                # librdkafka refuses a seek while a just-assigned partition's fetcher is still starting (after
                # a broker restart, say): transient like the rest — the partition stays paused until it works
                self.source.seek(p, offset)
                self.processor.assign(p, restored)  # reads the states as ClickHouse sends them
            except Unavailable as exc:
                self.processor.revoke(p)  # a machine half restored, if the states stopped coming
                metrics.FAILURES.labels(self.name, "restore").inc()
                self.restore_retry_at = self.clock.time() + self.restore_backoff.next_delay()
                log.warning("restoring state failed; retrying", extra={"partition": p, "error": str(exc)})
                return
            self.floors[p] = restored.checkpoint.floor if restored.checkpoint else 0
            self.garbage[p] = max(0, restored.rows_read - restored.count)  # rows read to no purpose
            self.live[p] = restored.count
            self.positions[p] = offset or 0
            if restored.checkpoint:  # written, so committed too: the last commit before it may have been refused
                # (a rebalance), and nothing newer comes to commit while the partition stays idle
                self.uncommitted.setdefault(p, restored.checkpoint.kafka_commit())
            self.unrestored.discard(p)
            if not self.paused:
                self.source.resume([p])
            log.info("partition restored", extra={"partition": p, "offset": offset, "keys": restored.count,
                                                  "rows_read": restored.rows_read,
                                                  "watermark": restored.checkpoint.watermark
                                                  if restored.checkpoint else 0})
        self.restore_backoff.reset()
        metrics.OPEN_KEYS.labels(self.name).set(self.processor.open_keys())

    def rejoin_if_stuck(self, now: float) -> None:
        """Start over with a new consumer when the member has waited ``REJOIN_AFTER_S`` for an assignment while
        Kafka accepts connections. librdkafka 2.16 sometimes never rejoins after its broker restarted: its
        requests to the group coordinator stay queued ("REQTMOUT … GroupCoordinator … out-queue", every minute).
        Blocks up to the old consumer's close and the new one's join."""
        if self.joining_since is None or now - self.joining_since < REJOIN_AFTER_S:
            return
        if not kafka_io.reachable(self.settings.kafka_bootstrap):
            self.joining_since = now  # Kafka is away: waiting for it is right
            return
        log.warning("no assignment although Kafka answers; joining again with a new consumer",
                    extra={"waited_s": round(now - self.joining_since, 1)})
        metrics.FAILURES.labels(self.name, "rejoin").inc()
        self.source.close()
        source = self.connect()
        if source is None:  # stopped meanwhile
            return
        self.source, self.sent, self.joining_since = source, {}, self.clock.time()

    # --- start and stop --------------------------------------------------------------------------------------
    def connect(self) -> Source | None:
        """Join the group, retrying while Kafka does not answer. None if stopped (SIGTERM) meanwhile."""
        backoff = Backoff()
        while self.running:
            try:
                return self.source_factory(self.settings, self.group, self.processor.topic,
                                           self.on_assigned, self.on_revoked)
            except Unavailable as exc:
                delay = backoff.next_delay()
                log.warning("Kafka not reachable; retrying", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
                deadline = self.clock.time() + delay
                while self.running and self.clock.time() < deadline:
                    self.clock.sleep(min(0.2, delay))
        return None

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        log.info("stopping", extra={"signal": signum})
        self.running = False

    def shutdown(self) -> None:
        """Flush (retrying a while), commit, leave the group."""
        deadline = self.clock.time() + SHUTDOWN_FLUSH_S
        while self.batch.records and not self.flush() and self.clock.time() < deadline:
            self.clock.sleep(max(0.0, min(self.write_retry_at, deadline) - self.clock.time()))
        if self.batch.records:
            log.error("exiting with an unwritten batch; it will be re-read", extra={"records": self.batch.records})
        elif self.uncommitted:
            self.commit({})
        self.source.close()  # waits for the answers to the commits sent (bounded)
        self.settle_commits()
        self.publisher.close()
        self.store.close()
        log.info("stopped")

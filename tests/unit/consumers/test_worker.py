"""The loop's rules with in-memory Kafka and ClickHouse: write before commit, pause and retry on outages,
restore at the checkpoint, drop (never commit) what could not be written."""

from __future__ import annotations

import pytest

from consumers.errors import LostPartitions, Unavailable
from consumers.kafka_io import CommitOutcome
from consumers.processors import EventsSink, SessionsWorker
from consumers.worker import Worker
from eventpipe.settings import Settings

from .fakes import FakeClock, FakePublisher, FakeSource, FakeStore, event_bytes

SEED_START, SEED_END = 1365772427, 1365772533


def make(worker_cls=SessionsWorker, batch_rows: int = 100, partitions: tuple[int, ...] = (0,), **overrides):
    settings = Settings.from_env({}, batch_rows=batch_rows, batch_seconds=1.0, topic_prefix="t", **overrides)
    journal: list = []
    source, store, publisher = FakeSource(settings.topic_events, journal), FakeStore(journal), FakePublisher(journal)
    worker = Worker(settings, worker_cls(settings), store, publisher, clock=FakeClock(), source_factory=source.factory)
    worker.source = worker.connect()
    source.rebalance(list(partitions))
    return worker, source, store, publisher, journal


def run(worker: Worker, steps: int = 5, advance_s: float = 1.1) -> None:
    for _ in range(steps):
        worker.step()
        worker.clock.sleep(advance_s)


def sessions_final(store: FakeStore) -> dict:
    return {k: v[3:8] for k, v in store.final("sessions", 3, 8).items()}


def test_rows_and_state_are_written_before_the_commit() -> None:
    worker, source, store, _, journal = make()
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    source.produce(0, event_bytes("END", SEED_END, event_id="e"))
    run(worker)
    kinds = [entry[0] for entry in journal]
    assert kinds[:3] == ["insert", "state", "commit"]
    assert journal[2] == ("commit", {0: (2, '{"watermark":1365772533}')})
    assert sessions_final(store) == {("acc", "APPSTART", "8nc92io9q"): ("closed", SEED_START, SEED_END, 106, 0)}


def test_a_clickhouse_outage_pauses_commits_nothing_and_resumes() -> None:
    worker, source, store, _, journal = make()
    worker.step()  # partition 0 restored
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    store.down = True
    run(worker, steps=3)
    assert worker.paused and source.paused == {0}
    assert not [e for e in journal if e[0] == "commit"]
    source.produce(0, event_bytes("END", SEED_END, event_id="e"))
    run(worker, steps=3)
    assert source.position[0] == 1  # paused: the END was not read
    store.down = False
    run(worker, steps=20, advance_s=6)
    assert not worker.paused and source.paused == set()
    assert source.commits[0][0] == 2
    assert sessions_final(store)[("acc", "APPSTART", "8nc92io9q")] == ("closed", SEED_START, SEED_END, 106, 0)


def test_a_late_end_is_looked_up_and_a_failed_look_up_pauses_and_reads_it_again() -> None:
    worker, source, store, _, journal = make(session_timeout_s=100, orphan_grace_s=20)
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    source.produce(0, event_bytes("START", SEED_START + 200, session="other-device", event_id="o"))
    run(worker)  # the first session timed out and left memory: its tombstone is in the store
    assert ("acc", "APPSTART", "8nc92io9q") in sessions_final(store) and worker.processor.open_keys() == 1
    store.down = True
    source.produce(0, event_bytes("END", SEED_START + 210, event_id="e"))
    run(worker, steps=3)
    assert worker.paused and source.position[0] == 2  # the END was put back, not applied
    assert not [e for e in journal if e[0] == "lookup"]
    store.down = False
    run(worker, steps=20, advance_s=6)
    assert ("lookup", 1) in journal and not worker.paused and source.commits[0][0] == 3
    assert sessions_final(store)[("acc", "APPSTART", "8nc92io9q")] == ("timed_out", SEED_START, SEED_START + 210,
                                                                       210, 0)


def test_a_session_whose_start_and_end_share_a_poll_needs_no_look_up() -> None:
    worker, source, store, _, journal = make()
    for i in range(20):
        source.produce(0, event_bytes("START", SEED_START + i, session=f"session-{i:04d}", event_id=f"s{i}"))
        source.produce(0, event_bytes("END", SEED_START + i + 5, session=f"session-{i:04d}", event_id=f"e{i}"))
    run(worker)
    assert not [e for e in journal if e[0] == "lookup"] and len(sessions_final(store)) == 20


def test_a_seek_the_client_refuses_for_now_is_retried_with_the_partition_paused() -> None:
    from consumers.errors import Unavailable

    worker, source, store, _, _ = make()
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    run(worker)
    refusals = [2]
    real_seek = source.seek

    def seek(partition: int, offset: int | None) -> None:
        if refusals[0]:  # as librdkafka does right after a broker restart (Local: Erroneous state)
            refusals[0] -= 1
            raise Unavailable("seek of partition 0: Local: Erroneous state")
        real_seek(partition, offset)

    source.seek = seek
    source.produce(0, event_bytes("END", SEED_END, event_id="e"))
    source.rebalance([0])  # a new assignment: restore, then seek
    run(worker, steps=1, advance_s=0.1)
    assert 0 in worker.unrestored and 0 in source.paused and refusals[0] == 1  # refused: paused, retried later
    run(worker, steps=10, advance_s=1.1)
    assert not worker.unrestored and source.commits[0][0] == 2
    assert sessions_final(store)[("acc", "APPSTART", "8nc92io9q")] == ("closed", SEED_START, SEED_END, 106, 0)


def test_a_new_owner_restores_state_and_starts_at_the_checkpoint() -> None:
    worker, source, store, publisher, journal = make()
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    run(worker)
    # the commit is lost (crash between state write and commit): the checkpoint still says offset 1
    source.commits.clear()
    source.produce(0, event_bytes("END", SEED_END, event_id="e"))
    settings = worker.settings
    second = Worker(settings, SessionsWorker(settings), store, publisher, clock=FakeClock(),
                    source_factory=source.factory)
    second.source = second.connect()
    source.rebalance([0])
    run(second)
    assert source.commits[0][0] == 2
    assert sessions_final(store)[("acc", "APPSTART", "8nc92io9q")] == ("closed", SEED_START, SEED_END, 106, 0)
    statuses = [row[3] for row in store.tables["sessions"]]
    assert statuses == ["open", "closed"]  # START was not applied twice


def test_restore_waits_for_clickhouse_with_the_partition_paused() -> None:
    worker, source, store, _, _ = make(partitions=())
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    store.down = True
    source.rebalance([0])
    run(worker, steps=3)
    assert worker.unrestored == {0} and 0 in source.paused and worker.batch.records == 0
    store.down = False
    run(worker, steps=10, advance_s=6)
    assert worker.unrestored == set() and source.commits[0][0] == 1


def test_revocation_with_clickhouse_down_drops_the_batch_uncommitted() -> None:
    worker, source, store, _, journal = make(worker_cls=EventsSink)
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    worker.step()
    assert worker.batch.records == 1
    store.down = True
    source.rebalance([])
    assert worker.batch.records == 0
    assert not [e for e in journal if e[0] == "commit"]


def test_dead_letters_are_sent_before_the_commit() -> None:
    worker, source, store, publisher, journal = make(worker_cls=EventsSink)
    source.produce(0, b"garbage")
    source.produce(0, event_bytes("END", SEED_END, session=None, event_id="x"))  # END without session
    source.produce(0, event_bytes("START", SEED_START, event_id="ok"))
    run(worker)
    assert [e[0] for e in journal] == ["insert", "dead_letters", "commit"]
    assert [letter["offset"] for letter in publisher.sent] == [0, 1]
    assert publisher.sent[1]["reason"] == "session: required for END"
    assert len(store.tables["events"]) == 1


def test_kafka_down_for_dead_letters_retries_without_rewriting_rows() -> None:
    worker, source, store, publisher, journal = make(worker_cls=EventsSink)
    source.produce(0, b"garbage")
    source.produce(0, event_bytes("START", SEED_START, event_id="ok"))
    publisher.down = True
    run(worker, steps=3)
    assert worker.paused
    publisher.down = False
    run(worker, steps=10, advance_s=6)
    assert [e[0] for e in journal] == ["insert", "dead_letters", "commit"]


def test_batches_flush_by_size() -> None:
    worker, source, store, _, journal = make(worker_cls=EventsSink, batch_rows=2)
    for i in range(5):
        source.produce(0, event_bytes("START", SEED_START + i, event_id=f"e{i}"))
    for _ in range(4):
        worker.step()  # the clock does not move: only size triggers
    assert [e for e in journal if e[0] == "insert"] == [("insert", "events", 2), ("insert", "events", 2)]


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 100])
def test_batch_size_does_not_change_the_final_rows(batch_rows: int) -> None:
    worker, source, store, _, _ = make(batch_rows=batch_rows)
    actions = [("START", 0), ("UPDATE", 5), ("UPDATE", 6), ("END", 106), ("UPDATE", 5)]
    for i, (action, dt) in enumerate(actions):
        source.produce(0, event_bytes(action, SEED_START + dt, event_id=f"e{i % 4}" if i < 4 else "e1"))
    run(worker, steps=10)
    assert sessions_final(store) == {("acc", "APPSTART", "8nc92io9q"): ("closed", SEED_START, SEED_END, 106, 2)}


def test_a_failed_commit_is_sent_again_after_a_backoff_and_nothing_is_rewritten() -> None:
    worker, source, _, _, journal = make(worker_cls=EventsSink)
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    source.commit_fails = True
    run(worker, steps=2)
    assert not source.commits and worker.uncommitted == {0: (1, '{"watermark":0}')} and not worker.sent
    source.commit_fails = False
    run(worker, steps=6, advance_s=3)
    assert source.commits == {0: (1, '{"watermark":0}')} and not worker.uncommitted and not worker.sent
    assert [e[0] for e in journal].count("insert") == 1


def test_an_answer_that_comes_later_is_taken_in_and_a_newer_commit_wins_over_a_failed_older_one() -> None:
    worker, source, _, _, journal = make(worker_cls=EventsSink)
    source.answer_later = True  # librdkafka: the answer arrives in a later poll
    source.produce(0, event_bytes("START", SEED_START, event_id="a"))
    run(worker, steps=2)
    assert worker.sent == {0: (1, '{"watermark":0}')}
    source.answers = [CommitOutcome({0: 1}, Unavailable("coordinator away"))]  # that commit failed after all
    source.produce(0, event_bytes("START", SEED_START, event_id="b"))
    run(worker, steps=2)  # a newer commit went out before the old one's answer
    assert worker.sent == {0: (2, '{"watermark":0}')}
    commits = [e for e in journal if e[0] == "commit"]
    source.answer_later = False  # both answers arrive: the failure of 1, then the success of 2
    run(worker, steps=4, advance_s=3)
    assert not worker.uncommitted and not worker.sent
    assert [e for e in journal if e[0] == "commit"] == commits  # the failed 1 was not sent again


def test_a_commit_refused_after_a_rebalance_or_of_a_revoked_partition_is_not_sent_again() -> None:
    worker, source, _, _, _ = make(worker_cls=EventsSink, partitions=(0, 1))
    source.answer_later = True
    source.produce(0, event_bytes("START", SEED_START, event_id="a"))
    source.produce(1, event_bytes("START", SEED_START, event_id="b"))
    run(worker, steps=2)
    assert set(worker.sent) == {0, 1}
    source.rebalance([0])  # partition 1 went to another member while its commit was on its way
    source.answers = [CommitOutcome({0: 1}, LostPartitions("generation changed")),
                      CommitOutcome({1: 1}, Unavailable("coordinator away"))]
    source.answer_later = False
    run(worker, steps=3, advance_s=3)
    assert not worker.uncommitted and not worker.sent


def test_a_restored_checkpoint_is_committed_even_if_nothing_more_comes() -> None:
    worker, source, store, publisher, _ = make()
    source.produce(0, event_bytes("START", SEED_START, event_id="s"))
    run(worker)
    source.commits.clear()  # the last commit was refused (a rebalance): the checkpoint says 1, Kafka nothing
    settings = worker.settings
    second = Worker(settings, SessionsWorker(settings), store, publisher, clock=FakeClock(),
                    source_factory=source.factory)
    second.source = second.connect()
    source.rebalance([0])
    run(second)  # the partition stays idle
    assert source.commits == {0: (1, '{"watermark":1365772427}')}


def test_a_member_left_without_an_assignment_while_kafka_answers_joins_again(monkeypatch) -> None:
    from consumers import kafka_io

    answers = [False]
    monkeypatch.setattr(kafka_io, "reachable", lambda bootstrap, timeout_s=2.0: answers[0])
    worker, source, _, _, _ = make(worker_cls=EventsSink)
    assert source.joins == 1
    source.on_revoked(list(source.assigned))  # the session timed out while the broker was away...
    source.assigned = []
    run(worker, steps=8, advance_s=10)  # ...and it still is: waiting for Kafka is right
    assert source.joins == 1
    answers[0] = True  # Kafka is back, yet no assignment comes
    run(worker, steps=8, advance_s=10)
    assert source.joins == 2 and worker.joining_since is not None
    source.rebalance([0])  # the new consumer is assigned
    run(worker, steps=10, advance_s=10)
    assert source.joins == 2 and worker.joining_since is None


def test_a_member_assigned_nothing_does_not_join_again(monkeypatch) -> None:
    from consumers import kafka_io

    monkeypatch.setattr(kafka_io, "reachable", lambda bootstrap, timeout_s=2.0: True)
    worker, source, _, _, _ = make(worker_cls=EventsSink)
    source.rebalance([])  # more members than partitions: an empty assignment is an assignment
    run(worker, steps=20, advance_s=10)
    assert source.joins == 1

"""The consumers' Kafka boundary (``consumers/kafka_io.py``), held by each client against the real broker.

This suite is the boundary's definition (STYLE §9): whatever ``EVENTPIPE_KAFKA_CLIENT`` chooses must pass it.
Kill -9 and resume with each client: ``test_workers.py``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

import pytest

from consumers import kafka_io
from consumers.errors import Unavailable
from consumers.processors import Message
from eventpipe.settings import KAFKA_CLIENTS, Settings

from .conftest import bring_back
from .streams import Producer, event, read_topic


@pytest.fixture(params=KAFKA_CLIENTS)
def client_settings(isolated_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return dataclasses.replace(isolated_settings, kafka_client=request.param, consumer_session_timeout_ms=6000)


class Member:
    """One group member with its callbacks recorded, polled by the test like the worker polls it."""

    def __init__(self, s: Settings, group: str) -> None:
        self.assigned: list[list[int]] = []
        self.revoked: list[list[int]] = []
        self.source = kafka_io.source_factory(s)(s, group, s.topic_events, self.assigned.append, self.revoked.append)
        self.received: list[Message] = []
        self.answers: list[kafka_io.CommitOutcome] = []

    def outcomes(self, partition: int) -> list[tuple[int, type | None]]:
        """(offset, error type) of the answers about ``partition`` so far."""
        self.answers += self.source.commit_outcomes()
        return [(a.offsets[partition], type(a.error) if a.error else None)
                for a in self.answers if partition in a.offsets]

    def poll_until(self, check: Callable[[], bool], timeout_s: float = 40.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "timed out"
            self.received += self.source.poll(0.2, 500)


def produce(s: Settings, n: int, session: str = "contract-0001") -> None:
    producer = Producer(s)
    producer.events(event("acc", "START", 1_700_000_000 + i, session) for i in range(n))
    producer.close()


def partition_of(s: Settings, session: str) -> int:
    return next(m.partition for m in read_topic(s, s.topic_events) if m.value and session.encode() in m.value)


def test_records_arrive_in_offset_order_and_commits_carry_offset_and_metadata(client_settings: Settings) -> None:
    s = client_settings
    produce(s, 10)
    p = partition_of(s, "contract-0001")
    member = Member(s, "g-commit")
    member.poll_until(lambda: len(member.received) >= 10)
    assert member.assigned and sorted(member.assigned[-1]) == list(range(s.topic_partitions))
    offsets = [m.offset for m in member.received if m.partition == p]
    assert offsets == list(range(10)) and all(m.topic == s.topic_events for m in member.received)
    assert member.source.committed(p) is None
    member.source.commit({p: (7, '{"watermark":1}')})
    assert member.source.committed(p) == 7
    member.poll_until(lambda: bool(member.outcomes(p)))  # librdkafka answers in a later poll
    assert member.outcomes(p) == [(7, None)]
    member.source.close()
    again = Member(s, "g-commit")  # a new member of the group starts at the committed offset
    again.poll_until(lambda: len(again.received) >= 3)
    assert [m.offset for m in again.received if m.partition == p] == [7, 8, 9]
    again.source.close()


def test_pause_stops_a_partition_and_seek_rereads_it(client_settings: Settings) -> None:
    s = client_settings
    produce(s, 6)
    p = partition_of(s, "contract-0001")
    member = Member(s, "g-pause")
    member.poll_until(lambda: bool(member.assigned))
    member.source.pause([p])
    member.received.clear()  # what the joining poll already returned
    for _ in range(8):
        member.received += member.source.poll(0.25, 500)
    assert not [m for m in member.received if m.partition == p]  # paused: nothing of it is delivered
    member.source.seek(p, 2)
    member.source.resume([p])
    member.poll_until(lambda: len([m for m in member.received if m.partition == p]) >= 4)
    assert [m.offset for m in member.received if m.partition == p] == [2, 3, 4, 5]
    member.source.seek(p, None)  # from the beginning
    member.poll_until(lambda: len([m for m in member.received if m.partition == p]) >= 10)
    assert [m.offset for m in member.received if m.partition == p][4:] == [0, 1, 2, 3, 4, 5]
    assert member.source.highwater(p) == 6
    member.source.close()


def test_two_members_rebalance_into_disjoint_assignments(client_settings: Settings) -> None:
    s = client_settings
    first = Member(s, "g-two")
    first.poll_until(lambda: bool(first.assigned))
    second = Member(s, "g-two")
    deadline = time.monotonic() + 60
    while not (second.assigned and first.revoked and len(first.assigned) >= 2):
        assert time.monotonic() < deadline, (first.assigned, first.revoked, second.assigned)
        first.source.poll(0.2, 10)
        second.source.poll(0.2, 10)
    mine, theirs = set(first.source.assignment()), set(second.source.assignment())
    assert mine and theirs and not mine & theirs and mine | theirs == set(range(s.topic_partitions))
    second.source.close()  # leaving: the first member gets everything back
    deadline = time.monotonic() + 60
    while set(first.source.assignment()) != set(range(s.topic_partitions)):
        assert time.monotonic() < deadline
        first.source.poll(0.2, 10)
    first.source.close()


def test_dead_letters_are_acknowledged_and_on_the_topic(client_settings: Settings) -> None:
    s = client_settings
    letters = kafka_io.dead_letters(s)
    letter = {"received_at": event("a", "START", 1, None)["received_at"], "source": "kafka", "topic": "t",
              "partition": 1, "offset": 2, "account_id": "acc", "reason": "because", "payload": "eA=="}
    letters.send_all([letter, {**letter, "offset": 3}])
    letters.close()
    assert len(read_topic(s, s.topic_deadletter)) == 2


def test_an_unreachable_broker_is_unavailable_not_a_hang(client_settings: Settings) -> None:
    s = dataclasses.replace(client_settings, kafka_bootstrap="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(Unavailable):
        kafka_io.source_factory(s)(s, "g", s.topic_events, lambda p: None, lambda p: None)
    with pytest.raises(Unavailable):
        kafka_io.dead_letters(s).send_all([{"x": 1}])
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_a_commit_never_waits_out_a_broker_outage_and_is_answered(client_settings: Settings) -> None:
    """The broker stops (a controlled shutdown, then nothing) and comes back while commits are sent every 0.1 s.
    No commit call may block longer than the client's bound: librdkafka's synchronous commit sent during the
    shutdown waited for the broker's return, and once, in CI, for good. The answers report the outage.
    (Commits succeeding again afterwards is checked for the workers by test_kafka_outage.py: librdkafka 2.16 does
    not always rejoin a group by itself after its broker restarted.)"""
    from deploy import kafka

    s = client_settings
    if not s.local_kafka or not kafka.is_running(s):
        pytest.skip("Kafka is not the local broker managed by deploy/kafka.py")
    produce(s, 10)
    p = partition_of(s, "contract-0001")
    member = Member(s, "g-outage")
    member.poll_until(lambda: len(member.received) >= 10)

    def outage() -> None:
        kafka.stop(s)
        try:
            time.sleep(12)  # past the session timeout: the member comes back to a group that dropped it
        finally:
            bring_back(s, "kafka")

    stopper = threading.Thread(target=outage)
    stopper.start()
    longest, offset = 0.0, 0
    while stopper.is_alive():
        offset += 1
        started = time.monotonic()
        member.source.commit({p: (offset % 10, "{}")})
        longest = max(longest, time.monotonic() - started)
        member.received += member.source.poll(0.1, 10)
    stopper.join()
    # kafka-python: its 10 s timeout and some slack; a commit that waits for the broker blocks 15 s or more here
    assert longest < 13, f"a commit call blocked {longest:.1f} s"
    deadline = time.monotonic() + 30
    while not any(error is not None for _, error in member.outcomes(p)):  # the outage was seen, not slept through
        assert time.monotonic() < deadline, member.outcomes(p)[-5:]
        member.received += member.source.poll(0.2, 10)
    member.source.close()

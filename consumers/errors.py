"""The consumers' small error tree (STYLE §6): invalid input never raises here — it becomes a dead letter or a
skipped-and-counted record in ``processors``; what is left is transient trouble with Kafka or ClickHouse
(``Unavailable``: pause, back off, retry) and bugs (anything else: crash loudly, let the supervisor restart)."""


class Unavailable(Exception):
    """Kafka or ClickHouse cannot take the request now (transient): retry with backoff. ``code``: ClickHouse's
    error code when the server answered with one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LostPartitions(Exception):
    """A commit was refused because the group rebalanced: the partitions belong to someone else now. Not an
    error for the data — it is in ClickHouse, and the next owner resumes from the checkpoint or replays."""


class Fenced(Exception):
    """Kafka fenced this consumer for good: another live process joined with its ``group.instance.id``. Not
    transient — the process exits (crashes loudly) rather than retry against an identity it no longer owns."""

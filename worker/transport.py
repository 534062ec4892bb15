"""The broker as convlens reads it, one class per transport (Flower's answer to Redis vs RabbitMQ): how many
messages wait in each queue, and which tasks the broker still holds, for recovery, /metrics and the workers
page.

Redis (kombu's transport): each queue is a list (plus one per priority level), and a message a worker took sits
in the `unacked` hash until acknowledged. AMQP (RabbitMQ): depths by passive declares; the ready messages are
browsed with basic_get on a channel of their own that is closed without acknowledging them, so RabbitMQ puts
them back where they were (no management plugin needed). A message a live worker holds unacknowledged is
invisible there: recovery may then send that job again, which the claim makes harmless (lifecycle.start), and
RabbitMQ requeues what a dead worker's connection held, so none is lost to a visibility timeout.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

from kombu.exceptions import ChannelError, OperationalError
from kombu.utils.url import maybe_sanitize_url

from convlens.worker.app import app
from convlens.worker.queues import QUEUES

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priority levels in lists named QUEUE + SEP + level
BROWSE_AT_MOST = 10_000  # messages read per queue on RabbitMQ; a longer queue is counted as holding them all


@dataclass(frozen=True)
class Held:
    """A message the broker holds: its queue, task name and task id."""

    queue: str
    task: str | None
    id: str | None

    @classmethod
    def of(cls, queue: str, message: dict) -> Held:
        headers = message.get("headers") or {}
        return cls(queue, headers.get("task"), headers.get("id"))


@dataclass(frozen=True)
class QueueDepths:
    counts: dict[str, int | None]  # None: not known (the broker could not be reached)
    unreachable: str | None = None  # why, in one line naming the broker


class Transport(ABC):
    @abstractmethod
    def held(self, taken_since: float) -> list[Held] | None:
        """The messages waiting in any queue, or taken by a worker since `taken_since` (a Unix time) where the
        broker keeps that; None when it cannot tell (recovery then sends nothing again)."""

    def depths(self) -> QueueDepths:
        """Messages waiting in each queue, by passive declares (both transports answer them); with the reason
        when the broker could not be reached (asked once, without kombu's back-off, so a page says it at once)."""
        counts: dict[str, int | None] = dict.fromkeys(QUEUES)
        try:
            with app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=0, timeout=2)
                for name in QUEUES:
                    try:
                        counts[name] = conn.default_channel.queue_declare(queue=name, passive=True).message_count
                    except ChannelError:  # the broker has never seen the queue: nothing waits in it
                        counts[name] = 0
        except (OperationalError, OSError, ConnectionError) as exc:
            why = str(exc).splitlines()[0].rstrip(".") if str(exc) else "no answer"
            return QueueDepths(dict.fromkeys(QUEUES), f"the broker ({maybe_sanitize_url(app.conf.broker_url)}) "
                                                       f"cannot be reached: {why}")
        return QueueDepths(counts)


    def purge(self, queues: tuple[str, ...] = QUEUES) -> int:
        """Drops every message waiting in these queues; returns how many. Queued units stay queued in the database
        and recovery sends them again once they are stale, so nothing a user submitted is lost: what goes is the
        spare tickets (a mass cancel leaves one per cancelled unit) and anything not convlens's."""
        dropped = 0
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=5)
            for name in queues:
                try:
                    dropped += conn.default_channel.queue_purge(name) or 0
                except ChannelError:  # never declared: nothing waits in it
                    continue
        return dropped


class RedisTransport(Transport):
    def held(self, taken_since: float) -> list[Held] | None:
        # A message taken earlier and still unacknowledged belongs to a worker that died before it could claim its
        # job (a live one would have): the broker keeps it for the visibility timeout (hours), so it counts as lost.
        with app.connection_for_read() as conn:
            client = conn.default_channel.client
            found = [Held.of(q, json.loads(m)) for q in QUEUES
                     for key in (q, *(f"{q}{PRIORITY_SEP}{p}" for p in (3, 6, 9))) for m in client.lrange(key, 0, -1)]
            tags = client.zrangebyscore("unacked_index", taken_since, "+inf")  # kombu's delivery times
            if tags:  # each [message, exchange, routing key]: the routing key is the queue's name
                found += [Held.of(entry[2], entry[0]) for v in client.hmget("unacked", tags) if v
                          for entry in [json.loads(v)]]
        return found


class AmqpTransport(Transport):
    def held(self, taken_since: float) -> list[Held] | None:
        found: list[Held] = []
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()  # its own: closing it hands every browsed message back
            try:
                for name in QUEUES:
                    for _ in range(BROWSE_AT_MOST):
                        try:
                            message = channel.basic_get(queue=name, no_ack=False)
                        except ChannelError:  # the queue was never declared: nothing waits in it
                            channel = conn.channel()
                            break
                        if message is None:
                            break
                        found.append(Held.of(name, {"headers": message.headers}))
                    else:
                        return None  # more than we browse: too many to tell
            finally:
                channel.close()
        return found


def transport() -> Transport:
    """The adapter for the configured broker."""
    scheme = app.conf.broker_url.split("://", 1)[0]
    return AmqpTransport() if scheme.startswith(("amqp", "pyamqp")) else RedisTransport()

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

from kombu.exceptions import ChannelError, OperationalError

from convlens.worker.app import app
from convlens.worker.queues import QUEUES

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priority levels in lists named QUEUE + SEP + level
BROWSE_AT_MOST = 10_000  # messages read per queue on RabbitMQ; a longer queue is counted as holding them all


class Transport(ABC):
    @abstractmethod
    def task_ids(self, taken_since: float) -> set[str] | None:
        """Task ids of the messages waiting in any queue, or taken by a worker since `taken_since` (a Unix time)
        where the broker keeps that; None when it cannot tell (recovery then sends nothing again)."""

    def depths(self) -> dict[str, int | None]:
        """Messages waiting in each queue, by passive declares (both transports answer them); None for all: the
        broker could not be reached."""
        depths: dict[str, int | None] = dict.fromkeys(QUEUES)
        try:
            with app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1)
                for name in QUEUES:
                    try:
                        depths[name] = conn.default_channel.queue_declare(queue=name, passive=True).message_count
                    except ChannelError:  # the broker has never seen the queue: nothing waits in it
                        depths[name] = 0
        except (OperationalError, OSError, ConnectionError):
            return dict.fromkeys(QUEUES)
        return depths


class RedisTransport(Transport):
    def task_ids(self, taken_since: float) -> set[str] | None:
        # A message taken earlier and still unacknowledged belongs to a worker that died before it could claim its
        # job (a live one would have): the broker keeps it for the visibility timeout (hours), so it counts as lost.
        with app.connection_for_read() as conn:
            client = conn.default_channel.client
            messages = [json.loads(m) for q in QUEUES for key in (q, *(f"{q}{PRIORITY_SEP}{p}" for p in (3, 6, 9)))
                        for m in client.lrange(key, 0, -1)]
            tags = client.zrangebyscore("unacked_index", taken_since, "+inf")  # kombu's delivery times
            if tags:
                messages += [json.loads(v)[0] for v in client.hmget("unacked", tags) if v]  # [message, exchange, key]
        return {m.get("headers", {}).get("id") for m in messages}


class AmqpTransport(Transport):
    def task_ids(self, taken_since: float) -> set[str] | None:
        found: set[str] = set()
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
                        found.add((message.headers or {}).get("id"))
                    else:
                        return None  # more than we browse: too many to tell
            finally:
                channel.close()
        return found


def transport() -> Transport:
    """The adapter for the configured broker."""
    scheme = app.conf.broker_url.split("://", 1)[0]
    return AmqpTransport() if scheme.startswith(("amqp", "pyamqp")) else RedisTransport()

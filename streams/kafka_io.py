"""Small aiokafka helpers shared by the command-line tools (produce, consume, dlq)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from trackflow.streams.topics import KafkaUnavailable


async def start_producer(bootstrap: str) -> AIOKafkaProducer:
    """An idempotent, acks=all producer, started; KafkaUnavailable with a hint when unreachable."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10,
                                enable_idempotence=True, request_timeout_ms=30_000)
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise KafkaUnavailable(bootstrap, exc) from None
    return producer


async def start_consumer(bootstrap: str, **kwargs: object) -> AIOKafkaConsumer:
    """A started consumer without subscriptions; KafkaUnavailable with a hint when unreachable."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kwargs)
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(bootstrap, exc) from None
    return consumer

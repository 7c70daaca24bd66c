"""Small aiokafka helpers shared by the command-line tools (produce, consume, dlq)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from trackflow.streams.kafka_security import aiokafka_client_kwargs
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import unavailable


async def start_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    """An idempotent, acks=all producer, started; KafkaUnavailable with a hint when unreachable."""
    producer = AIOKafkaProducer(**aiokafka_client_kwargs(kafka), acks="all", linger_ms=10,
                                enable_idempotence=True, request_timeout_ms=30_000)
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise await unavailable(kafka, exc) from None
    return producer


async def start_consumer(kafka: KafkaSettings, **kwargs: object) -> AIOKafkaConsumer:
    """A started consumer without subscriptions; KafkaUnavailable with a hint when unreachable."""
    consumer = AIOKafkaConsumer(**aiokafka_client_kwargs(kafka), enable_auto_commit=False,
                                **kwargs)
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise await unavailable(kafka, exc) from None
    return consumer

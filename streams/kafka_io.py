"""Small aiokafka helpers shared by the client API and the command-line tools.

:func:`connection_options` is the one place that turns the ``[kafka]`` settings into aiokafka
connection arguments: every producer, consumer and admin client of the client API and the CLI
gets its connection from there, so transport security (SASL, TLS) is added in one place.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import KafkaUnavailable

Kafka = KafkaSettings | str
"""The Kafka settings section, or a bare bootstrap list (``host:port,...``) for plaintext."""


def connection_options(kafka: Kafka) -> dict[str, Any]:
    """aiokafka keyword arguments that say where Kafka is and how to connect to it."""
    bootstrap = kafka if isinstance(kafka, str) else kafka.bootstrap_servers
    return {"bootstrap_servers": bootstrap}


def bootstrap_of(kafka: Kafka) -> str:
    return kafka if isinstance(kafka, str) else kafka.bootstrap_servers


async def start_producer(kafka: Kafka, **kwargs: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer, started; KafkaUnavailable with a hint when unreachable."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 10, "enable_idempotence": True,
                               "request_timeout_ms": 30_000, **kwargs}
    producer = AIOKafkaProducer(**connection_options(kafka), **options)
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise KafkaUnavailable(bootstrap_of(kafka), exc) from None
    return producer


async def start_consumer(kafka: Kafka, **kwargs: Any) -> AIOKafkaConsumer:
    """A started consumer; KafkaUnavailable with a hint when unreachable."""
    options: dict[str, Any] = {"enable_auto_commit": False, **kwargs}
    consumer = AIOKafkaConsumer(**connection_options(kafka), **options)
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(bootstrap_of(kafka), exc) from None
    return consumer

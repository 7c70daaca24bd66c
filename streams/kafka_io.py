"""Small aiokafka helpers shared by the client API and the command-line tools.

:func:`connection_options` is the one place that turns the ``[kafka]`` settings into aiokafka
connection arguments (address, TLS and SASL, through :mod:`streams.kafka_security`): every
producer, consumer and admin client of the client API and the CLI gets its connection from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from trackflow.streams.kafka_security import aiokafka_client_kwargs
from trackflow.streams.settings import KafkaSettings
from trackflow.streams.topics import unavailable

Kafka = KafkaSettings | str
"""The Kafka settings section, or a bare bootstrap list (``host:port,...``) for plaintext."""


def kafka_settings(kafka: Kafka) -> KafkaSettings:
    """The settings section for ``kafka``; a bare bootstrap list means plaintext."""
    return KafkaSettings(bootstrap_servers=kafka) if isinstance(kafka, str) else kafka


def connection_options(kafka: Kafka) -> dict[str, Any]:
    """aiokafka keyword arguments that say where Kafka is and how to connect to it."""
    return aiokafka_client_kwargs(kafka_settings(kafka))


def bootstrap_of(kafka: Kafka) -> str:
    return kafka_settings(kafka).bootstrap_servers


async def start_producer(kafka: Kafka, **kwargs: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer, started; KafkaUnavailable with a hint when unreachable."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 10, "enable_idempotence": True,
                               "request_timeout_ms": 30_000, **kwargs}
    producer = AIOKafkaProducer(**connection_options(kafka), **options)
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await producer.stop()
        raise await unavailable(kafka_settings(kafka), exc) from None
    return producer


async def start_consumer(kafka: Kafka, **kwargs: Any) -> AIOKafkaConsumer:
    """A started consumer; KafkaUnavailable with a hint when unreachable."""
    options: dict[str, Any] = {"enable_auto_commit": False, **kwargs}
    consumer = AIOKafkaConsumer(**connection_options(kafka), **options)
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise await unavailable(kafka_settings(kafka), exc) from None
    return consumer


async def seek_to(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
                  where: Literal["beginning", "end"]) -> dict[TopicPartition, int]:
    """Put each of the assigned ``tps`` at the offset its partition begins or ends at now, and
    return those offsets.

    Not ``seek_to_beginning()``: right after ``assign()`` the consumer may already be asking
    the broker for the offsets of its ``auto_offset_reset`` policy, and when that answer comes
    after a ``seek_to_beginning()`` it wins, so the consumer starts at the end and reads
    nothing. A ``seek()`` to an offset fetched here leaves no reset pending to be overtaken.
    """
    offsets = await (consumer.beginning_offsets(tps) if where == "beginning"
                     else consumer.end_offsets(tps))
    for tp in tps:
        consumer.seek(tp, offsets[tp])
    return dict(offsets)

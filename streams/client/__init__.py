"""trackflow's Python client API: publish raw tracks, read enriched ones.

::

    from trackflow.streams.client import TrackProducer, TrackConsumer

    async with TrackProducer(settings.kafka, source="my-scraper") as producer:
        result = await producer.send(artist="Daft Punk", title="One More Time")

    async with TrackConsumer(settings.kafka, from_beginning=True, latest_only=True,
                             idle_timeout_s=5) as consumer:
        async for track in consumer:
            print(track.track_id, track.bpm, track.provenance("bpm"))

Both take the ``[kafka]`` settings section (``load_settings().kafka``), the same object the CLI
and the worker use, so connection settings apply alike; a bootstrap string works for plaintext.
"""

from trackflow.streams.client.consumer import TrackConsumer
from trackflow.streams.client.producer import (
    Accepted,
    ProduceReport,
    Rejected,
    SendResult,
    TrackProducer,
    TrackRejected,
    prepare_track,
)
from trackflow.streams.client.records import (
    EnrichedTrack,
    FieldSource,
    Position,
    ProviderOutcome,
    RawTrack,
)
from trackflow.streams.client.sync import SyncTrackProducer
from trackflow.streams.topics import KafkaToolError, KafkaUnavailable, TopicMissing

__all__ = [
    "Accepted", "EnrichedTrack", "FieldSource", "KafkaToolError", "KafkaUnavailable", "Position",
    "ProduceReport", "ProviderOutcome", "RawTrack", "Rejected", "SendResult", "SyncTrackProducer",
    "TopicMissing", "TrackConsumer", "TrackProducer", "TrackRejected", "prepare_track",
]

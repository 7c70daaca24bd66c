"""The names of the worker's changelogged tables, without Faust: the topic layout
(``streams.topics``) names their changelog topics, and a producer that only checks the layout
must not load the stream processor for it. ``agents.runner`` declares them."""

from __future__ import annotations

#: Breaker state and rate-limit pacing per provider and partition.
RESILIENCE_TABLE = "trackflow-resilience"
#: The DLQ retry schedule.
DLQ_SCHEDULE_TABLE = "trackflow-dlq-schedule"
#: The revision each track's refreshes reached (see agents.refresh).
REFRESH_TABLE = "trackflow-refresh-revisions"
TABLES = (RESILIENCE_TABLE, DLQ_SCHEDULE_TABLE, REFRESH_TABLE)

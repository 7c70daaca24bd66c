"""Kafka's default partitioner for keyed records, with the hashes of recent keys kept.

aiokafka's ``DefaultPartitioner`` (the Java client's rule: murmur2 of the key, made positive,
modulo the partition count) hashes in pure Python: about 7 us for a 28-byte track id on the
development machine, once per record the worker publishes. Keys repeat (a chart's tracks come
back week after week), so :class:`KeyHashPartitioner` keeps the hash of the last ``max_keys``
keys; the partition is chosen exactly as ``DefaultPartitioner`` chooses it, so records keep the
partition (and order) any Kafka client would give them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2


class KeyHashPartitioner:
    """A producer ``partitioner``: ``DefaultPartitioner`` with a bounded memo of key hashes."""

    def __init__(self, max_keys: int = 65_536) -> None:
        self._hash: Callable[[bytes], int] = functools.lru_cache(maxsize=max_keys)(murmur2)
        self._unkeyed = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: Sequence[int],
                 available: Sequence[int]) -> int:
        if key is None:
            return int(self._unkeyed(key, all_partitions, available))
        return all_partitions[(self._hash(key) & 0x7FFFFFFF) % len(all_partitions)]

"""The worker's producer partitioner puts every keyed record where Kafka's default one does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from trackflow.streams.partitioner import KeyHashPartitioner

# From Kafka's own UtilsTest.testMurmur2 (the Java client's hashes, as signed ints).
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482,
                b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
                b"abc": 479470107}


def test_partitions_follow_the_java_clients_hash() -> None:
    part = KeyHashPartitioner()
    for key, java in JAVA_MURMUR2.items():
        for n in (1, 3, 8, 12):
            expected = (java & 0x7FFFFFFF) % n
            assert part(key, list(range(n)), []) == expected
            assert part(key, list(range(n)), []) == expected, "a kept hash gives the same"


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=50),
       st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True))
def test_every_key_goes_where_the_default_partitioner_puts_it(
        keys: list[bytes], partitions: list[int]) -> None:
    ours, default = KeyHashPartitioner(max_keys=8), DefaultPartitioner()
    ids = sorted(partitions)
    for key in keys + keys:  # the second round from the kept hashes (or evicted ones)
        assert ours(key, ids, ids) == default(key, ids, ids)


def test_unkeyed_records_go_to_an_available_partition() -> None:
    part = KeyHashPartitioner()
    assert {part(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert part(None, [0, 1], []) in (0, 1)

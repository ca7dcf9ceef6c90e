"""The RFC 5080 §2.2.2 response cache (radtrack.radius.dedup), without the network."""

from __future__ import annotations

from radtrack.radius.dedup import IN_FLIGHT, SWEEP_EVERY, ResponseCache


def key(n: int) -> tuple[str, int, int, bytes]:
    return ("192.0.2.1", 40000 + n // 256, n % 256, n.to_bytes(16, "big"))


def test_unknown_key_misses() -> None:
    cache = ResponseCache(ttl=30.0)
    assert cache.lookup(key(1), 0.0) is None
    assert len(cache) == 0


def test_duplicate_while_in_flight_is_in_flight_however_long_the_write_takes() -> None:
    cache = ResponseCache(ttl=30.0)
    cache.begin(key(1), 0.0)
    assert cache.lookup(key(1), 0.0) is IN_FLIGHT
    assert cache.lookup(key(1), 1_000.0) is IN_FLIGHT  # no expiry before the answer
    assert cache.lookup(key(2), 0.0) is None


def test_answered_duplicate_gets_the_same_reply_until_the_ttl_ends() -> None:
    cache = ResponseCache(ttl=30.0)
    cache.begin(key(1), 0.0)
    cache.answer(key(1), b"reply-1", 10.0)
    assert cache.lookup(key(1), 10.0) == b"reply-1"
    assert cache.lookup(key(1), 40.0) == b"reply-1"  # expiry 40: still valid at 40
    assert cache.lookup(key(1), 40.5) is None  # expired: processed again
    assert len(cache) == 0


def test_forget_after_a_failed_write_lets_the_retransmission_through() -> None:
    cache = ResponseCache(ttl=30.0)
    cache.begin(key(1), 0.0)
    cache.forget(key(1))
    assert cache.lookup(key(1), 0.0) is None
    cache.forget(key(2))  # unknown: nothing happens


def test_expired_answers_are_swept() -> None:
    cache = ResponseCache(ttl=1.0)
    for n in range(SWEEP_EVERY - 1):
        cache.begin(key(n), 0.0)
        cache.answer(key(n), b"r", 0.0)
    assert len(cache) == SWEEP_EVERY - 1
    cache.begin(key(10_000), 5.0)
    cache.answer(key(10_000), b"r", 5.0)  # the sweep runs: the old ones expired at 1.0
    assert len(cache) == 1
    assert cache.lookup(key(10_000), 5.0) == b"r"


def test_capacity_drops_the_oldest_answers_first_and_keeps_packets_in_flight() -> None:
    cache = ResponseCache(ttl=30.0, capacity=3)
    cache.begin(key(0), 0.0)  # in flight throughout
    for n in range(1, 4):
        cache.begin(key(n), float(n))
        cache.answer(key(n), b"r%d" % n, float(n))
    assert len(cache) == 3
    assert cache.lookup(key(0), 4.0) is IN_FLIGHT
    assert cache.lookup(key(1), 4.0) is None  # the oldest answer made room
    assert (cache.lookup(key(2), 4.0), cache.lookup(key(3), 4.0)) == (b"r2", b"r3")


def test_answer_again_after_expiry_counts_from_the_new_answer() -> None:
    cache = ResponseCache(ttl=10.0)
    cache.begin(key(1), 0.0)
    cache.answer(key(1), b"old", 0.0)
    assert cache.lookup(key(1), 11.0) is None
    cache.begin(key(1), 11.0)
    cache.answer(key(1), b"new", 11.0)
    for n in range(2, 2 + SWEEP_EVERY):  # sweeps pass the first answer's stale record
        cache.begin(key(n), 12.0)
        cache.answer(key(n), b"r", 12.0)
    assert cache.lookup(key(1), 20.0) == b"new"

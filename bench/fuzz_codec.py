#!/usr/bin/env python3
"""Long fuzz run of radtrack's RADIUS codec (the long variant of tests/test_codec.py).

    python3 bench/fuzz_codec.py --cases 300000 --seed 1

Every case is one datagram, from one of four kinds:

- ``random``: 0-5000 random octets;
- ``noise``: random octets behind a plausible header (code, identifier, Length, authenticator),
  so the attribute walk is reached;
- ``damaged``: a valid Accounting-Request or Status-Server (built here: random attributes,
  values sometimes of the wrong size, a Message-Authenticator sometimes) with 1-4 damages:
  bit flips, truncations, Length edits, attribute lengths set to 0/1/255/anything, octets
  appended, inserted or deleted;
- ``intact``: such a valid packet undamaged, sometimes with padding past Length.

Each datagram goes through ``codec.decode``; an accepted packet through ``verify_request``
(right and wrong secret, with and without a required Message-Authenticator),
``AccountingDecoder.request`` and ``encode_reply``. The contract checked (radtrack/errors.py,
the codec's docstring): decode and request raise only MalformedPacket, verify_request returns a
bool and raises nothing, encode_reply raises nothing; an intact packet decodes and verifies.
Anything else stops the run with the case (hex) on stderr and exit status 1.

Time per case covers the codec calls only, not building the datagram. The summary is JSON on
stdout: cases, rejected, accepted, max_case_ms, peak_rss_mb, seconds and more.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import hmac
import json
import platform
import random
import resource
import struct
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable

from radtrack.errors import MalformedPacket
from radtrack.radius import codec, dictionary
from radtrack.radius.decoder import AccountingDecoder

NOW = 1_700_000_000.0
ZERO = b"\x00" * 16
STATUSES = (1, 2, 3, 7, 8)  # the ones radtrack tracks (RFC 2866 §5.1)
STRING_TYPES = (
    codec.USER_NAME,
    codec.CALLED_STATION_ID,
    codec.CALLING_STATION_ID,
    codec.NAS_IDENTIFIER,
    codec.CONNECT_INFO,
    codec.NAS_PORT_ID,
)
INTEGER_TYPES = (
    codec.ACCT_DELAY_TIME,
    codec.ACCT_INPUT_OCTETS,
    codec.ACCT_OUTPUT_OCTETS,
    codec.ACCT_SESSION_TIME,
    codec.ACCT_INPUT_PACKETS,
    codec.ACCT_OUTPUT_PACKETS,
    codec.ACCT_TERMINATE_CAUSE,
    codec.ACCT_INPUT_GIGAWORDS,
    codec.ACCT_OUTPUT_GIGAWORDS,
    codec.EVENT_TIMESTAMP,
    codec.NAS_PORT_TYPE,
    codec.ACCT_INTERIM_INTERVAL,
)
OCTET_TYPES = (codec.CLASS, codec.PROXY_STATE, 26, 200, 224, 255)  # 26: Vendor-Specific


class ContractBroken(Exception):
    """The codec did something its contract does not allow."""


def _sized(rng: random.Random, size: int) -> bytes:
    """``size`` random octets, one time in twenty of another size (0-20)."""
    return rng.randbytes(size if rng.random() >= 0.05 else rng.randint(0, 20))


def random_attribute(rng: random.Random) -> tuple[int, bytes]:
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(STRING_TYPES), rng.randbytes(rng.randint(0, 40))
    if pick < 0.7:
        return rng.choice(INTEGER_TYPES), _sized(rng, 4)
    if pick < 0.8:
        return rng.choice((codec.NAS_IP_ADDRESS, codec.FRAMED_IP_ADDRESS)), _sized(rng, 4)
    if pick < 0.85:
        return codec.NAS_IPV6_ADDRESS, _sized(rng, 16)
    return rng.choice(OCTET_TYPES), rng.randbytes(rng.randint(0, 64))


def encode(attrs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((attr_type, len(value) + 2)) + value for attr_type, value in attrs)


def valid_packet(rng: random.Random, secret: bytes) -> bytes:
    """A structurally valid, correctly signed Accounting-Request (RFC 2866 §3), or one time in
    ten a Status-Server (RFC 5997 §3); with a Message-Authenticator (RFC 2869 §5.14) at a
    random place when there is one."""
    attrs = [random_attribute(rng) for _ in range(rng.randint(0, 25))]
    if rng.random() < 0.9:
        status = rng.choice(STATUSES) if rng.random() < 0.9 else rng.getrandbits(32)
        attrs.insert(
            rng.randint(0, len(attrs)), (codec.ACCT_STATUS_TYPE, struct.pack("!I", status))
        )
    if rng.random() < 0.9:
        session = rng.randbytes(rng.randint(0, 24))
        attrs.insert(rng.randint(0, len(attrs)), (codec.ACCT_SESSION_ID, session))
    status_server = rng.random() < 0.1
    with_ma = status_server or rng.random() < 0.4
    ma_at = rng.randint(0, len(attrs))
    if with_ma:
        attrs.insert(ma_at, (codec.MESSAGE_AUTHENTICATOR, ZERO))
    code = codec.STATUS_SERVER if status_server else codec.ACCOUNTING_REQUEST
    body = encode(attrs)
    head = struct.pack("!BBH", code, rng.randrange(256), 20 + len(body))
    vector = rng.randbytes(16) if status_server else ZERO
    if with_ma:
        offset = sum(len(value) + 2 for _, value in attrs[:ma_at]) + 2
        mac = hmac.new(secret, head + vector + body, "md5").digest()
        body = body[:offset] + mac + body[offset + 16 :]
    if status_server:
        return head + vector + body
    return head + hashlib.md5(head + ZERO + body + secret).digest() + body


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    pos = rng.randrange(len(data))
    return data[:pos] + bytes((data[pos] ^ (1 << rng.randrange(8)),)) + data[pos + 1 :]


def _length_field(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 4:
        return data
    length = rng.choice(
        (
            rng.randint(0, 40),
            rng.randint(4090, 4100),
            rng.randrange(65536),
            len(data) + rng.randint(-40, 40),
        )
    )
    return data[:2] + struct.pack("!H", max(0, min(65535, length))) + data[4:]


def _attribute_length(data: bytes, rng: random.Random) -> bytes:
    offsets, pos = [], 20
    while pos + 1 < len(data) and data[pos + 1] >= 2:
        offsets.append(pos + 1)
        pos += data[pos + 1]
    if not offsets:
        return data
    pos = rng.choice(offsets)
    return data[:pos] + bytes((rng.choice((0, 1, 255, rng.randrange(256))),)) + data[pos + 1 :]


def _insert(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randint(0, len(data))
    return data[:pos] + rng.randbytes(rng.randint(1, 8)) + data[pos:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randint(0, len(data))
    return data[:pos] + data[pos + rng.randint(1, 40) :]


DAMAGES: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    _flip,
    lambda data, rng: data[: rng.randint(0, len(data))],  # truncation
    _length_field,
    _attribute_length,
    lambda data, rng: data + rng.randbytes(rng.randint(1, 300)),  # appended
    _insert,
    _delete,
)


def make_case(rng: random.Random) -> tuple[str, bytes, bytes]:
    """(kind, datagram, secret)."""
    secret = rng.randbytes(rng.randint(1, 32))
    pick = rng.random()
    if pick < 0.2:
        return "random", rng.randbytes(rng.randint(0, 5000)), secret
    if pick < 0.4:
        body = rng.randbytes(rng.randint(0, 400))
        head = struct.pack(
            "!BBH", rng.choice((4, 12, 5, 1, 40)), rng.randrange(256), 20 + len(body)
        )
        return "noise", head + rng.randbytes(16) + body, secret
    data = valid_packet(rng, secret)
    if pick < 0.85:
        for _ in range(rng.randint(1, 4)):
            data = rng.choice(DAMAGES)(data, rng)
        return "damaged", data, secret
    if rng.random() < 0.5:
        data += rng.randbytes(rng.randint(1, 200))  # padding past Length (RFC 2866 §3)
    return "intact", data, secret


def exercise(
    kind: str, data: bytes, secret: bytes, decoder: AccountingDecoder, counts: Counter[str]
) -> None:
    """Run one datagram through the codec, counting outcomes; raise ContractBroken (or let an
    unexpected exception through) when the contract does not hold."""
    try:
        packet = codec.decode(data)
    except MalformedPacket:
        if kind == "intact":
            raise ContractBroken("an intact packet was rejected") from None
        counts["rejected"] += 1
        return
    counts["accepted"] += 1
    verdicts = [
        codec.verify_request(packet, key, require_message_authenticator=required)
        for key in (secret, secret + b"-wrong")
        for required in (False, True)
    ]
    if not all(isinstance(verdict, bool) for verdict in verdicts):
        raise ContractBroken(f"verify_request returned {verdicts!r}")
    if verdicts[0]:
        counts["verified"] += 1
    elif kind == "intact":
        raise ContractBroken("an intact packet did not verify")
    if verdicts[2] or verdicts[3]:
        raise ContractBroken("a packet verified with the wrong secret")
    try:
        request = decoder.request(packet, "fuzz", "192.0.2.1", NOW)
    except MalformedPacket:
        counts["request_malformed"] += 1
    else:
        counts["request_none" if request is None else "requests"] += 1
    reply = codec.encode_reply(packet, secret, message_authenticator=packet.code == 12)
    if codec.decode(reply).all(codec.PROXY_STATE) != packet.all(codec.PROXY_STATE):
        raise ContractBroken("the reply lost Proxy-State")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(cases: int, seed: int, trace: bool) -> dict[str, object]:
    rng = random.Random(seed)
    decoder = AccountingDecoder(dictionary.load())
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    times = array.array("q", bytes(8 * cases))  # ns per case
    start_rss = rss_mb()
    if trace:
        tracemalloc.start()
    slowest: tuple[int, str, bytes, bytes] = (-1, "", b"", b"")
    started = time.perf_counter()
    for index in range(cases):
        kind, data, secret = make_case(rng)
        kinds[kind] += 1
        begin = time.perf_counter_ns()
        try:
            exercise(kind, data, secret, decoder, counts)
        except Exception as exc:
            sys.stderr.write(
                f"contract broken at case {index} (seed {seed}, kind {kind}): {exc!r}\n"
                f"secret: {secret.hex()}\ndatagram: {data.hex()}\n{traceback.format_exc()}"
            )
            raise SystemExit(1) from None
        elapsed = times[index] = time.perf_counter_ns() - begin
        if elapsed > slowest[0]:
            slowest = (elapsed, kind, data, secret)
    seconds = time.perf_counter() - started
    # time the slowest case again: a scheduler or GC pause does not repeat, a slow path does
    _, slow_kind, slow_data, slow_secret = slowest
    rerun = []
    for _ in range(5):
        begin = time.perf_counter_ns()
        exercise(slow_kind, slow_data, slow_secret, decoder, Counter())
        rerun.append(time.perf_counter_ns() - begin)
    ordered = sorted(times)
    summary: dict[str, object] = {
        "cases": cases,
        "rejected": counts["rejected"],
        "accepted": counts["accepted"],
        "verified": counts["verified"],
        "requests": counts["requests"],
        "requests_ignored_status": counts["request_none"],
        "requests_malformed": counts["request_malformed"],
        "kinds": dict(sorted(kinds.items())),
        "max_case_ms": round(ordered[-1] / 1e6, 3),
        "max_case_kind": slow_kind,
        "max_case_octets": len(slow_data),
        "max_case_rerun_ms": round(min(rerun) / 1e6, 3),
        "p999_case_us": round(ordered[int(cases * 0.999)] / 1e3, 1),
        "p99_case_us": round(ordered[int(cases * 0.99)] / 1e3, 1),
        "mean_case_us": round(sum(times) / cases / 1e3, 1),
        "start_rss_mb": round(start_rss, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "seconds": round(seconds, 1),
        "seed": seed,
        "python": platform.python_version(),
    }
    if trace:
        summary["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300_000, help="datagrams to try")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case generator")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (slower)"
    )
    args = parser.parse_args()
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    summary = run(args.cases, args.seed, args.tracemalloc)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The whole daemon against packets with odd contents (issue #16): hypothesis makes
authenticated Accounting-Requests with arbitrary octets in every text attribute the codec keeps
and integers at the edges of 32 bits, sends them over UDP to a real daemon interleaved with
normal Starts from another NAS, and checks what a user would notice:

- every normal packet is answered, and its session is online;
- every odd packet is answered too (radtrack stores what it cannot read as escaped text);
- the daemon stays ready, and memory equals the store after each batch and after a restart.

The long variant is ``python3 bench/fuzz_daemon.py --cases 100000`` (docs/reliability.md).
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radtrack.model import session_key
from tests.conftest import make_settings
from tests.oddpackets import (
    ACCOUNTING_OFF,
    ACCOUNTING_ON,
    BOUNDARY_INTEGERS,
    INTEGER_TYPES,
    INTERIM,
    NAS_IP_ADDRESS,
    START,
    STOP,
    STOP_TIME,
    TEXT_TYPES,
    DaemonThread,
    OddRequest,
    Sender,
    datagram,
    differences,
    normal_start,
)

ODD_SECRET = b"odd-nas-secret-0123"
NORMAL_SECRET = b"normal-nas-secret-0123"
NORMAL_SOURCE = "127.0.0.2"  # a NAS of its own: odd packets cannot touch its sessions
CLIENTS = [
    {"name": "nas-odd", "address": "127.0.0.1", "secret": ODD_SECRET.decode()},
    {"name": "nas-normal", "address": NORMAL_SOURCE, "secret": NORMAL_SECRET.decode()},
]

octets = st.binary(max_size=253) | st.sampled_from(
    [b"\xff", b"\xffsid", b"\x00", b"a\x00b", b"\\xff", "café".encode("latin-1"), b"\xed\xa0\x80"]
)
integer = (
    st.sampled_from(BOUNDARY_INTEGERS).map(lambda n: struct.pack("!I", n))
    | st.integers(0, 2**32 - 1).map(lambda n: struct.pack("!I", n))
    | st.binary(max_size=8)  # the wrong size
)
odd_request = st.builds(
    OddRequest,
    status=st.sampled_from((START, INTERIM, STOP, ACCOUNTING_ON, ACCOUNTING_OFF)),
    session_id=octets | st.none(),
    values=st.fixed_dictionaries(
        {},
        optional={
            **{kind: octets for kind in TEXT_TYPES.values()},
            **{kind: integer for kind in INTEGER_TYPES.values()},
            NAS_IP_ADDRESS: st.binary(min_size=4, max_size=4) | st.binary(max_size=6),
        },
    ),
).filter(lambda r: r.session_id is not None or r.status in (ACCOUNTING_ON, ACCOUNTING_OFF))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[DaemonThread]:
    settings = make_settings(tmp_path, radius={"clients": CLIENTS}, api={"listen": ""})
    harness = DaemonThread(settings)
    harness.start()
    try:
        yield harness
    finally:
        harness.close()


@pytest.mark.slow
def test_odd_packets_never_stop_the_others(running: DaemonThread) -> None:
    odd, normal = Sender("127.0.0.1"), Sender(NORMAL_SOURCE)
    counter = itertools.count()
    normal_ids: list[str] = []

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(odd_request, min_size=1, max_size=12), st.lists(st.booleans(), max_size=24))
    def batch(requests: list[OddRequest], order: list[bool]) -> None:
        port = running.port
        odd_sent: set[int] = set()
        normal_sent: set[int] = set()
        pending = list(requests)
        starts = 1 + len(requests) // 3
        for step in itertools.chain(order, itertools.repeat(True)):
            if not pending and not starts:
                break
            if (step and starts) or not pending:
                number = next(counter)
                session_id = f"n0rmal-{number}"
                identifier = normal.identifier()
                event_time = 1_705_314_600 + number
                packet = normal_start(session_id, 70_000 + number, event_time)
                normal.send(datagram(identifier, NORMAL_SECRET, packet), port)
                normal_sent.add(identifier)
                normal_ids.append(session_key("nas-normal/192.0.2.1", session_id, None))
                starts -= 1
            else:
                identifier = odd.identifier()
                odd.send(datagram(identifier, ODD_SECRET, pending.pop().attributes()), port)
                odd_sent.add(identifier)
        assert normal.replies(normal_sent, 5.0) == normal_sent, "a normal packet got no answer"
        assert odd.replies(odd_sent, 5.0) == odd_sent, "an odd packet got no answer"
        daemon = running.daemon
        assert daemon.store.healthy
        for sid in normal_ids:
            session = daemon.index.get(sid)
            assert session is not None and session.online, f"normal session {sid} not online"
        memory, stored = running.state()
        assert differences(memory, stored) == []
        for row in stored.values():  # what the API and `radtrack sessions --json` print
            json.dumps(row, ensure_ascii=False).encode("utf-8")
            assert not any(isinstance(value, str) and "\0" in value for value in row)

    try:
        batch()
        dropped = running.daemon.service.stats.dropped
        assert sum(dropped.values()) == 0, dict(dropped)
        # a restart rebuilds the same live state from the store
        before, _ = running.state()
        online_before = {sid: row for sid, row in before.items() if row[STOP_TIME] is None}
        running.stop()
        running.start()
        after, stored = running.state()
        assert differences(after, stored) == []
        assert {sid: row for sid, row in after.items() if row[STOP_TIME] is None} == online_before
    finally:
        odd.close()
        normal.close()

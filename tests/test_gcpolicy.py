"""Sessions made by ingest leave the cyclic GC's sight within a maintenance round
(radtrack/gcpolicy.py): a full collection no longer scans every session online."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack import daemon as daemon_mod
from radtrack import gcpolicy
from tests.conftest import acct_packet, send_pyrad, udp_port
from tests.httpclient import http
from tests.test_api_thread import blocking_query


@pytest.mark.asyncio
async def test_sessions_made_by_ingest_are_frozen_by_the_next_round(
    daemon_factory: Any, dictionary: Dictionary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_mod, "MAINTAIN_INTERVAL", 0.2)
    daemon = await daemon_factory()
    now = int(time.time())
    for n in range(30):
        packet = acct_packet(dictionary, Acct_Status_Type="Start", Acct_Session_Id=f"gc-{n}",
                             User_Name=str(500 + n), Event_Timestamp=now)  # fmt: skip
        assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None
    online = {id(session) for session in daemon.index}
    assert len(online) == 30
    await asyncio.sleep(0.6)  # two rounds
    scanned = [o for o in gc.get_objects() if id(o) in online]  # every generation but frozen
    assert scanned == [], f"{len(scanned)} of 30 sessions are still scanned by the collector"
    assert daemon.http_address is not None
    reply = await http(daemon.http_address[1], "GET", "/metrics")
    frozen = next(
        float(line.split()[-1])
        for line in reply.body.decode().splitlines()
        if line.startswith("radtrack_gc_frozen_objects ")
    )
    assert frozen >= 30


def test_due_follows_the_collectors_own_rule() -> None:
    saved = gc.get_threshold()
    gc.disable()
    try:
        gc.set_threshold(500, 2, 1000)
        gc.collect()  # every count back to 0
        made = [[] for _ in range(400)]  # containers: the young count
        assert gc.isenabled() is False and gcpolicy.due() is None
        made += [[] for _ in range(200)]
        assert gcpolicy.due() == 0  # past the young threshold
        for _ in range(3):
            gc.collect(0)  # each adds one to the middle generation's count
        made += [[] for _ in range(600)]
        assert gcpolicy.due() == 1  # the middle one has seen more young passes than 2
        del made
    finally:
        gc.set_threshold(*saved)
        gc.enable()


@pytest.mark.asyncio
async def test_collections_run_on_the_ingest_loop_never_inside_a_query(
    daemon_factory: Any, dictionary: Dictionary
) -> None:
    daemon = await daemon_factory()
    now = int(time.time())
    for n in range(20):
        packet = acct_packet(dictionary, Acct_Status_Type="Start", Acct_Session_Id=f"pace-{n}",
                             User_Name="700", Event_Timestamp=now)  # fmt: skip
        assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    threads: list[str] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.callbacks.append(record)
    try:
        assert not gc.isenabled()  # the daemon's pace() runs the passes
        # queries make containers on the API's thread: enough for many young passes
        for _ in range(4):
            answers = await asyncio.gather(
                *(asyncio.to_thread(blocking_query, port, 700) for _ in range(40))
            )
            assert all(len(sessions) == 20 for _, sessions in answers)
        await asyncio.sleep(3 * gcpolicy.PACE_TICK)
    finally:
        gc.callbacks.remove(record)
    assert len(threads) >= 3, "the queries made no collection due"
    assert set(threads) == {threading.current_thread().name}, threads  # the daemon's loop's
    await daemon.stop()
    assert gc.isenabled()  # the process's collector is back as it was

"""Sessions made by ingest leave the cyclic GC's sight within a maintenance round
(radtrack/gcpolicy.py): a full collection no longer scans every session online."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack import daemon as daemon_mod
from tests.conftest import acct_packet, send_pyrad, udp_port
from tests.httpclient import http


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

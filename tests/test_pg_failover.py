"""A node SIGKILLed under load: the NAS (a sender that retransmits every packet until it is
answered) fails over to the other node, and nothing acknowledged is lost or stored twice.
Two real ``radtrack serve`` processes on one real PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest
from pyrad.dictionary import Dictionary

from tests.test_crash import Daemon, Nas, Plan, free_udp_port, make_plan, write_config


def pg_store(dsn: str, name: str) -> str:
    return f'backend = "postgresql"\ndsn = "{dsn}"\nnode_name = "{name}"'


async def check_database(dsn: str, nas: Nas, plan: Plan) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            "SELECT session_id, start_time, last_update, stop_time, close_reason FROM sessions"
        )
    finally:
        await conn.close()
    rows = {r["session_id"]: r for r in found}
    assert len(rows) == len(found), "a session was stored twice"
    for sid, status, ts in nas.acked:
        row = rows.get(sid)
        assert row is not None, f"acknowledged {status} of {sid} is not in the database"
        if status == "Start":
            assert row["start_time"] == ts
        elif status == "Interim-Update":
            assert row["last_update"] >= ts or row["stop_time"] is not None
        else:
            assert row["stop_time"] == ts and row["close_reason"] == "stop"
    online = {sid for sid, r in rows.items() if r["stop_time"] is None}
    assert online == {sid for sid, _, _, _ in plan.packets} - plan.stopped


@pytest.mark.asyncio
async def test_a_node_killed_under_load_fails_over_to_the_other_with_nothing_lost(
    tmp_path: Path, dictionary: Dictionary, pg_dsn: str
) -> None:
    plan = make_plan(dictionary, 400, seed=13)
    ports = {name: free_udp_port() for name in ("a", "b")}
    a, b = (Daemon(write_config(tmp_path, ports[n], pg_store(pg_dsn, n), n)) for n in ("a", "b"))
    await a.start()
    await b.start()
    transport, nas = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Nas(plan, ports["a"]), local_addr=("127.0.0.1", 0)
    )
    try:
        sending = asyncio.create_task(nas.run())
        while len(nas.acked) < len(plan.packets) // 3 and not sending.done():
            await asyncio.sleep(0.002)
        assert not sending.done(), "the load ended before the node could be killed"
        await a.kill(signal.SIGKILL)  # mid-load: some packets are inside a commit
        nas.port = ports["b"]  # the NAS's retransmissions go to its secondary server
        await asyncio.wait_for(sending, 120)
    finally:
        transport.close()
    assert await b.kill(signal.SIGTERM) == 0
    assert len(nas.acked) == len(plan.packets)
    await check_database(pg_dsn, nas, plan)

"""radtrack behind a real FreeRADIUS (issue #17, docs/freeradius.md): the NAS sends accounting to
FreeRADIUS, which proxies it to radtrack as an accounting home server and answers the NAS only
once radtrack answered. radclient (the NAS) -> freeradius -X -> radtrack, all on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from radtrack.daemon import Daemon
from tests.conftest import ADMIN_TOKEN, SECRET, radclient, udp_port
from tests.freeradius import FreeRadius, free_udp_port, proxy_config
from tests.httpclient import graphql

NAS_SECRET = "nas-secret-0123456789"
# what docs/freeradius.md puts in preacct: every Accounting-Request goes to the radtrack realm
PROXY_TO_RADTRACK = """
		update control {
			&Proxy-To-Realm := "radtrack"
		}
"""
ONLINE = (
    "query ($userId: Int!) { getOnlineSessions(userId: $userId) "
    "{ id sessionId nasIpAddress framedIpAddress } }"
)


def behind(tmp_path: Path, home_port: int, response_window: float = 2.0) -> FreeRadius:
    return FreeRadius(
        tmp_path / "raddb",
        acct_port=free_udp_port(),
        nas_secret=NAS_SECRET,
        preacct=PROXY_TO_RADTRACK,
        extra=proxy_config(home_port, SECRET, response_window),
    )


@pytest.fixture
def started() -> Iterator[Callable[[FreeRadius], FreeRadius]]:
    servers: list[FreeRadius] = []

    def start(server: FreeRadius) -> FreeRadius:
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


async def nas(server: FreeRadius, text: str) -> str:
    code, out = await radclient(server.acct_port, text, secret=NAS_SECRET)
    assert code == 0 and "Received Accounting-Response" in out, f"{out}\n{server.log()}"
    return out


def proxy_states(server: FreeRadius, packet: str) -> list[str]:
    """The Proxy-States of the first packet FreeRADIUS logged as ``packet`` (its -X log lists a
    packet's attributes on the lines after it) between itself and radtrack."""
    log = "\n".join(server.lines)
    found = re.search(
        rf"{packet} Id \d+ \S+ \S+ to 127\.0\.0\.1:\d+ length \d+\n((?:\(\d+\)   .*\n)*)", log
    )
    assert found is not None, server.log()
    return re.findall(r"Proxy-State = (0x[0-9a-f]+)", found.group(1))


SESSION = (
    'User-Name = "4711"\nAcct-Session-Id = "fr-1"\nNAS-IP-Address = 192.0.2.44\n'
    "NAS-Port-Type = Virtual\nFramed-IP-Address = 100.64.7.7\n"
)


@pytest.mark.asyncio
async def test_accounting_through_freeradius_reaches_radtrack(
    tmp_path: Path, daemon_factory: Callable[..., Any], started: Callable[..., FreeRadius]
) -> None:
    clients = [{"name": "freeradius", "address": "127.0.0.1", "secret": SECRET}]
    daemon: Daemon = await daemon_factory(radius={"listen": ["127.0.0.1:0"], "clients": clients})
    server = started(behind(tmp_path, udp_port(daemon)))

    # a NAS that is itself behind a proxy sends a Proxy-State: it must come back to it
    out = await nas(server, SESSION + "Acct-Status-Type = Start\nProxy-State = 0x6e61732d31\n")
    [session] = daemon.index.for_user(4711)
    # radtrack's NAS is FreeRADIUS (the client), the NAS inside it is NAS-IP-Address
    assert (session.nas_key, session.nas_name) == ("freeradius/192.0.2.44", "freeradius")
    assert daemon.http_address is not None
    reply = await graphql(daemon.http_address[1], ONLINE, ADMIN_TOKEN, userId=4711)
    assert reply.json() == {
        "data": {
            "getOnlineSessions": [
                {
                    "id": session.id,
                    "sessionId": "fr-1",
                    "nasIpAddress": "192.0.2.44",
                    "framedIpAddress": "100.64.7.7",
                }
            ]
        }
    }
    # FreeRADIUS proxied the NAS's Proxy-State and one of its own; radtrack's answer carried both
    # back, in order (RFC 2865 §5.33): FreeRADIUS logs each packet with its attributes
    assert proxy_states(server, "Received Accounting-Response") == proxy_states(
        server, "Sent Accounting-Request"
    )
    assert proxy_states(server, "Sent Accounting-Request")[0] == "0x6e61732d31"
    assert "Proxy-State = 0x6e61732d31" in out  # and FreeRADIUS gave the NAS its own back

    await nas(server, SESSION + "Acct-Status-Type = Interim-Update\nAcct-Session-Time = 60\n")
    assert daemon.index.for_user(4711)[0].session_time == 60
    await nas(server, SESSION + "Acct-Status-Type = Stop\nAcct-Session-Time = 90\n")
    assert daemon.index.for_user(4711) == []
    reply = await graphql(daemon.http_address[1], ONLINE, ADMIN_TOKEN, userId=4711)
    assert reply.json() == {"data": {"getOnlineSessions": []}}


@pytest.mark.asyncio
async def test_radtrack_down_means_no_answer_to_the_nas(
    tmp_path: Path, started: Callable[..., FreeRadius]
) -> None:
    """Proxying keeps radtrack's promise end to end: while radtrack does not answer, FreeRADIUS
    does not answer the NAS either, so the NAS keeps the packet and sends it again."""
    server = started(behind(tmp_path, free_udp_port(), response_window=1.0))
    code, out = await radclient(
        server.acct_port, SESSION + "Acct-Status-Type = Start\n", secret=NAS_SECRET
    )
    assert "Received Accounting-Response" not in out, out
    assert "Not sending reply to client" in "\n".join(server.lines), server.log()

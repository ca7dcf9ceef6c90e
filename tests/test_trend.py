"""The dashboard's trend (radtrack/trend.py): the ring of samples with the clock passed in, on
the real accounting core; then ``sessionTrend`` over GraphQL on a real daemon sampling on its
timer, for an admin and (refused) a reseller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from radtrack.fastpath import FastAccountant
from radtrack.model import AccountingRequest, StatusType
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.trend import SessionTrend, merged, series
from tests.conftest import ADMIN_TOKEN, RESELLER_TOKEN, acct_packet, send_pyrad, udp_port
from tests.httpclient import graphql

T0 = 1_705_314_600.0


def request(status: StatusType, nas: str, session_id: str, at: float) -> AccountingRequest:
    return AccountingRequest(
        status=status,
        nas_key=f"{nas}/192.0.2.1",
        nas_name=nas,
        nas_ip="192.0.2.1",
        session_id=session_id,
        event_time=at,
        user_name="12345",
    )


def test_samples_count_openings_and_keep_the_top_nases_by_name() -> None:
    index = SessionIndex()
    accountant = FastAccountant(index, UserDirectory())
    trend = SessionTrend(index, accountant, interval=10.0, span=30.0, top=2)
    assert trend.samples.maxlen == 3

    def send(status: StatusType, nas: str, session_id: str) -> None:
        accountant.handle(request(status, nas, session_id, T0))

    trend.sample(T0)  # the daemon's first sample, at start-up: nothing yet
    for i in range(3):
        send(StatusType.START, "big", f"b{i}")
    send(StatusType.START, "mid", "m0")
    send(StatusType.START, "small", "s0")
    trend.sample(T0 + 10)
    send(StatusType.STOP, "big", "b0")
    send(StatusType.STOP, "big", "b0")  # a repeated Stop closes nothing more
    send(StatusType.INTERIM_UPDATE, "small", "s0")  # an update opens nothing
    for i in range(2):
        send(StatusType.START, "small", f"s{i + 1}")
    trend.sample(T0 + 20)
    # a sample of the moment, not kept
    send(StatusType.START, "mid", "m1")
    samples = trend.read(T0 + 25)
    assert len(trend.samples) == 3
    assert [s.at for s in samples] == [T0, T0 + 10, T0 + 20, T0 + 25]
    assert [(s.online, s.opened, s.closed) for s in samples] == [
        (0, 0, 0),
        (5, 5, 0),
        (6, 2, 1),
        (7, 1, 0),
    ]
    assert samples[1].by_nas == (("big", 3), ("mid", 1)) and samples[1].other == 1
    assert samples[2].by_nas == (("small", 3), ("big", 2)) and samples[2].other == 1
    assert samples[3].by_nas == (("small", 3), ("big", 2)) and samples[3].other == 2

    columns = series(samples, trend.interval, top=2)
    assert columns["times"] == [T0, T0 + 10, T0 + 20, T0 + 25]
    assert columns["online"] == [0, 5, 6, 7]
    assert columns["opened"] == [0, 5, 2, 1] and columns["closed"] == [0, 0, 1, 0]
    # "small" was among the others at T0 + 10 (count unknown there); at T0 no NAS had sessions
    assert columns["by_nas"] == [
        {"nas_name": "small", "online": [0, None, 3, 3]},
        {"nas_name": "big", "online": [0, 3, 2, 2]},
    ]
    assert columns["other"] == [0, 2, 1, 2]
    for i, online in enumerate(columns["online"]):  # every session is in a series or in other
        known = sum(nas["online"][i] or 0 for nas in columns["by_nas"])
        assert known + columns["other"][i] == online

    # the ring is bounded: the oldest sample goes
    trend.sample(T0 + 30)
    assert [s.at for s in trend.samples] == [T0 + 10, T0 + 20, T0 + 30]
    assert series([], 10.0) == {
        "interval": 10.0,
        "times": [],
        "online": [],
        "opened": [],
        "closed": [],
        "by_nas": [],
        "other": [],
    }


def test_a_short_interval_merges_samples_instead_of_giving_more_points() -> None:
    index = SessionIndex()
    accountant = FastAccountant(index, UserDirectory())
    trend = SessionTrend(index, accountant, interval=1.0, span=10.0)
    for i in range(10):
        accountant.handle(request(StatusType.START, "nas", f"s{i}", T0))
        trend.sample(T0 + i)
    samples = trend.read(T0 + 9.5)
    assert len(samples) == 11 and merged(samples, 11) == samples
    # runs of 3, counted back from the sample of the moment: 2, 3, 3, 3 samples
    coarse = merged(samples, 4)
    assert [s.at for s in coarse] == [T0 + 1, T0 + 4, T0 + 7, T0 + 9.5]
    assert [s.online for s in coarse] == [2, 5, 8, 10]
    assert [s.opened for s in coarse] == [2, 3, 3, 2]  # every opening in one point or another
    columns = series(samples, 1.0, max_points=4)
    assert columns["online"] == [2, 5, 8, 10] and sum(columns["opened"]) == 10


TREND = "{ sessionTrend { interval times online opened closed byNas { nasName online } other } }"


@pytest.mark.asyncio
async def test_session_trend_over_graphql_samples_on_its_timer(
    daemon_factory: Callable[..., Any], dictionary: Dictionary
) -> None:
    daemon: Daemon = await daemon_factory(api={"trend_interval": 1.0})
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    for i in range(3):
        start = acct_packet(
            dictionary,
            User_Name=str(4000 + i),
            Acct_Status_Type="Start",
            Acct_Session_Id=f"trend-{i}",
            NAS_IP_Address="192.0.2.1",
        )
        assert await send_pyrad(udp_port(daemon), start, dictionary=dictionary) is not None

    reply = await graphql(port, TREND, ADMIN_TOKEN)
    trend = reply.json()["data"]["sessionTrend"]
    assert trend["interval"] == 1.0
    # the sample of the moment sees the Starts at once
    assert trend["online"][-1] == 3 and sum(trend["opened"]) == 3
    assert trend["byNas"] == [{"nasName": "nas-local", "online": trend["online"]}]
    assert abs(trend["times"][-1] - time.time()) < 5

    # the timer keeps samples: two more seconds, two more
    first = len(trend["times"])
    deadline = time.monotonic() + 10
    while len(trend["times"]) < first + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        trend = (await graphql(port, TREND, ADMIN_TOKEN)).json()["data"]["sessionTrend"]
    assert len(trend["times"]) >= first + 2
    assert trend["times"] == sorted(trend["times"])
    assert trend["online"][-3:] == [3, 3, 3] and sum(trend["opened"]) == 3
    assert trend["other"] == [0] * len(trend["times"])

    # per-NAS counts of every reseller: not for a reseller
    refused = await graphql(port, TREND, RESELLER_TOKEN)
    assert refused.codes == ["FORBIDDEN"]
    assert refused.json()["data"] is None

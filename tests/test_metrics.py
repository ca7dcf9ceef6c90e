"""GET /metrics: parses with prometheus-client's own parser, and its counters move as real
packets arrive; no user or session appears in any label."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from radtrack.daemon import Daemon
from tests.conftest import ADMIN_TOKEN, acct_packet, send_pyrad, send_raw, udp_port
from tests.httpclient import graphql, http


async def scrape(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert daemon.http_address is not None
    reply = await http(daemon.http_address[1], "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.asyncio
async def test_metrics_parse_and_move_with_packets(daemon: Daemon, dictionary: Any) -> None:
    before = await scrape(daemon)
    assert before[("radtrack_packets_acknowledged_total", ())] == 0
    assert before[("radtrack_sessions_online", ())] == 0
    start = acct_packet(
        dictionary,
        User_Name="31337",
        Acct_Status_Type="Start",
        Acct_Session_Id="metrics-1",
        NAS_IP_Address="192.0.2.1",
    )
    assert await send_pyrad(udp_port(daemon), start, dictionary=dictionary) is not None
    assert await send_raw(udp_port(daemon), b"\x04\x00\x00") is None  # malformed
    await graphql(daemon.http_address[1], "{ onlineSessionCount(userId: 1) }", None)
    await graphql(daemon.http_address[1], "{ onlineSessionCount(userId: 1) }", ADMIN_TOKEN)
    after = await scrape(daemon)
    assert after[("radtrack_packets_received_total", ())] == 2
    assert after[("radtrack_packets_acknowledged_total", ())] == 1
    assert after[("radtrack_packets_dropped_total", (("reason", "malformed"),))] == 1
    assert after[("radtrack_sessions_online", ())] == 1
    assert after[("radtrack_sessions_online_by_nas", (("nas", "nas-local"),))] == 1
    assert after[("radtrack_ack_latency_seconds_count", ())] == 1
    assert after[("radtrack_commits_total", ())] >= 1
    assert after[("radtrack_commit_seconds_count", ())] >= 1
    assert after[("radtrack_database_healthy", ())] == 1
    # the Start sits in the journal until the next fold (every 5 s); after one it is folded
    assert (
        after[("radtrack_journal_pending_rows", ())]
        + after[("radtrack_journal_folded_rows_total", ())]
        == 1
    )
    await daemon.store.sync()
    folded = await scrape(daemon)
    assert folded[("radtrack_journal_pending_rows", ())] == 0
    assert folded[("radtrack_journal_folded_rows_total", ())] == 1
    assert folded[("radtrack_journal_folds_total", ())] >= 1
    assert after[("radtrack_replies_send_failed_total", ())] == 0
    assert after[("radtrack_api_requests_total", ())] == 2
    assert after[("radtrack_api_errors_total", (("code", "UNAUTHENTICATED"),))] == 1
    labels = {value for (_, pairs) in after for _, value in pairs}
    assert not labels & {"31337", "metrics-1"}

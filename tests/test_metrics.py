"""GET /metrics: parses with prometheus-client's own parser, and its counters move as real
packets arrive; no user or session appears in any label; api.metrics_token_sha256 puts it
behind a bearer token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from radtrack import config
from radtrack.api.settings import token_digest
from radtrack.daemon import Daemon
from radtrack.errors import ConfigError
from tests.conftest import ADMIN_TOKEN, SECRET, acct_packet, send_pyrad, send_raw, udp_port
from tests.httpclient import Reply, graphql, http


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
    assert after[("radtrack_sessions_started_total", ())] == 1
    assert after[("radtrack_sessions_ended_total", ())] == 0
    stop = acct_packet(
        dictionary,
        User_Name="31337",
        Acct_Status_Type="Stop",
        Acct_Session_Id="metrics-1",
        NAS_IP_Address="192.0.2.1",
    )
    assert await send_pyrad(udp_port(daemon), stop, dictionary=dictionary) is not None
    assert await send_pyrad(udp_port(daemon), stop, dictionary=dictionary) is not None
    stopped = await scrape(daemon)
    assert stopped[("radtrack_sessions_started_total", ())] == 1
    assert stopped[("radtrack_sessions_ended_total", ())] == 1  # the repeated Stop: no change
    assert stopped[("radtrack_sessions_online", ())] == 0


METRICS_TOKEN = "prometheus-scrape-token-0123456789"


def metrics_config(tmp_path: Path, token: str) -> Path:
    """A config file (so that SIGHUP's reload can re-read it) with /metrics behind ``token``."""
    path = tmp_path / "radtrack.toml"
    path.write_text(
        '[radius]\nlisten = ["127.0.0.1:0"]\n'
        f'[[radius.clients]]\nname = "nas-local"\naddress = "127.0.0.1"\nsecret = "{SECRET}"\n'
        f'[store]\npath = "{tmp_path / "radtrack.db"}"\n'
        '[api]\nlisten = "127.0.0.1:0"\n'
        f'metrics_token_sha256 = "{token_digest(token).hex()}"\n'
        f'[[api.tokens]]\nname = "admin"\nsha256 = "{token_digest(ADMIN_TOKEN).hex()}"\n'
        'scopes = ["admin"]\n'
    )
    return path


async def get_metrics(daemon: Daemon, token: str | None) -> Reply:
    assert daemon.http_address is not None
    headers = [] if token is None else [("Authorization", f"Bearer {token}")]
    return await http(daemon.http_address[1], "GET", "/metrics", headers=headers)


@pytest.mark.asyncio
async def test_metrics_token_guards_metrics_and_reloads(
    tmp_path: Path, daemon_factory: Callable[..., Any]
) -> None:
    path = metrics_config(tmp_path, METRICS_TOKEN)
    daemon: Daemon = await daemon_factory(config.load(path))
    refused = await get_metrics(daemon, None)
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.codes == ["UNAUTHENTICATED"]
    assert b"radtrack_" not in refused.body
    for wrong in (METRICS_TOKEN + "x", METRICS_TOKEN[:-1], ADMIN_TOKEN, ""):
        assert (await get_metrics(daemon, wrong)).status == 401, wrong
    basic = [("Authorization", f"Basic {METRICS_TOKEN}")]
    assert daemon.http_address is not None
    assert (await http(daemon.http_address[1], "GET", "/metrics", headers=basic)).status == 401
    allowed = await get_metrics(daemon, METRICS_TOKEN)
    assert allowed.status == 200
    names = {f.name for f in text_string_to_metric_families(allowed.body.decode())}
    assert "radtrack_sessions_online_by_nas" in names
    # the API's own tokens are not affected, and /healthz stays open
    assert (await get_metrics(daemon, None)).status == 401
    assert (await http(daemon.http_address[1], "GET", "/healthz")).status == 200

    # SIGHUP: a rotated token applies at once, the old one stops working
    metrics_config(tmp_path, "rotated-scrape-token-0123456789")
    assert daemon.reload()
    assert (await get_metrics(daemon, METRICS_TOKEN)).status == 401
    assert (await get_metrics(daemon, "rotated-scrape-token-0123456789")).status == 200


def test_an_open_metrics_endpoint_off_loopback_is_a_warning() -> None:
    def warnings(api: dict[str, Any]) -> list[str]:
        settings = config.parse({"api": api})
        return [w for w in settings.warnings() if w.startswith("api.metrics_token_sha256")]

    assert warnings({"listen": "127.0.0.1:8080"}) == []
    assert warnings({"listen": "[::1]:8080"}) == []
    [warning] = warnings({"listen": "0.0.0.0:8080"})
    assert "open to anyone who reaches 0.0.0.0:8080" in warning
    assert warnings({"listen": "0.0.0.0:8080", "metrics_token_sha256": "ab" * 32}) == []
    with pytest.raises(ConfigError) as bad:
        config.parse({"api": {"metrics_token_sha256": METRICS_TOKEN}})  # the token, not its hash
    assert bad.value.path == "api.metrics_token_sha256"
    assert "SHA-256" in str(bad.value)

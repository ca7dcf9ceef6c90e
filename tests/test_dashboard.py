"""The dashboard: its headers over plain HTTP, then the page in a real browser (Debian's headless
Chromium driven by Playwright) against the real daemon, while real RADIUS packets arrive.

The browser test is skipped only when Playwright or /usr/bin/chromium is missing; .ci/run
installs both. ``DASHBOARD_SCREENSHOT=docs/dashboard.png`` makes it write the screenshot there
(docs/dashboard.png is made that way), otherwise it goes to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from tests.conftest import ADMIN_TOKEN, SECRET, acct_packet, udp_port
from tests.httpclient import http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# two NAS clients, so that the per-NAS table has two rows
CLIENTS = [
    {"name": "nas-local", "address": "127.0.0.1", "secret": SECRET},
    {"name": "nas-edge", "address": "127.0.0.2", "secret": SECRET},
]


@pytest.mark.asyncio
async def test_pages_and_their_headers(daemon: Daemon) -> None:
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    home = await http(port, "GET", "/")
    assert home.status == 200
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert home.headers["x-content-type-options"] == "nosniff"
    csp = home.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "https:" not in csp
    assert home.headers["x-frame-options"] == "DENY"
    assert b'<script src="/dashboard.js"' in home.body
    assert b"<script>" not in home.body and b"style=" not in home.body  # nothing inline
    assert b"http://" not in home.body and b"https://" not in home.body  # no CDN
    assert (await http(port, "GET", "/dashboard")).body == home.body
    script = await http(port, "GET", "/dashboard.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert b"graphql-transport-ws" in script.body and b"innerHTML" not in script.body
    assert b"localStorage" not in script.body  # the token stays in sessionStorage
    style = await http(port, "GET", "/dashboard.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert (await http(port, "POST", "/", b"{}")).status == 405
    assert (await http(port, "GET", "/dashboard.html")).status == 404


async def send_from(source: str, port: int, packet: Any) -> None:
    """One Accounting-Request from ``source`` (a NAS address), and its verified response."""

    def run() -> None:
        raw = packet.RequestPacket()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(2.0)
            sock.sendto(raw, ("127.0.0.1", port))
            data = sock.recv(4096)
        assert packet.VerifyReply(packet.CreateReply(packet=data), data)

    await asyncio.to_thread(run)


@pytest.mark.asyncio
async def test_dashboard_in_a_browser(
    daemon_factory: Callable[..., Any], dictionary: Dictionary, tmp_path: Path
) -> None:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="Playwright is not installed (pip install -e '.[test]')"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    daemon: Daemon = await daemon_factory(radius={"clients": CLIENTS})
    assert daemon.http_address is not None
    radius = udp_port(daemon)

    async def accounting(source: str, status: str, user: int, session: str, **extra: Any) -> None:
        packet = acct_packet(
            dictionary,
            User_Name=str(user),
            Acct_Status_Type=status,
            Acct_Session_Id=session,
            NAS_IP_Address="192.0.2.1" if source == "127.0.0.1" else "192.0.2.2",
            **extra,
        )
        await send_from(source, radius, packet)

    # some sessions online before the page opens
    await accounting("127.0.0.2", "Start", 501, "edge-501", Framed_IP_Address="10.8.0.5")
    await accounting("127.0.0.1", "Start", 502, "local-502", Framed_IP_Address="10.9.0.7")

    expect = playwright.expect
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=20_000
        )
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 560})
            problems: list[str] = []  # CSP violations and script errors end up here
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.set_default_timeout(10_000)

            await page.goto(f"http://127.0.0.1:{daemon.http_address[1]}/")
            await expect(page.locator("#status")).to_have_text("no token")
            await page.fill("#token", ADMIN_TOKEN)
            await page.click("#connect")
            await expect(page.locator("#status")).to_have_text("live")
            stored = "[sessionStorage.getItem('radtrack.token'), localStorage.length]"
            assert await page.evaluate(stored) == [ADMIN_TOKEN, 0]
            await expect(page.locator("#online")).to_have_text("2")
            await expect(page.locator("#nas tr")).to_have_text(["nas-edge1", "nas-local1"])

            await page.fill("#user-id", "777")
            await page.click("#search")
            await expect(page.locator("#user-note")).to_have_text("user 777: 0 session(s) online")

            await accounting("127.0.0.1", "Start", 777, "dash-777", Framed_IP_Address="10.9.0.42")
            rows = page.locator("#sessions tr")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_contain_text("dash-777")
            await expect(rows.first).to_contain_text("10.9.0.42")
            feed = page.locator("#feed li")
            await expect(feed.first).to_contain_text("STARTED")
            await expect(feed.first).to_contain_text("user 777  dash-777 on nas-local")
            await expect(page.locator("#online")).to_have_text("3")

            await accounting(
                "127.0.0.1", "Interim-Update", 777, "dash-777", Acct_Input_Octets=1_250_000
            )
            await expect(feed.first).to_contain_text("UPDATED")
            await expect(rows.first).to_contain_text("1.3 MB / 0 B")
            screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
            await page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000

            await accounting(
                "127.0.0.1", "Stop", 777, "dash-777", Acct_Terminate_Cause="User-Request"
            )
            await expect(rows).to_have_count(0)
            await expect(page.locator("#user-note")).to_have_text("user 777: 0 session(s) online")
            await expect(feed.first).to_contain_text("STOPPED")
            await expect(feed.first).to_contain_text("(stop)")
            await expect(feed).to_have_count(3)
            await expect(page.locator("#online")).to_have_text("2")
            assert problems == []
        finally:
            await browser.close()

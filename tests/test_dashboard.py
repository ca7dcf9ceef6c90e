"""The dashboard: its headers over plain HTTP, then the page in a real browser (Debian's headless
Chromium driven by Playwright) against the real daemon, while real RADIUS packets arrive.

The browser test is skipped only when Playwright or /usr/bin/chromium is missing; .ci/run
installs both. ``DASHBOARD_SCREENSHOT=docs/dashboard.png`` makes it write the screenshot there
(docs/dashboard.png is made that way), otherwise it goes to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack import config
from radtrack.api.settings import EXAMPLE_TOKENS, token_digest
from radtrack.daemon import Daemon
from tests.conftest import ADMIN_TOKEN, SECRET, acct_packet, example_config, udp_port
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
    # the token field has no name: even a form sent without the script carries no token
    token_field = re.search(rb"<input id=\"token\"[^>]*>", home.body)
    assert token_field is not None and b"name=" not in token_field.group(0)
    assert b"http://" not in home.body and b"https://" not in home.body  # no CDN
    assert (await http(port, "GET", "/dashboard")).body == home.body
    script = await http(port, "GET", "/dashboard.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert b"graphql-transport-ws" in script.body and b"innerHTML" not in script.body
    assert b"localStorage" not in script.body  # the token stays in sessionStorage
    for url_part in (b"location.search", b"location.hash", b"URLSearchParams", b"?token"):
        assert url_part not in script.body  # nor does it go into a URL
    style = await http(port, "GET", "/dashboard.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert (await http(port, "POST", "/", b"{}")).status == 405
    assert (await http(port, "GET", "/dashboard.html")).status == 404


HINT_SLOT = b'<p id="example-hint" class="hint" hidden></p>'


def hint_of(page: bytes) -> str | None:
    """The token the page's example hint shows, None without a hint."""
    found = re.search(rb'<p id="example-hint" class="hint">.*?<code>([^<]*)</code>', page)
    return found.group(1).decode() if found else None


@pytest.mark.asyncio
async def test_the_example_token_hint_appears_only_while_an_example_token_is_configured(
    daemon_factory: Callable[..., Any], tmp_path: Path
) -> None:
    own = await daemon_factory()  # the tests' own tokens, none of them an example
    assert own.http_address is not None
    page = (await http(own.http_address[1], "GET", "/")).body
    assert HINT_SLOT in page and hint_of(page) is None and b"change-me" not in page

    # the example config as it ships: its admin token, on both pages
    path = example_config(tmp_path / "example")
    example: Daemon = await daemon_factory(config.load(path))
    assert example.http_address is not None
    port = example.http_address[1]
    for url in ("/", "/dashboard"):
        reply = await http(port, "GET", url)
        assert hint_of(reply.body) == "example-admin-token-change-me"
        assert HINT_SLOT not in reply.body
        assert int(reply.headers["content-length"]) == len(reply.body)
    assert b"change-me" not in (await http(port, "GET", "/dashboard.js")).body

    # an own admin token beside the example reseller: the hint names the reseller's; a reload
    # that replaces the example tokens takes the hint away
    text = path.read_text()
    own_admin = hashlib.sha256(b"an-admin-token-of-our-own").hexdigest()
    admin_line = f'sha256 = "{token_digest(EXAMPLE_TOKENS[0]).hex()}"'
    reseller_line = f'sha256 = "{token_digest(EXAMPLE_TOKENS[1]).hex()}"'
    assert admin_line in text and reseller_line in text
    path.write_text(text.replace(admin_line, f'sha256 = "{own_admin}"'))
    assert example.reload()
    page = (await http(port, "GET", "/")).body
    assert hint_of(page) == "example-reseller-token-change-me"
    assert b"an-admin-token" not in page and own_admin.encode() not in page
    own_reseller = hashlib.sha256(b"a-reseller-token-of-our-own").hexdigest()
    path.write_text(path.read_text().replace(reseller_line, f'sha256 = "{own_reseller}"'))
    assert example.reload()
    page = (await http(port, "GET", "/")).body
    assert HINT_SLOT in page and hint_of(page) is None and b"change-me" not in page


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


@contextlib.asynccontextmanager
async def browser_page(playwright: Any) -> AsyncIterator[tuple[Any, list[str], list[str]]]:
    """A page in headless Chromium; with the script errors and CSP violations it reports, and
    the URL of every request and WebSocket it opens."""
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=20_000
        )
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 560})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            urls: list[str] = []
            page.on("request", lambda request: urls.append(request.url))
            page.on("websocket", lambda ws: urls.append(ws.url))
            page.set_default_timeout(10_000)
            yield page, problems, urls
        finally:
            await browser.close()


def needs_a_browser() -> Any:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="Playwright is not installed (pip install -e '.[test]')"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return playwright


@pytest.mark.asyncio
async def test_a_first_user_connects_with_the_token_the_example_hint_shows(
    daemon_factory: Callable[..., Any], tmp_path: Path
) -> None:
    playwright = needs_a_browser()
    daemon: Daemon = await daemon_factory(config.load(example_config(tmp_path / "example")))
    assert daemon.http_address is not None
    expect = playwright.expect
    async with browser_page(playwright) as (page, problems, urls):
        await page.goto(f"http://127.0.0.1:{daemon.http_address[1]}/")
        hint = page.locator("#example-hint")
        await expect(hint).to_be_visible()
        await expect(hint).to_contain_text("example config")
        token = await hint.locator("code").first.text_content()
        assert token == "example-admin-token-change-me"
        await page.fill("#token", token)  # what the hint says to type
        await page.click("#connect")
        await expect(page.locator("#status")).to_have_text("live")
        await expect(page.locator("#online")).to_have_text("0")
        assert token not in page.url
        assert urls and not [url for url in urls if token in url], urls
        assert any(url.startswith("ws://") for url in urls)  # the live feed's socket, too
        assert problems == []


@pytest.mark.asyncio
async def test_dashboard_in_a_browser(
    daemon_factory: Callable[..., Any], dictionary: Dictionary, tmp_path: Path
) -> None:
    playwright = needs_a_browser()
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
    async with browser_page(playwright) as (page, problems, urls):
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

        await accounting("127.0.0.1", "Stop", 777, "dash-777", Acct_Terminate_Cause="User-Request")
        await expect(rows).to_have_count(0)
        await expect(page.locator("#user-note")).to_have_text("user 777: 0 session(s) online")
        await expect(feed.first).to_contain_text("STOPPED")
        await expect(feed.first).to_contain_text("(stop)")
        await expect(feed).to_have_count(3)
        await expect(page.locator("#online")).to_have_text("2")
        assert problems == []
        assert urls and not [url for url in urls if ADMIN_TOKEN in url]

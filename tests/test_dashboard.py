"""The dashboard: its headers and the vendored plot library over plain HTTP, then the page in a
real browser (Debian's headless Chromium driven by Playwright) against the real daemon, while
real RADIUS packets arrive: the plots drawn from the daemon's samples, a user's sessions against
its device limit, the filter by session id or IP, a disconnect confirmed in the page and
answered by a NAS simulator (tests/nas.py: an ACK, a NAK), and a reseller that sees its own
users only.

The browser tests are skipped only when Playwright or /usr/bin/chromium is missing; .ci/run
installs both. ``DASHBOARD_SCREENSHOT=docs/dashboard.png`` makes test_dashboard_in_a_browser
write its screenshot there (docs/dashboard.png is made that way), otherwise it goes to the
test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.dictionary import Dictionary

from radtrack import config
from radtrack.api import dashboard
from radtrack.api.settings import EXAMPLE_TOKENS, token_digest
from radtrack.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    RESELLER_TOKEN,
    SECRET,
    acct_packet,
    example_config,
    udp_port,
)
from tests.httpclient import graphql, http
from tests.nas import Nas

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
# two NAS clients, so that the per-NAS table has two rows; each answers Disconnect-Requests
# as a NAS simulator on loopback (tests/nas.py): nas-local with an ACK, nas-edge with a NAK
CLIENTS = [
    {"name": "nas-local", "address": "127.0.0.1", "secret": SECRET, "coa_address": "127.0.0.1"},
    {"name": "nas-edge", "address": "127.0.0.2", "secret": SECRET, "coa_address": "127.0.0.1"},
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
    plots = await http(port, "GET", "/dashboard-plots.js")
    assert plots.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"new uPlot(" in plots.body and b"innerHTML" not in plots.body
    for own in (home, script, style, plots):  # ours change with an upgrade: never cached
        assert own.headers["cache-control"] == "no-store"
    assert (await http(port, "POST", "/", b"{}")).status == 405
    assert (await http(port, "GET", "/dashboard.html")).status == 404


@pytest.mark.asyncio
async def test_the_vendored_plot_library_is_served_from_here_with_its_license(
    daemon: Daemon,
) -> None:
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    home = (await http(port, "GET", "/")).body
    vendor = Path(dashboard.STATIC, "vendor", "uplot")
    prefix = f"/vendor/uplot-{dashboard.UPLOT_VERSION}"
    for name, content_type in (
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
    ):
        assert f'"{prefix}/{name}"'.encode() in home  # the page loads it from this origin
        reply = await http(port, "GET", f"{prefix}/{name}")
        assert reply.status == 200
        assert reply.headers["content-type"] == content_type
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in reply.headers["content-security-policy"]
        # the version is in the URL, so the file may be kept for good
        assert reply.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert reply.body == (vendor / name).read_bytes()
    library = (vendor / "uPlot.iife.min.js").read_bytes()
    assert library.startswith(
        f"/*! https://github.com/leeoniya/uPlot (v{dashboard.UPLOT_VERSION})".encode()
    )
    assert "MIT License" in (vendor / "LICENSE").read_text()
    readme = (vendor / "README.md").read_text()
    assert f"| version | {dashboard.UPLOT_VERSION} |" in readme
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):  # the checksums it records
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"`{digest}  {name}`" in readme
    assert (await http(port, "GET", "/vendor/uplot/uPlot.iife.min.js")).status == 404


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


@dataclass
class Site:
    """A daemon with the two NAS clients above, their NAS simulators, and a way to send each
    one's accounting (from its own source address)."""

    daemon: Daemon
    dictionary: Dictionary
    nases: dict[str, Nas]

    @property
    def port(self) -> int:
        assert self.daemon.http_address is not None
        return self.daemon.http_address[1]

    async def accounting(
        self, source: str, status: str, user: int, session: str, **extra: Any
    ) -> None:
        packet = acct_packet(
            self.dictionary,
            User_Name=str(user),
            Acct_Status_Type=status,
            Acct_Session_Id=session,
            NAS_IP_Address="192.0.2.1" if source == "127.0.0.1" else "192.0.2.2",
            **extra,
        )
        await send_from(source, udp_port(self.daemon), packet)

    async def upsert_users(self, *users: dict[str, Any]) -> None:
        reply = await graphql(self.port, UPSERT, ADMIN_TOKEN, users=list(users))
        assert reply.json() == {"data": {"upsertUsers": {"upserted": len(users)}}}


UPSERT = "mutation U($users: [UserInput!]!) { upsertUsers(users: $users) { upserted } }"


@pytest_asyncio.fixture
async def site(daemon_factory: Callable[..., Any], dictionary: Dictionary) -> AsyncIterator[Site]:
    loop = asyncio.get_running_loop()
    transports = []
    nases: dict[str, Nas] = {}
    clients = []
    for client, mode in zip(CLIENTS, ("ack", "nak"), strict=True):
        transport, nas = await loop.create_datagram_endpoint(
            lambda mode=mode: Nas(dictionary, mode), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        nases[client["name"]] = nas
        clients.append({**client, "coa_port": transport.get_extra_info("sockname")[1]})
    daemon = await daemon_factory(
        radius={"clients": clients, "disconnect_timeout": 0.3, "disconnect_attempts": 2},
        api={"trend_interval": 1.0},
    )
    yield Site(daemon, dictionary, nases)
    for transport in transports:
        transport.close()


async def connect(page: Any, expect: Any, port: int, token: str) -> None:
    await page.goto(f"http://127.0.0.1:{port}/")
    await expect(page.locator("#status")).to_have_text("no token")
    await page.fill("#token", token)
    await page.click("#connect")
    await expect(page.locator("#status")).to_have_text("live")


def row_of(page: Any, session_id: str) -> Any:
    """The row of the user's sessions table that shows ``session_id``."""
    cell = page.locator("td:first-child", has_text=re.compile(f"^{re.escape(session_id)}$"))
    return page.locator("#sessions tr", has=cell)


# Pixels of the canvas drawn in a color (the plot's total line), whatever their antialiasing
COLORED_PIXELS = """([selector, r, g, b]) => {
  const canvas = document.querySelector(selector);
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const close = Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b);
    if (data[i + 3] > 128 && close < 40) count++;
  }
  return count;
}"""
TOTAL_RGB = (0x1D, 0x24, 0x30)  # dashboard-plots.js TOTAL_COLOR


@pytest.mark.asyncio
async def test_dashboard_in_a_browser(site: Site, tmp_path: Path) -> None:
    playwright = needs_a_browser()
    # some sessions online before the page opens; user 777 may have 2 devices
    await site.accounting("127.0.0.2", "Start", 501, "edge-501", Framed_IP_Address="10.8.0.5")
    await site.accounting("127.0.0.1", "Start", 502, "local-502", Framed_IP_Address="10.9.0.7")
    await site.upsert_users({"userId": 777, "maxSessions": 2})

    expect = playwright.expect
    async with browser_page(playwright) as (page, problems, urls):
        await connect(page, expect, site.port, ADMIN_TOKEN)
        stored = "[sessionStorage.getItem('radtrack.token'), localStorage.length]"
        assert await page.evaluate(stored) == [ADMIN_TOKEN, 0]
        await expect(page.locator("#online")).to_have_text("2")
        await expect(page.locator("#nas tr")).to_have_text(["nas-edge1", "nas-local1"])
        # the plots: drawn at once from the hour kept so far (plus a sample of the moment)
        online_plot = page.locator("#plot-online")
        await expect(online_plot.locator("canvas")).to_have_count(1)
        await expect(online_plot.locator(".summary")).to_have_text("2 now")
        await expect(page.locator("#plot-churn .summary")).to_have_text(
            "2 Starts, 0 Stops this hour"
        )
        await expect(page.locator("#scope-note")).to_be_hidden()

        await page.fill("#user-id", "777")
        await page.click("#search")
        await expect(page.locator("#user-note")).to_have_text("user 777: 0 of 2 devices online")

        await site.accounting("127.0.0.1", "Start", 777, "dash-777", Framed_IP_Address="10.9.0.42")
        await site.accounting("127.0.0.1", "Start", 777, "dash-777b", Framed_IP_Address="10.9.1.3")
        await site.accounting("127.0.0.2", "Start", 777, "dash-777c", Framed_IP_Address="10.8.0.9")
        rows = page.locator("#sessions tr")
        await expect(rows).to_have_count(3)
        await expect(row_of(page, "dash-777")).to_contain_text("10.9.0.42")
        await expect(page.locator("#user-note")).to_have_text(
            "user 777: 3 of 2 devices online: over the limit"
        )
        feed = page.locator("#feed li")
        await expect(feed.first).to_contain_text("STARTED")
        await expect(feed.first).to_contain_text("user 777  dash-777c on nas-edge")
        await expect(page.locator("#online")).to_have_text("5")
        await expect(online_plot.locator(".summary")).to_have_text("5 now")
        await expect(page.locator("#plot-churn .summary")).to_have_text(
            "5 Starts, 0 Stops this hour"
        )
        # samples every second (api.trend_interval): the line has points, and is drawn
        await expect(online_plot).to_have_attribute("data-points", re.compile(r"^([4-9]|\d\d+)$"))
        drawn = await page.evaluate(COLORED_PIXELS, ["#plot-online canvas", *TOTAL_RGB])
        assert drawn > 200, drawn

        # the search: by framed IP or session id, over what the page holds
        await page.fill("#filter", "10.9.1")
        await expect(rows).to_have_count(2)  # the one that matches, and a line saying so
        await expect(rows.first).to_contain_text("dash-777b")
        await expect(rows.last).to_have_text("1 of 3 match the filter")
        await expect(page.locator("#feed li:visible")).to_contain_text("dash-777b")
        await expect(page.locator("#feed li:visible")).to_have_count(1)
        await page.fill("#filter", "777C")
        await expect(rows.first).to_contain_text("dash-777c")
        await page.fill("#filter", "")
        await expect(rows).to_have_count(3)
        await expect(page.locator("#feed li:visible")).to_have_count(3)

        await site.accounting(
            "127.0.0.1", "Interim-Update", 777, "dash-777", Acct_Input_Octets=1_250_000
        )
        await expect(feed.first).to_contain_text("UPDATED")
        await expect(row_of(page, "dash-777")).to_contain_text("1.3 MB / 0 B")

        # disconnect: a confirmation first; Cancel sends nothing
        local_nas, edge_nas = site.nases["nas-local"], site.nases["nas-edge"]
        first = row_of(page, "dash-777b")
        await first.locator("button.disconnect").click()
        await expect(first).to_contain_text("End this session?")
        await first.locator("button.cancel").click()
        await expect(first.locator("button.disconnect")).to_be_visible()
        assert local_nas.requests == []
        # ... then the NAS's answer is shown: an ACK (the session waits for its Stop) ...
        await first.locator("button.disconnect").click()
        await first.locator("button.confirm").click()
        result = page.locator("#disconnect-note")
        await expect(result).to_have_text(
            "dash-777b on nas-local: ACK: the NAS ended the session (Disconnect-ACK), 1 attempt"
        )
        await expect(first).to_contain_text("disconnecting: waiting for the NAS's Stop")
        assert local_nas.session_ids() == ["dash-777b"]
        screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
        await page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        await site.accounting(
            "127.0.0.1", "Stop", 777, "dash-777b", Acct_Terminate_Cause="Admin-Reset"
        )
        await expect(rows).to_have_count(2)
        # ... or a NAK with its Error-Cause
        edge = row_of(page, "dash-777c")
        await edge.locator("button.disconnect").click()
        await edge.locator("button.confirm").click()
        await expect(result).to_have_text(
            "dash-777c on nas-edge: NAK: the NAS refused (Disconnect-NAK, "
            "Session-Context-Not-Found), 1 attempt"
        )
        await expect(result).to_have_class(re.compile(r"\bbad\b"))
        assert edge_nas.session_ids() == ["dash-777c"]
        await expect(edge.locator("button.disconnect")).to_be_visible()  # still online

        await site.accounting(
            "127.0.0.1", "Stop", 777, "dash-777", Acct_Terminate_Cause="User-Request"
        )
        await expect(rows).to_have_count(1)
        await expect(page.locator("#user-note")).to_have_text("user 777: 1 of 2 devices online")
        await expect(feed.first).to_contain_text("STOPPED")
        await expect(feed.first).to_contain_text("(stop)")
        await expect(page.locator("#online")).to_have_text("3")
        await expect(page.locator("#plot-churn .summary")).to_have_text(
            "5 Starts, 2 Stops this hour"
        )
        assert problems == []
        assert urls and not [url for url in urls if ADMIN_TOKEN in url]
        assert all(
            url.startswith(f"http://127.0.0.1:{site.port}/")
            or url.startswith(f"ws://127.0.0.1:{site.port}/")
            for url in urls
        ), urls


@pytest.mark.asyncio
async def test_a_reseller_sees_only_its_own_users(site: Site) -> None:
    playwright = needs_a_browser()
    await site.upsert_users({"userId": 901, "resellerId": 1}, {"userId": 902, "resellerId": 2})
    await site.accounting("127.0.0.1", "Start", 901, "mine-901", Framed_IP_Address="10.1.0.1")
    await site.accounting("127.0.0.2", "Start", 902, "theirs-902", Framed_IP_Address="10.2.0.2")

    expect = playwright.expect
    async with browser_page(playwright) as (page, problems, _):
        await connect(page, expect, site.port, RESELLER_TOKEN)
        # no totals and no plots: they count every reseller's sessions
        await expect(page.locator("#scope-note")).to_be_visible()
        await expect(page.locator("#scope-note")).to_contain_text("for admin tokens")
        await expect(page.locator("#totals")).to_be_hidden()
        await expect(page.locator("#plots")).to_be_hidden()
        await expect(page.locator("#plot-online canvas")).to_have_count(0)
        await expect(page.locator("#feed-note")).to_contain_text("the feed follows the user")

        await page.fill("#user-id", "902")
        await page.click("#search")
        await expect(page.locator("#user-note")).to_have_text("This token may not see that user")
        await expect(page.locator("#sessions tr")).to_have_count(0)

        await page.fill("#user-id", "901")
        await page.click("#search")
        await expect(page.locator("#user-note")).to_have_text(
            "user 901: 1 device(s) online, no limit"
        )
        rows = page.locator("#sessions tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("mine-901")

        # events of both users: the page shows its own user's only
        await site.accounting("127.0.0.2", "Interim-Update", 902, "theirs-902")
        await site.accounting("127.0.0.1", "Interim-Update", 901, "mine-901", Acct_Input_Octets=5)
        feed = page.locator("#feed li")
        await expect(feed).to_have_count(1)
        await expect(feed.first).to_contain_text("user 901  mine-901 on nas-local")
        await site.accounting("127.0.0.2", "Stop", 902, "theirs-902")
        await site.accounting("127.0.0.1", "Stop", 901, "mine-901")
        await expect(feed).to_have_count(2)
        await expect(feed.first).to_contain_text("STOPPED")
        await expect(rows).to_have_count(0)
        content = await page.content()
        for theirs in ("theirs-902", "10.2.0.2", "nas-edge"):
            assert theirs not in content
        assert problems == []

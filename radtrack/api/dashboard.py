"""The dashboard (issues #8, #17): a page served by radtrack itself, ``stats`` and
``sessionTrend``.

GET / (or /dashboard) serves static/dashboard.html, which loads dashboard.js, dashboard-plots.js
and dashboard.css from this origin, and the plotting library vendored in static/vendor/uplot/
(its README says what, from where and why): no CDN, no build step. The page asks for an API
token and keeps it in the browser's sessionStorage only; it reads with POST /graphql (stats,
sessionTrend, getOnlineSessions, deviceLimit), ends sessions with disconnectSession after a
confirmation, and follows the live feed over the WebSocket at /graphql (graphql-transport-ws,
in dashboard.js). Its search by session id or framed IP filters what the page holds (the
searched user's sessions, the feed): the server has no index by either, and a scan of every
session per keystroke is not what a dashboard should cost.

While one of the public example tokens of config.example.toml is configured, the page says so
and shows it (what a first user types); the page never carries any other token, and the script
never puts a token in a URL (requests carry it in the Authorization header, the WebSocket in its
connection_init message).

The Content-Security-Policy allows scripts, styles and connections to this origin only (no inline
script or style at all), and nothing may frame the page.

``stats`` and ``sessionTrend`` (the plots: radtrack/trend.py) count every online session, per
NAS, so they are for admin tokens only: a reseller gets FORBIDDEN (its own totals would need a
scan of the users table per request, and the per-NAS series would show other resellers'
activity on a shared NAS). The page then shows the reseller no totals and no plots: its
searched users, their sessions, device counts and live events only.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ariadne import QueryType
from graphql import GraphQLResolveInfo

from radtrack.api.access import require_admin
from radtrack.trend import series

STATIC = Path(__file__).with_name("static")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Beside the Cache-Control and X-Content-Type-Options every response of the app carries
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Our own files may change with any upgrade: never cached. The vendored plotting library
# (static/vendor/uplot/README.md) has its version in its URL, so a browser may keep it.
NO_STORE = b"no-store"
IMMUTABLE = b"public, max-age=31536000, immutable"
UPLOT_VERSION = "1.6.32"
UPLOT = f"/vendor/uplot-{UPLOT_VERSION}"
# path -> (file under static/, Content-Type, Cache-Control)
ROUTES = {
    "/": ("dashboard.html", b"text/html; charset=utf-8", NO_STORE),
    "/dashboard": ("dashboard.html", b"text/html; charset=utf-8", NO_STORE),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8", NO_STORE),
    "/dashboard-plots.js": ("dashboard-plots.js", b"text/javascript; charset=utf-8", NO_STORE),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8", NO_STORE),
    f"{UPLOT}/uPlot.iife.min.js": (
        "vendor/uplot/uPlot.iife.min.js",
        b"text/javascript; charset=utf-8",
        IMMUTABLE,
    ),
    f"{UPLOT}/uPlot.min.css": ("vendor/uplot/uPlot.min.css", b"text/css; charset=utf-8", IMMUTABLE),
}


# The page's place for the example token hint, filled in while an example token is configured
HINT_SLOT = b'<p id="example-hint" class="hint" hidden></p>'
HINT = (
    '<p id="example-hint" class="hint">This server runs with the example config: connect with '
    "the token <code>{token}</code>. It is public: replace the [[api.tokens]] before real use "
    "(<code>radtrack token create</code>).</p>"
)

Page = tuple[tuple[tuple[bytes, bytes], ...], bytes]


class StaticFiles:
    """The dashboard's files, read once at start-up: path -> (headers, body); the headers
    carry their Cache-Control."""

    def __init__(self, directory: Path = STATIC) -> None:
        self.files: dict[str, Page] = {}
        for path, (name, content_type, cache) in ROUTES.items():
            body = (directory / name).read_bytes()
            headers = ((b"content-type", content_type), (b"cache-control", cache))
            self.files[path] = ((*headers, *SECURITY_HEADERS), body)
        assert all(HINT_SLOT in self.files[path][1] for path in ("/", "/dashboard"))

    def get(self, path: str, example_token: str | None = None) -> Page | None:
        """The file at ``path``; the page with the hint when ``example_token`` (one of the
        public EXAMPLE_TOKENS, never another) is configured."""
        found = self.files.get(path)
        if found is None or example_token is None or path not in ("/", "/dashboard"):
            return found
        headers, body = found
        hint = HINT.format(token=html.escape(example_token)).encode()
        return headers, body.replace(HINT_SLOT, hint)


query = QueryType()


@query.field("stats")
def resolve_stats(_: None, info: GraphQLResolveInfo) -> dict[str, Any]:
    index = require_admin(info, "stats needs an admin token").backend.index
    by_nas = sorted(index.per_nas.items(), key=lambda item: (-item[1], item[0]))
    return {
        "online": len(index),
        "by_nas": [{"nas_name": name, "online": count} for name, count in by_nas],
    }


@query.field("sessionTrend")
def resolve_session_trend(_: None, info: GraphQLResolveInfo) -> dict[str, Any]:
    # per-NAS counts of every reseller's sessions: admin only, like stats
    trend = require_admin(info, "sessionTrend needs an admin token").backend.trend
    return series(trend.read(), trend.interval)


bindables = (query,)

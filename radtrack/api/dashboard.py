"""The dashboard (issue #8): a small page served by radtrack itself, and the ``stats`` query.

GET / (or /dashboard) serves static/dashboard.html, which loads dashboard.js and dashboard.css
from this origin: no CDN, no build step. The page asks for an API token and keeps it in the
browser's sessionStorage only; it reads with POST /graphql (stats, getOnlineSessions) and follows
the live feed over the WebSocket at /graphql (graphql-transport-ws, in dashboard.js).

The Content-Security-Policy allows scripts, styles and connections to this origin only (no inline
script or style at all), and nothing may frame the page.

``stats`` counts every online session, so it is for admin tokens only: a reseller gets FORBIDDEN
(its own totals would need a scan of the users table per request; the page then shows the
reseller its searched users and their live events only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ariadne import QueryType
from graphql import GraphQLResolveInfo

from radtrack.api.access import require_admin

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
# path -> (file under static/, Content-Type)
ROUTES = {
    "/": ("dashboard.html", b"text/html; charset=utf-8"),
    "/dashboard": ("dashboard.html", b"text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}


class StaticFiles:
    """The dashboard's files, read once at start-up: path -> (headers, body)."""

    def __init__(self, directory: Path = STATIC) -> None:
        self.files: dict[str, tuple[tuple[tuple[bytes, bytes], ...], bytes]] = {}
        for path, (name, content_type) in ROUTES.items():
            body = (directory / name).read_bytes()
            self.files[path] = (((b"content-type", content_type), *SECURITY_HEADERS), body)

    def get(self, path: str) -> tuple[tuple[tuple[bytes, bytes], ...], bytes] | None:
        return self.files.get(path)


query = QueryType()


@query.field("stats")
def resolve_stats(_: None, info: GraphQLResolveInfo) -> dict[str, Any]:
    index = require_admin(info, "stats needs an admin token").backend.index
    by_nas = sorted(index.per_nas.items(), key=lambda item: (-item[1], item[0]))
    return {
        "online": len(index),
        "by_nas": [{"nas_name": name, "online": count} for name, count in by_nas],
    }


bindables = (query,)

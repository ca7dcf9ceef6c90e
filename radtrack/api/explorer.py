"""A small query page served at GET /graphql when api.explorer is on.

ariadne's explorers (GraphiQL, Playground, Apollo Sandbox) load their code from a CDN, which a
NAS-side host often cannot reach and which we do not want to trust, so radtrack serves this page
instead: one self-contained HTML file, no external resource, locked down by a Content-Security-
Policy that allows only its own inline script (by hash) and requests to this origin.
"""

from __future__ import annotations

import base64
import hashlib

_SCRIPT = """
const $ = (id) => document.getElementById(id);
$("run").addEventListener("click", async () => {
  const out = $("out");
  let variables = null;
  try {
    variables = $("variables").value.trim() ? JSON.parse($("variables").value) : null;
  } catch (e) {
    out.textContent = "variables: " + e;
    return;
  }
  const headers = {"Content-Type": "application/json"};
  if ($("token").value) headers["Authorization"] = "Bearer " + $("token").value;
  try {
    const response = await fetch(location.pathname, {
      method: "POST", headers, body: JSON.stringify({query: $("query").value, variables}),
    });
    const text = await response.text();
    try {
      out.textContent = response.status + "\\n" + JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      out.textContent = response.status + "\\n" + text;
    }
  } catch (e) {
    out.textContent = String(e);
  }
});
"""

_QUERY = """query getOnlineSessions($userId: Int!) {
  getOnlineSessions(userId: $userId) {
    id sessionId nasIpAddress nasPortId nasPortType startTime
    connectInfoStart callingStationId framedIpAddress
  }
}"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>radtrack GraphQL</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
textarea, input {{ width: 100%; font-family: monospace; box-sizing: border-box; }}
pre {{ background: #f4f4f4; padding: 1em; overflow: auto; }}
</style>
</head>
<body>
<h1>radtrack GraphQL</h1>
<label>Bearer token <input id="token" type="password" autocomplete="off"></label>
<label>Query <textarea id="query" rows="10">{_QUERY}</textarea></label>
<label>Variables (JSON) <textarea id="variables" rows="3">{{"userId": 1}}</textarea></label>
<p><button id="run">Run</button></p>
<pre id="out"></pre>
<script>{_SCRIPT}</script>
</body>
</html>
""".encode()

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (
        b"content-security-policy",
        (
            f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; "
            "style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ).encode(),
    ),
    (b"referrer-policy", b"no-referrer"),
]  # app.py adds content-length, cache-control: no-store and x-content-type-options

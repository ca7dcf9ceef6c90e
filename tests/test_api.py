"""The GraphQL API through the real embedded uvicorn server, on 127.0.0.1 and a free port.

Sessions are built by hand into a real SessionIndex; the backend is an in-memory fake. The
end-to-end path from RADIUS packets to the API is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from graphql import get_introspection_query

from radtrack.api.app import GraphQLApp, create_app
from radtrack.api.server import EmbeddedServer, bind_tcp
from radtrack.api.settings import ApiSettings, TokenSettings, token_digest
from radtrack.errors import StoreError
from radtrack.model import Session, User
from radtrack.store.index import SessionIndex, UserDirectory
from tests.httpclient import Reply, http, parse_reply

ADMIN = "admin-token-0123456789abcdef"
RESELLER_1 = "reseller-one-token-0123456789"
RESELLER_2 = "reseller-two-token-0123456789"
TOKENS = (
    TokenSettings("ops", token_digest(ADMIN), ("admin",)),
    TokenSettings("r1", token_digest(RESELLER_1), ("reseller",), 1),
    TokenSettings("r2", token_digest(RESELLER_2), ("reseller",), 2),
)

CONTRACT_QUERY = """query getOnlineSessions($userId: Int!) {
  getOnlineSessions(userId: $userId) { id sessionId nasIpAddress nasPortId nasPortType startTime connectInfoStart callingStationId framedIpAddress }
}"""  # noqa: E501 (the query of the contract, verbatim)
CONTRACT_FIELDS = [
    "id",
    "sessionId",
    "nasIpAddress",
    "nasPortId",
    "nasPortType",
    "startTime",
    "connectInfoStart",
    "callingStationId",
    "framedIpAddress",
]
T0 = 1705314600.9  # 2024-01-15T10:30:00.9Z


# -- the fake backend and the running server ---------------------------------------------------
class FakeBackend:
    """In-memory Backend: the real index and directory, a list for the durable writes."""

    def __init__(self) -> None:
        self.index = SessionIndex()
        self.users = UserDirectory()
        self.ready = {"udp": True, "database": True}
        self.stored: list[list[User]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def upsert_users(self, users: list[User]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StoreError("disk I/O error at /var/lib/radtrack/radtrack.db")
        self.stored.append(users)
        for user in users:
            self.users.upsert(user)

    def readiness(self) -> dict[str, bool]:
        return dict(self.ready)


class ExplodingIndex(SessionIndex):
    def for_user(self, user_id: int) -> list[Session]:
        raise RuntimeError("secret internals: password=hunter2")


def make_session(sid: str, user_id: int | None, start: float, **extra: Any) -> Session:
    return Session(
        f"id-{sid}",
        "nas-a|10.0.0.1",
        "nas-a",
        "10.0.0.1",
        sid,
        start,
        start + 60,
        user_id=user_id,
        **extra,
    )


def populated() -> FakeBackend:
    backend = FakeBackend()
    backend.users.upsert(User(10, "alice", reseller_id=1))
    backend.users.upsert(User(11, "bob", reseller_id=1))
    backend.users.upsert(User(20, "carol", reseller_id=2))
    full = make_session(
        "S1",
        10,
        T0,
        user_name="alice",
        nas_port_id="vpn-0",
        nas_port_type="Virtual",
        connect_info_start="10GBASE-T",
        calling_station_id="203.0.113.5",
        framed_ip="100.64.0.10",
        input_octets=5 * 2**40,
        output_octets=3,
        input_packets=2**32 - 1,
        session_time=60,
    )
    backend.index.add_online(make_session("S2", 10, T0 + 3600))  # later: listed second
    backend.index.add_online(full)
    backend.index.add_online(make_session("S3", 20, T0))
    backend.index.add_online(make_session("S4", 30, T0))  # user 30 belongs to no reseller
    return backend


@dataclass
class Api:
    port: int
    backend: FakeBackend
    app: GraphQLApp


@contextlib.asynccontextmanager
async def running(
    backend: FakeBackend | None = None, http_ready: Any = None, **overrides: Any
) -> AsyncIterator[Api]:
    backend = backend if backend is not None else populated()
    app = create_app(backend, ApiSettings(tokens=TOKENS, **overrides), http_ready=http_ready)
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = EmbeddedServer(app)
    await server.start(sock)
    try:
        yield Api(port, backend, app)
    finally:
        await server.stop(2.0)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as running_api:
        yield running_api


async def post(
    port: int,
    payload: Any,
    token: str | None = ADMIN,
    content_type: str = "application/json",
) -> Reply:
    headers = [("Content-Type", content_type)]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await http(port, "POST", "/graphql", body, headers)


async def gql(port: int, query: str, token: str | None = ADMIN, **variables: Any) -> Reply:
    return await post(port, {"query": query, "variables": variables or None}, token)


def sessions_query(user_id: int) -> dict[str, Any]:
    return {"query": CONTRACT_QUERY, "variables": {"userId": user_id}}


# -- the contract ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_contract_query_returns_exactly_the_fields_and_formats(api: Api) -> None:
    reply = await post(api.port, sessions_query(10))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    data = reply.json()
    assert list(data) == ["data"]
    sessions = data["data"]["getOnlineSessions"]
    assert [list(s) for s in sessions] == [CONTRACT_FIELDS, CONTRACT_FIELDS]
    assert sessions == [
        {
            "id": "id-S1",
            "sessionId": "S1",
            "nasIpAddress": "10.0.0.1",
            "nasPortId": "vpn-0",
            "nasPortType": "Virtual",
            "startTime": "2024-01-15T10:30:00Z",
            "connectInfoStart": "10GBASE-T",
            "callingStationId": "203.0.113.5",
            "framedIpAddress": "100.64.0.10",
        },
        {
            "id": "id-S2",
            "sessionId": "S2",
            "nasIpAddress": "10.0.0.1",
            "nasPortId": None,
            "nasPortType": None,
            "startTime": "2024-01-15T11:30:00Z",
            "connectInfoStart": None,
            "callingStationId": None,
            "framedIpAddress": None,
        },
    ]


@pytest.mark.asyncio
async def test_user_without_sessions_gets_an_empty_list(api: Api) -> None:
    reply = await post(api.port, sessions_query(12345))
    assert reply.status == 200
    assert reply.json() == {"data": {"getOnlineSessions": []}}


@pytest.mark.asyncio
async def test_a_closed_session_disappears_from_the_next_answer(api: Api) -> None:
    first = (await post(api.port, sessions_query(10))).json()["data"]["getOnlineSessions"]
    assert [s["sessionId"] for s in first] == ["S1", "S2"]
    session = api.backend.index.get("id-S1")
    assert session is not None
    session.stop_time = T0 + 100
    api.backend.index.close(session)
    second = (await post(api.port, sessions_query(10))).json()["data"]["getOnlineSessions"]
    assert [s["sessionId"] for s in second] == ["S2"]


@pytest.mark.asyncio
async def test_extra_fields_and_the_long_scalar(api: Api) -> None:
    query = """query q($u: Int!) {
      onlineSessionCount(userId: $u)
      getOnlineSessions(userId: $u) {
        nasName userName userId lastUpdate inputOctets outputOctets inputPackets outputPackets
        sessionTime disconnecting
      }
    }"""
    reply = await post(api.port, {"query": query, "variables": {"u": 10}})
    assert reply.status == 200
    assert b'"inputOctets":5497558138880' in reply.body  # a JSON number, not a string
    data = reply.json()["data"]
    assert data["onlineSessionCount"] == 2
    assert data["getOnlineSessions"][0] == {
        "nasName": "nas-a",
        "userName": "alice",
        "userId": 10,
        "lastUpdate": "2024-01-15T10:31:00Z",
        "inputOctets": 5 * 2**40,
        "outputOctets": 3,
        "inputPackets": 2**32 - 1,
        "outputPackets": 0,
        "sessionTime": 60,
        "disconnecting": False,
    }


# -- authentication and scopes -----------------------------------------------------------------
@pytest.mark.asyncio
async def test_missing_or_unknown_token_is_unauthenticated(api: Api) -> None:
    for token in (None, "not-a-configured-token", ""):
        reply = await post(api.port, sessions_query(10), token=token)
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.codes == ["UNAUTHENTICATED"]
        assert "data" not in reply.json()
    headers = [("Content-Type", "application/json"), ("Authorization", f"Basic {ADMIN}")]
    reply = await http(
        api.port, "POST", "/graphql", json.dumps(sessions_query(10)).encode(), headers
    )
    assert reply.status == 401
    assert reply.codes == ["UNAUTHENTICATED"]


@pytest.mark.asyncio
async def test_reseller_sees_only_its_own_users(api: Api) -> None:
    own = await post(api.port, sessions_query(10), token=RESELLER_1)
    assert [s["sessionId"] for s in own.json()["data"]["getOnlineSessions"]] == ["S1", "S2"]
    for user_id in (20, 30, 99):  # another reseller's, an unowned one, an unknown one
        reply = await post(api.port, sessions_query(user_id), token=RESELLER_1)
        assert reply.status == 200
        body = reply.json()
        assert body["data"] == {"getOnlineSessions": None}
        assert reply.codes == ["FORBIDDEN"]
        assert body["errors"][0]["path"] == ["getOnlineSessions"]
        assert "S3" not in reply.body.decode()
    other = await post(api.port, sessions_query(20), token=RESELLER_2)
    assert [s["sessionId"] for s in other.json()["data"]["getOnlineSessions"]] == ["S3"]
    count = await gql(api.port, "{ onlineSessionCount(userId: 10) }", token=RESELLER_2)
    assert count.json()["data"] is None
    assert count.codes == ["FORBIDDEN"]


@pytest.mark.asyncio
async def test_admin_sees_every_user(api: Api) -> None:
    for user_id, expected in ((10, ["S1", "S2"]), (20, ["S3"]), (30, ["S4"])):
        reply = await post(api.port, sessions_query(user_id))
        assert [s["sessionId"] for s in reply.json()["data"]["getOnlineSessions"]] == expected


# -- error codes -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_bad_arguments_are_bad_user_input(api: Api) -> None:
    negative = await post(api.port, sessions_query(-1))
    assert negative.status == 200
    assert negative.json()["data"] == {"getOnlineSessions": None}
    assert negative.codes == ["BAD_USER_INPUT"]
    for variables in ({"userId": "ten"}, {"userId": 2**31}, {}, {"userId": None}):
        reply = await post(api.port, {"query": CONTRACT_QUERY, "variables": variables})
        assert reply.status == 400
        assert reply.codes == ["BAD_USER_INPUT"]
        assert "data" not in reply.json()
    unknown_operation = await post(api.port, {**sessions_query(1), "operationName": "nope"})
    assert unknown_operation.codes == ["BAD_USER_INPUT"]


@pytest.mark.asyncio
async def test_syntax_and_validation_errors(api: Api) -> None:
    syntax = await gql(api.port, "{ getOnlineSessions(userId: 1) { id ")
    assert syntax.status == 400
    assert syntax.codes == ["GRAPHQL_PARSE_FAILED"]
    assert "GraphQL request" not in syntax.json()["errors"][0]["message"]  # no source excerpt
    for query in (
        "{ getOnlineSessions(userId: 1) { password } }",
        '{ getOnlineSessions(userId: "1") { id } }',
        "{ getOnlineSessions(userId: 1) }",
        "subscription { x }",
    ):
        reply = await gql(api.port, query)
        assert reply.status == 400
        assert set(reply.codes) == {"GRAPHQL_VALIDATION_FAILED"}, query


@pytest.mark.asyncio
async def test_refusals_before_graphql_are_json_with_codes(api: Api) -> None:
    body = json.dumps(sessions_query(10)).encode()
    auth = ("Authorization", f"Bearer {ADMIN}")
    cases = [
        (await post(api.port, [sessions_query(10)] * 2), 400, "BAD_REQUEST"),  # a batch
        (await post(api.port, b"{not json"), 400, "BAD_REQUEST"),
        (await post(api.port, b'"just a string"'), 400, "BAD_REQUEST"),
        (await post(api.port, {"variables": {}}), 400, "BAD_REQUEST"),
        (await post(api.port, {"query": "{ x }", "variables": [1]}), 400, "BAD_REQUEST"),
        (
            await post(api.port, body, content_type="multipart/form-data; boundary=x"),
            415,
            "BAD_REQUEST",
        ),
        (await post(api.port, body, content_type="text/plain"), 415, "BAD_REQUEST"),
        (
            await post(api.port, body, content_type="application/json; charset=latin-1"),
            415,
            "BAD_REQUEST",
        ),
        (await http(api.port, "POST", "/graphql", body, [auth]), 415, "BAD_REQUEST"),
        (
            await http(api.port, "GET", "/graphql?query=%7B__typename%7D", headers=[auth]),
            405,
            "BAD_REQUEST",
        ),
        (await http(api.port, "PUT", "/graphql", body, [auth]), 405, "BAD_REQUEST"),
        (await http(api.port, "GET", "/nowhere"), 404, "NOT_FOUND"),
    ]
    for reply, status, code in cases:
        assert (reply.status, reply.codes) == (status, [code])
        assert reply.headers["content-type"] == "application/json"
    charset = await post(
        api.port, sessions_query(10), content_type="application/json; charset=UTF-8"
    )
    assert charset.status == 200


@pytest.mark.asyncio
async def test_store_failure_is_service_unavailable(api: Api) -> None:
    api.backend.fail = True
    reply = await gql(api.port, "mutation { upsertUsers(users: [{userId: 5}]) { upserted } }")
    assert reply.status == 200
    assert reply.json()["data"] is None
    assert reply.codes == ["SERVICE_UNAVAILABLE"]
    assert "radtrack.db" not in reply.body.decode()


# -- hardening ---------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_depth_limit(api: Api) -> None:
    deep = "{ " + "a { " * 20 + "b" + " }" * 21
    reply = await gql(api.port, deep)
    assert reply.status == 400
    assert reply.codes == ["QUERY_TOO_DEEP"]
    message = reply.json()["errors"][0]["message"]
    assert "depth 21 exceeds the limit of 8 (api.max_depth)" in message
    # too deep even to parse (Python's recursion limit): the same refusal, not a crash
    abysmal = await gql(api.port, "{" + "a{" * 600 + "b" + "}" * 601)
    assert abysmal.codes == ["QUERY_TOO_DEEP"]
    assert "api.max_depth" in abysmal.json()["errors"][0]["message"]


def fragment_chain(length: int) -> str:
    """``{ ...F0 }`` where F0 spreads F1, ... and the last one asks for a field."""
    chain = [f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(length - 1)]
    return "\n".join(
        ["{ ...F0 }", *chain, f"fragment F{length - 1} on Query {{ stats {{ online }} }}"]
    )


@pytest.mark.asyncio
async def test_a_long_fragment_chain_is_too_deep_and_says_which_limit(api: Api) -> None:
    """Fragments nested within fragments count against api.max_depth (8 here): a 200-deep chain
    is refused before validation, naming the limit, not with graphql-core's "Validation
    aborted." of a walk cut short."""
    chain = fragment_chain(200)
    assert len(chain) < 65_536  # under max_body_bytes and max_tokens: the depth refuses it
    reply = await gql(api.port, chain)
    assert reply.status == 400
    assert reply.codes == ["QUERY_TOO_DEEP"]
    [error] = reply.json()["errors"]
    assert error["message"] == (
        "Query nests fragments 200 deep, over the limit of 8 (api.max_depth)."
    )
    assert "aborted" not in reply.body.decode()
    assert (await gql(api.port, fragment_chain(8))).json() == {"data": {"stats": {"online": 4}}}
    assert (await gql(api.port, fragment_chain(9))).codes == ["QUERY_TOO_DEEP"]
    # an unused chain is walked by validation too: refused the same way, once
    unused = fragment_chain(200).replace("{ ...F0 }", "{ stats { online } }", 1)
    reply = await gql(api.port, unused)
    assert reply.codes == ["QUERY_TOO_DEEP"]
    assert "Fragment F0 nests fragments 200 deep" in reply.json()["errors"][0]["message"]


@pytest.mark.asyncio
async def test_alias_flood_is_refused_quickly() -> None:
    flood = "{" + " ".join(f"a{i}: __typename" for i in range(5000)) + "}"
    async with running(max_body_bytes=10**6) as api:  # refused by the parser's token limit
        reply = await gql(api.port, flood)
        assert reply.status == 400
        assert reply.codes == ["GRAPHQL_PARSE_FAILED"]
        assert "more than 2000 tokens" in reply.json()["errors"][0]["message"]
    roomy: dict[str, Any] = {"max_body_bytes": 10**6, "max_tokens": 10**6, "max_cost": 1000}
    async with running(**roomy) as roomy_api:  # then by the cost
        started = time.perf_counter()
        reply = await gql(roomy_api.port, flood)
        elapsed = time.perf_counter() - started
        assert reply.status == 400
        assert reply.codes == ["QUERY_TOO_COSTLY"]
        message = reply.json()["errors"][0]["message"]
        assert "Query cost 5000 exceeds the limit of 1000 (api.max_cost)" in message
        assert elapsed < 2.0


@pytest.mark.asyncio
async def test_cost_counts_aliases_and_expanded_fragments() -> None:
    async with running(max_cost=20, max_depth=16) as small:  # 13 fragments deep below
        aliases = "{" + " ".join(f"a{i}: __typename" for i in range(21)) + "}"
        assert "cost 21 exceeds the limit of 20" in (await gql(small.port, aliases)).body.decode()
        ok = "{" + " ".join(f"a{i}: __typename" for i in range(20)) + "}"
        assert (await gql(small.port, ok)).status == 200
        # each level spreads the next twice: 2**12 fields once expanded
        levels = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(12)]
        exploding = "{ ...F0 } " + " ".join(levels) + " fragment F12 on Query { __typename }"
        reply = await gql(small.port, exploding)
        assert reply.codes == ["QUERY_TOO_COSTLY"]
        assert "cost" in reply.json()["errors"][0]["message"]
        cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
        reply = await gql(small.port, cycle)
        assert reply.codes == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.mark.asyncio
async def test_body_limit_by_length_and_while_reading() -> None:
    async with running(max_body_bytes=1000) as api:
        headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {ADMIN}")]
        # Content-Length alone decides: the body is never sent, never read
        huge = await http(
            api.port,
            "POST",
            "/graphql",
            headers=[*headers, ("Content-Length", "10000000")],
            length=False,
        )
        assert huge.status == 413
        assert huge.codes == ["PAYLOAD_TOO_LARGE"]
        # chunked: no length up front, refused once the count passes the limit
        chunk = b"x" * 600
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
        reply = await http(
            api.port,
            "POST",
            "/graphql",
            chunked,
            [*headers, ("Transfer-Encoding", "chunked")],
            length=False,
        )
        assert reply.status == 413
        assert reply.codes == ["PAYLOAD_TOO_LARGE"]
        assert (await post(api.port, sessions_query(10))).status == 200  # still serving


@pytest.mark.asyncio
async def test_introspection_off_by_default_and_on_when_configured(api: Api) -> None:
    for query in ("{ __schema { types { name } } }", '{ __type(name: "Session") { name } }'):
        reply = await gql(api.port, query)
        assert reply.status == 400
        assert set(reply.codes) == {"GRAPHQL_VALIDATION_FAILED"}
    assert (await gql(api.port, "{ __typename }")).json() == {"data": {"__typename": "Query"}}
    async with running(introspection=True) as open_api:
        reply = await gql(open_api.port, "{ __schema { types { name } } }")
        names = {t["name"] for t in reply.json()["data"]["__schema"]["types"]}
        assert {"Session", "DateTime", "Long", "UserInput"} <= names
        full = await gql(open_api.port, get_introspection_query())  # what explorers send
        assert full.status == 200
        recursive = (
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
        )
        reply = await gql(open_api.port, recursive)
        assert reply.codes == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.mark.asyncio
async def test_explorer_is_offline_and_off_by_default(api: Api) -> None:
    html = [("Accept", "text/html")]
    assert (await http(api.port, "GET", "/graphql", headers=html)).status == 405
    async with running(explorer=True) as with_explorer:
        page = await http(with_explorer.port, "GET", "/graphql", headers=html)
        assert page.status == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert b"<script src" not in page.body
        assert b"http://" not in page.body and b"https://" not in page.body
        assert b"//cdn" not in page.body
        reply = await http(with_explorer.port, "GET", "/graphql?query=%7Bx%7D")
        assert reply.status == 405  # still no GET queries


# -- errors hide internals; only bugs are logged -----------------------------------------------
@pytest.mark.asyncio
async def test_internal_errors_are_generic_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    backend.index = ExplodingIndex()
    async with running(backend) as api:
        reply = await post(api.port, sessions_query(10))
    assert reply.status == 200
    body = reply.json()
    assert body["data"] == {"getOnlineSessions": None}
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 2, "column": 3}],
            "path": ["getOnlineSessions"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "hunter2" not in reply.body.decode() and "Traceback" not in reply.body.decode()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and "hunter2" in str(errors[0].exc_info[1])


@pytest.mark.asyncio
async def test_client_errors_log_nothing_at_warning_or_above(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post(api.port, sessions_query(10), token="wrong")
    await post(api.port, sessions_query(20), token=RESELLER_1)
    await post(api.port, sessions_query(-5))
    await post(api.port, {"query": CONTRACT_QUERY, "variables": {"userId": "x"}})
    await gql(api.port, "{ nope")
    await gql(api.port, "{ nope }")
    await post(api.port, [1, 2])
    await post(api.port, b"{}", content_type="multipart/form-data")
    await http(api.port, "GET", "/graphql")
    await gql(api.port, "mutation { upsertUsers(users: [{userId: 1}]) { upserted } }", RESELLER_1)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []
    assert ADMIN not in caplog.text and RESELLER_1 not in caplog.text and "wrong" not in caplog.text


# -- the document cache ------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_documents_are_parsed_and_validated_once(api: Api) -> None:
    cache = api.app.documents
    before = cache.misses
    for user_id in range(100):
        assert (await post(api.port, sessions_query(user_id % 7))).status == 200
    assert cache.misses == before + 1
    assert cache.hits >= 99
    for _ in range(10):  # refusals are cached as well
        assert (await gql(api.port, "{ nope }")).status == 400
    assert cache.misses == before + 2


@pytest.mark.asyncio
async def test_document_cache_is_bounded() -> None:
    async with running(document_cache=2) as api:
        cache = api.app.documents
        for i in range(5):
            await gql(api.port, f"{{ a{i}: __typename }}")
        assert len(cache) == 2
        await gql(api.port, "{ a4: __typename }")  # the most recent is still there
        assert cache.misses == 5
        await gql(api.port, "{ a0: __typename }")  # the oldest was evicted
        assert cache.misses == 6


# -- health --------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_healthz_and_readyz() -> None:
    http_up = True
    backend = populated()
    async with running(backend, http_ready=lambda: http_up) as api:
        health = await http(api.port, "GET", "/healthz")
        assert (health.status, health.json()) == (200, {"status": "ok"})
        ready = await http(api.port, "GET", "/readyz")
        assert (ready.status, ready.json()) == (200, {"udp": True, "database": True, "http": True})
        backend.ready["database"] = False
        ready = await http(api.port, "GET", "/readyz")
        assert (ready.status, ready.json()) == (503, {"udp": True, "database": False, "http": True})
        backend.ready["database"] = True
        http_up = False
        ready = await http(api.port, "GET", "/readyz")
        assert (ready.status, ready.json()["http"]) == (503, False)
        assert (await http(api.port, "POST", "/healthz", b"{}")).status == 405


# -- users ---------------------------------------------------------------------------------------
UPSERT = "mutation u($users: [UserInput!]!) { upsertUsers(users: $users) { upserted } }"


@pytest.mark.asyncio
async def test_upsert_users_is_admin_only(api: Api) -> None:
    users = [
        {"userId": 40, "username": "dave", "resellerId": 1, "maxSessions": 2},
        {"userId": 41},
    ]
    reply = await gql(api.port, UPSERT, users=users)
    assert reply.json() == {"data": {"upsertUsers": {"upserted": 2}}}
    assert api.backend.stored == [[User(40, "dave", 1, 2), User(41, None, None, None)]]
    # the directory changed, so reseller 1 now sees user 40
    assert (await post(api.port, sessions_query(40), token=RESELLER_1)).json()["data"] == {
        "getOnlineSessions": []
    }
    forbidden = await gql(api.port, UPSERT, token=RESELLER_1, users=[{"userId": 42}])
    assert forbidden.json()["data"] is None
    assert forbidden.codes == ["FORBIDDEN"]
    assert len(api.backend.stored) == 1
    for bad in ([{"userId": -1}], [{"userId": 1}, {"userId": 1}], [{"userId": 1, "username": ""}]):
        reply = await gql(api.port, UPSERT, users=bad)
        assert reply.codes == ["BAD_USER_INPUT"], bad
    assert len(api.backend.stored) == 1


@pytest.mark.asyncio
async def test_upsert_users_caps_the_list() -> None:
    async with running(max_body_bytes=10**6) as api:
        users = [{"userId": i} for i in range(10_001)]
        reply = await gql(api.port, UPSERT, users=users)
        assert reply.codes == ["BAD_USER_INPUT"]
        assert "10000" in reply.json()["errors"][0]["message"]
        assert api.backend.stored == []
        reply = await gql(api.port, UPSERT, users=users[:10_000])
        assert reply.json()["data"] == {"upsertUsers": {"upserted": 10_000}}


# -- the embedded server -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_busy_port_is_a_clear_oserror() -> None:
    first = bind_tcp("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(OSError) as caught:
            bind_tcp("127.0.0.1", port)
        assert caught.value.errno == errno.EADDRINUSE
        reason = os.strerror(errno.EADDRINUSE)
        assert str(caught.value) == f"[Errno {errno.EADDRINUSE}] {reason}: '127.0.0.1:{port}'"
    finally:
        first.close()


@pytest.mark.asyncio
async def test_ipv6_bind() -> None:
    try:
        sock = bind_tcp("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = EmbeddedServer(create_app(populated(), ApiSettings(tokens=TOKENS)))
    await server.start(sock)
    try:
        port = sock.getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert parse_reply(await reader.read()).status == 200
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop(1.0)


@pytest.mark.asyncio
async def test_stop_closes_idle_connections_and_is_idempotent() -> None:
    app = create_app(populated(), ApiSettings(tokens=TOKENS))
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = EmbeddedServer(app)
    await server.start(sock)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await server.stop(2.0)
    await server.stop(2.0)
    assert sock.fileno() == -1
    remainder = await asyncio.wait_for(reader.read(), 2.0)  # the server closed the connection
    assert b"ok" in remainder
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    never_started = EmbeddedServer(app)
    unused = bind_tcp("127.0.0.1", 0)
    never_started._sockets = [unused]  # as if start had failed after taking the socket
    await never_started.stop(1.0)
    assert unused.fileno() == -1


@pytest.mark.asyncio
async def test_stop_waits_for_a_running_request_then_cuts_a_stuck_one() -> None:
    backend = populated()
    backend.gate = asyncio.Event()
    app = create_app(backend, ApiSettings(tokens=TOKENS))
    server = EmbeddedServer(app)
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    await server.start(sock)
    slow = asyncio.create_task(gql(port, UPSERT, users=[{"userId": 1}]))
    while not server.server_state.tasks:
        await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_later(0.2, backend.gate.set)
    await server.stop(5.0)  # graceful: the request finishes and is answered
    assert (await slow).json() == {"data": {"upsertUsers": {"upserted": 1}}}

    backend.gate = asyncio.Event()  # never set: the request is stuck
    server = EmbeddedServer(app)
    sock = bind_tcp("127.0.0.1", 0)
    await server.start(sock)
    stuck = asyncio.create_task(gql(sock.getsockname()[1], UPSERT, users=[{"userId": 2}]))
    while not server.server_state.tasks:
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    await server.stop(0.3)
    assert time.perf_counter() - started < 2.0
    with contextlib.suppress(ConnectionError, ValueError):
        reply = await stuck
        assert reply.status == 500
    assert len(backend.stored) == 1

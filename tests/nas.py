"""A NAS that answers RFC 5176 Disconnect-Requests, on a real UDP socket (tests/test_control.py,
tests/test_readme.py); pyrad, which nobody here wrote, checks each request and builds the reply."""

from __future__ import annotations

import asyncio

from pyrad.dictionary import Dictionary
from pyrad.packet import CoAPacket, DisconnectNAK

from tests.conftest import SECRET


class Nas(asyncio.DatagramProtocol):
    """Answers Disconnect-Requests like a NAS would: ``mode`` is "ack", "nak" or "silent"."""

    def __init__(self, dictionary: Dictionary, mode: str, secret: str = SECRET) -> None:
        self.dictionary = dictionary
        self.mode = mode
        self.secret = secret.encode()
        self.requests: list[CoAPacket] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = CoAPacket(packet=data, dict=self.dictionary, secret=self.secret)
        assert request.VerifyCoARequest() and request.verify_message_authenticator()
        self.requests.append(request)
        if self.mode == "silent":
            return
        reply = request.CreateReply()
        if self.mode == "nak":
            reply.code = DisconnectNAK
            reply["Error-Cause"] = "Session-Context-Not-Found"
        assert self.transport is not None
        self.transport.sendto(reply.ReplyPacket(), addr)

    def session_ids(self) -> list[str]:
        return [r["Acct-Session-Id"][0] for r in self.requests]

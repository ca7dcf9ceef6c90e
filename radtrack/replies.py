"""Replies the commit thread hands to the event loop to write: for a transport whose streams
only the loop may write (RadSec's TLS connections, radsec.py). UDP's listener sends from the
commit thread itself (transport.UdpListener.send_many); a TLS stream is the loop's.

A reply's address is (peer host, stream number): the number picks the stream, and stands where
a UDP peer's port does in the service's dedup key.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from radtrack.transport import Address


class Stream(Protocol):
    def write(self, data: bytes) -> bool:
        """Write on the event loop; False when the stream is closing (nothing written)."""
        ...


class LoopReplies:
    """The Sender (service.Sender) of streams the event loop writes: ``send`` on the loop,
    ``send_many`` from the commit thread after its COMMIT, handed to the loop in one
    ``call_soon_threadsafe`` however many replies it brings. ``streams`` is the live table of
    open streams by number."""

    def __init__(self, streams: Mapping[int, Stream]) -> None:
        self.streams = streams
        self.send_errors = 0  # replies whose stream had gone (the client sends again)
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the transport starts
        self._outbox: list[tuple[bytes, Address]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def send(self, data: bytes, addr: Address) -> None:
        """On the event loop: a reply to the stream ``addr`` names."""
        stream = self.streams.get(addr[1])
        if stream is None or not stream.write(data):
            self.send_errors += 1

    def send_many(self, replies: Sequence[tuple[bytes, Address]]) -> None:
        """From the commit thread, after the COMMIT: the event loop writes them (``flush``)."""
        with self._lock:
            self._outbox += replies
            if self._scheduled:
                return
            self._scheduled = True
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(self.flush)
        except RuntimeError:  # the loop is closed: no stream is open any more
            with self._lock:
                self.send_errors += len(self._outbox)
                self._outbox.clear()
                self._scheduled = False

    def flush(self) -> None:
        """On the event loop: the replies handed over so far, one write for each stream's."""
        with self._lock:
            replies, self._outbox = self._outbox, []
            self._scheduled = False
        by_stream: dict[int, list[bytes]] = {}
        for data, addr in replies:
            by_stream.setdefault(addr[1], []).append(data)
        for number, datas in by_stream.items():
            stream = self.streams.get(number)
            if stream is None or not stream.write(b"".join(datas)):
                self.send_errors += len(datas)

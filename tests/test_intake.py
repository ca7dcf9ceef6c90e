"""UDP intake by recvmmsg(2) (fastpath/intake.py) against the plain rule, recvfrom: the same
datagrams from the same peers in the same order, the same bound on a wake-up's batch, and a
handler's crash on one datagram that leaves the others to be read."""

from __future__ import annotations

import socket

import pytest

from radtrack.fastpath import intake
from radtrack.transport import UdpListener
from tests.test_transport import FAMILIES

pytestmark = pytest.mark.skipif(not intake.AVAILABLE, reason="no recvmmsg(2) here")


Received = list[tuple[bytes, tuple[str, int]]]


def bound(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def reading(sock: socket.socket, multi: bool, batch: int = 256) -> tuple[UdpListener, Received]:
    got: Received = []
    listener = UdpListener(
        sock, lambda _l, data, addr: got.append((data, addr)), batch=batch, multi=multi
    )
    assert (listener._receiver is not None) is multi
    return listener, got


def send_mix(target: tuple[str, int], senders: list[socket.socket]) -> Received:
    """Datagrams of many sizes (empty, RADIUS-sized, past RADIUS's 4,096, near UDP's limit)
    from several peers, interleaved; what a reader should see, in order."""
    sent: Received = []
    sizes = [0, 1, 20, 38, 4096, 4097, 9000, 65000] + [20 + n % 300 for n in range(150)]
    for n, size in enumerate(sizes):
        peer = senders[n % len(senders)]
        data = bytes((n + k) % 256 for k in range(size))
        peer.sendto(data, target)
        sent.append((data, peer.getsockname()[:2]))
    return sent


@pytest.mark.parametrize(("family", "host"), FAMILIES, ids=lambda v: str(v))
def test_recvmmsg_reads_what_recvfrom_reads(family: int, host: str) -> None:
    results = []
    for multi in (True, False):
        sock = bound(family, host)
        senders = [bound(family, host) for _ in range(3)]
        try:
            listener, got = reading(sock, multi)
            sent = send_mix(sock.getsockname()[:2], senders)
            while len(got) < len(sent):
                before = len(got)
                listener._readable()
                assert len(got) > before, "a queued datagram was not read"
            listener._readable()  # drained: nothing more, no error
            assert got == sent
            results.append(got)
        finally:
            sock.close()
            for peer in senders:
                peer.close()
    # both readers saw the same sequence (with their own senders' ports)
    assert [data for data, _ in results[0]] == [data for data, _ in results[1]]


@pytest.mark.parametrize("multi", [True, False], ids=["recvmmsg", "recvfrom"])
def test_one_wake_up_reads_at_most_its_batch(multi: bool) -> None:
    sock = bound(socket.AF_INET, "127.0.0.1")
    peer = bound(socket.AF_INET, "127.0.0.1")
    try:
        listener, got = reading(sock, multi, batch=70)
        for n in range(100):
            peer.sendto(n.to_bytes(2), sock.getsockname())
        listener._readable()
        assert [int.from_bytes(d) for d, _ in got] == list(range(70))
        listener._readable()
        assert [int.from_bytes(d) for d, _ in got] == list(range(100))
    finally:
        sock.close()
        peer.close()


@pytest.mark.parametrize("multi", [True, False], ids=["recvmmsg", "recvfrom"])
def test_a_handler_that_fails_on_one_datagram_gets_the_others(multi: bool) -> None:
    sock = bound(socket.AF_INET, "127.0.0.1")
    peer = bound(socket.AF_INET, "127.0.0.1")
    got: list[bytes] = []

    def handler(_listener: UdpListener, data: bytes, _addr: tuple[str, int]) -> None:
        if data == b"poison":
            raise ValueError("a bug in the handler")
        got.append(data)

    try:
        listener = UdpListener(sock, handler, multi=multi)
        for data in (b"one", b"poison", b"two", b"three"):
            peer.sendto(data, sock.getsockname())
        listener._readable()
        assert got == [b"one", b"two", b"three"]
    finally:
        sock.close()
        peer.close()

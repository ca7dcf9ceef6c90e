"""UDP intake and replies (transport.py): a commit's replies leave in one sendmmsg call."""

from __future__ import annotations

import socket

import pytest

from radtrack import transport
from radtrack.transport import UdpListener


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [(socket.AF_INET, "127.0.0.1")]
if _ipv6():
    FAMILIES.append((socket.AF_INET6, "::1"))


def listener(family: int, host: str) -> UdpListener:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return UdpListener(sock, lambda *args: None)


def receivers(family: int, host: str, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, 0))
        sock.settimeout(2.0)
        out.append(sock)
    return out


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "sendto"])
@pytest.mark.parametrize(("family", "host"), FAMILIES, ids=lambda v: str(v))
def test_every_reply_reaches_its_peer_intact_and_in_order(
    family: int, host: str, batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not batched:
        monkeypatch.setattr(transport, "_sendmmsg", None)
    sender = listener(family, host)
    peers = receivers(family, host, 3)
    try:
        replies = [
            (bytes([n % 251]) * (20 + n % 97), peers[n % 3].getsockname()[:2]) for n in range(600)
        ]
        sender.send_many(replies)
        for k, peer in enumerate(peers):
            got = [peer.recv(4096) for _ in range(200)]
            assert got == [data for n, (data, _) in enumerate(replies) if n % 3 == k]
        assert sender.send_errors == 0
    finally:
        sender.close()
        for peer in peers:
            peer.close()


def test_a_reply_that_cannot_go_is_counted_and_the_rest_still_go() -> None:
    sender = listener(socket.AF_INET, "127.0.0.1")
    (peer,) = receivers(socket.AF_INET, "127.0.0.1", 1)
    try:
        good = peer.getsockname()[:2]
        replies = [(b"one", good), (b"lost", ("127.0.0.1", 0)), (b"two", good), (b"three", good)]
        sender.send_many(replies)  # port 0 is refused (EINVAL) by the kernel
        assert [peer.recv(100) for _ in range(3)] == [b"one", b"two", b"three"]
        assert sender.send_errors == 1
    finally:
        sender.close()
        peer.close()


def test_replies_after_close_are_counted_not_sent() -> None:
    sender = listener(socket.AF_INET, "127.0.0.1")
    (peer,) = receivers(socket.AF_INET, "127.0.0.1", 1)
    try:
        sender.close()
        sender.send_many([(b"late", peer.getsockname()[:2])] * 3)  # no error escapes
        assert sender.send_errors == 3
        peer.settimeout(0.2)
        with pytest.raises(TimeoutError):
            peer.recv(100)
    finally:
        peer.close()

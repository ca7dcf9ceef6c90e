"""The fast path of UDP intake: up to ``slots`` datagrams in one recvmmsg(2) call.

The plain rule is ``socket.recvfrom``, one datagram a call (radtrack/transport.py reads that way
where this is not available); tests/test_intake.py checks that both give the same datagrams and
addresses, in order. What it saves: recvfrom releases the GIL for every datagram, and under load
the commit thread takes it each time, so the loop waits for it again before each packet (py-spy
with --gil at 20,000 packets/s: the loop spent a fifth of its time in recvfrom without the GIL).
Here the call holds the GIL (ctypes.PyDLL; the call never blocks, MSG_DONTWAIT) and reads a whole
batch, so the GIL changes hands by the switch interval instead of by the datagram. The peer's
address is kept by its raw sockaddr, so a NAS's address string is made once, not per datagram.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

Address = tuple[str, int]

MSG_DONTWAIT = 0x40
# a UDP payload is at most 65,507 octets over IPv4 (65,527 over IPv6): a slot holds any
# datagram whole, so nothing is truncated and an oversized one is seen at its real length
SLOT_SIZE = 65536
SLOTS = 32

_recvmmsg = None
try:
    _recvmmsg = ctypes.PyDLL(None, use_errno=True).recvmmsg  # PyDLL: the GIL is kept
    _recvmmsg.argtypes = (
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    )
    _recvmmsg.restype = ctypes.c_int
except (OSError, AttributeError):
    _recvmmsg = None
# struct mmsghdr (LP64 Linux): msghdr {name, namelen, iov, iovlen, control, controllen, flags}
# and msg_len; then struct iovec {base, len} (as transport.py's sendmmsg)
_MMSGHDR = struct.Struct("@PI4xPNPNi4xI4x")
_IOVEC = struct.Struct("@PN")
AVAILABLE = (
    _recvmmsg is not None
    and ctypes.sizeof(ctypes.c_void_p) == 8
    and _MMSGHDR.size == 64
    and _IOVEC.size == 16
)
_SOCKADDR_SIZE = {socket.AF_INET: 16, socket.AF_INET6: 28}
# peers by raw sockaddr (family, port, address): a few NASes, so a small table
_PEERS_MAX = 4096


class BatchReceiver:
    """Reads a non-blocking UDP socket (AF_INET or AF_INET6) by recvmmsg(2)."""

    def __init__(self, sock: socket.socket, slots: int = SLOTS) -> None:
        if not AVAILABLE:
            raise OSError(errno.ENOSYS, "recvmmsg is not available")
        self.fd = sock.fileno()
        self.family = sock.family
        name_size = _SOCKADDR_SIZE[sock.family]
        self.slots = slots
        # one buffer: the headers, the iovecs, the addresses, then the data slots
        self._iovs_at = slots * 64
        self._names_at = self._iovs_at + slots * 16
        self._data_at = self._names_at + slots * name_size
        self._buffer = bytearray(self._data_at + slots * SLOT_SIZE)
        self._view = memoryview(self._buffer)
        self._anchor = ctypes.c_char.from_buffer(self._buffer)  # holds the buffer's address
        base = ctypes.addressof(self._anchor)
        self._base = base
        for i in range(slots):
            # msg_namelen is the socket's sockaddr size; the kernel writes back the same value
            # for every datagram of a socket of one family, so it is set once, here
            _MMSGHDR.pack_into(
                self._buffer,
                i * 64,
                base + self._names_at + i * name_size,
                name_size,
                base + self._iovs_at + i * 16,
                1,
                0,
                0,
                0,
                0,
            )
            _IOVEC.pack_into(
                self._buffer,
                self._iovs_at + i * 16,
                base + self._data_at + i * SLOT_SIZE,
                SLOT_SIZE,
            )
        self._name_size = name_size
        # every slot's msg_len in one unpack (the first ``count`` are read)
        self._lengths = struct.Struct("=" + "56xI4x" * slots).unpack_from
        self._peers: dict[bytes, Address] = {}

    def receive(self, limit: int) -> list[tuple[bytes, Address]]:
        """The datagrams waiting, up to ``limit`` and ``slots``, with their senders, in arrival
        order; [] when none is waiting. Raises OSError as recvfrom does (e.g. an ICMP error
        surfacing)."""
        assert _recvmmsg is not None
        limit = min(limit, self.slots)
        while True:
            count = _recvmmsg(self.fd, self._base, limit, MSG_DONTWAIT, None)
            if count >= 0:
                break
            error = ctypes.get_errno()
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            if error != errno.EINTR:
                raise OSError(error, os.strerror(error))
        lengths = self._lengths(self._buffer)
        view, peers, peer = self._view, self._peers, self._peer
        name_at, name_size = self._names_at, self._name_size
        data_at = self._data_at
        out = []
        for i in range(count):
            name = bytes(view[name_at : name_at + name_size])
            addr = peers.get(name) or peer(name)
            out.append((bytes(view[data_at : data_at + lengths[i]]), addr))
            name_at += name_size
            data_at += SLOT_SIZE
        return out

    def _peer(self, name: bytes) -> Address:
        """(host, port) as recvfrom gives them (IPv6: the first two of its four)."""
        (port,) = struct.unpack_from("!H", name, 2)
        if self.family == socket.AF_INET6:
            host = socket.inet_ntop(socket.AF_INET6, name[8:24])
            scope = struct.unpack_from("=I", name, 24)[0]
            if scope:  # a link-local peer: recvfrom names its interface too
                try:
                    host = f"{host}%{socket.if_indextoname(scope)}"
                except OSError:
                    host = f"{host}%{scope}"
        else:
            host = socket.inet_ntop(socket.AF_INET, name[4:8])
        if len(self._peers) >= _PEERS_MAX:
            self._peers.clear()
        addr = self._peers[name] = (host, port)
        return addr

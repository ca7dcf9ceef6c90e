"""UDP intake: non-blocking sockets drained in bounded batches per wake-up.

A default asyncio datagram transport reads one datagram per wake-up; under a saturated HTTP
server that dropped or delayed 30-55 % of accounting packets (issue #4). Reading up to ``batch``
datagrams each time the socket is readable keeps intake fair against the API.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence

from radtrack.endpoint import Endpoint
from radtrack.fastpath import intake

logger = logging.getLogger(__name__)

Address = tuple[str, int]
Handler = Callable[["UdpListener", bytes, Address], None]

# sendmmsg(2), called through ctypes (which releases the GIL for the call): a commit's replies
# leave in one system call. One sendto per reply releases and retakes the GIL each time, and
# with the event loop busy on the other core every retake waits for the loop's next system
# call. None where the C library has no sendmmsg (not Linux): one sendto per reply then.
_sendmmsg: Callable[[int, int, int, int], int] | None
try:
    _sendmmsg = ctypes.CDLL(None, use_errno=True).sendmmsg
    _sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    _sendmmsg.restype = ctypes.c_int
except (OSError, AttributeError):
    _sendmmsg = None
# struct mmsghdr (LP64 Linux): msghdr {name, namelen, iov, iovlen, control, controllen, flags}
# and msg_len; then struct iovec {base, len}
_MMSGHDR = struct.Struct("@PI4xPNPNi4xI4x")
_IOVEC = struct.Struct("@PN")
_MMSG_OK = ctypes.sizeof(ctypes.c_void_p) == 8 and _MMSGHDR.size == 64 and _IOVEC.size == 16
# sockaddr_in / sockaddr_in6 of each peer replied to: a few NASes, so a small table
_SOCKADDRS_MAX = 4096


def bind_udp(endpoint: Endpoint, receive_buffer: int) -> socket.socket:
    """A bound, non-blocking UDP socket. No SO_REUSEPORT: a second daemon on the same port is an
    error (EADDRINUSE), not a silent split of the traffic."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        except OSError:
            logger.warning("event=rcvbuf_refused requested=%d", receive_buffer)
        sock.bind((endpoint.host, endpoint.port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpListener:
    def __init__(
        self, sock: socket.socket, handler: Handler, *, batch: int = 256, multi: bool = True
    ) -> None:
        """``multi``: read by recvmmsg(2) where there is one (fastpath/intake.py), else (and
        with False) by recvfrom, one datagram a call."""
        self.sock = sock
        self.handler = handler
        self.batch = batch
        self._receiver = (
            intake.BatchReceiver(sock)
            if multi and intake.AVAILABLE and sock.family in (socket.AF_INET, socket.AF_INET6)
            else None
        )
        self.send_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        # the commit thread sends through the socket's descriptor: close() waits for it
        self._sending = threading.Lock()
        self._sockaddrs: dict[Address, bytes] = {}

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped because this socket's receive buffer was full (the
        ``drops`` column of /proc/net/udp{,6}): overload that never reached radtrack. Read at
        scrape time, so it costs the packet path nothing; 0 where /proc is not available."""
        try:
            inode = os.fstat(self.sock.fileno()).st_ino
        except OSError:
            return 0
        table = "/proc/net/udp6" if self.sock.family == socket.AF_INET6 else "/proc/net/udp"
        try:
            with open(table, encoding="ascii") as lines:
                next(lines)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[-1])
        except (OSError, ValueError, StopIteration):
            return 0
        return 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self._reading = True

    def pause(self) -> None:
        """Stop reading (shutdown: intake stops first); replies can still be sent."""
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False

    def _readable(self) -> None:
        if self._receiver is not None:
            self._readable_many(self._receiver)
            return
        recvfrom = self.sock.recvfrom
        handler = self.handler
        for _ in range(self.batch):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on the socket
                logger.debug("event=recv_error error=%s", exc)
                return
            try:
                handler(self, data, addr[:2])
            except Exception:
                logger.exception("event=handler_crashed peer=%s", addr[0])

    def _readable_many(self, receiver: intake.BatchReceiver) -> None:
        """_readable by recvmmsg: the same datagrams, up to ``batch`` of them, in calls of up
        to ``receiver.slots``."""
        handler = self.handler
        left = self.batch
        while left > 0:
            try:
                datagrams = receiver.receive(left)
            except OSError as exc:  # e.g. ICMP errors surfacing on the socket
                logger.debug("event=recv_error error=%s", exc)
                return
            for data, addr in datagrams:
                try:
                    handler(self, data, addr)
                except Exception:
                    logger.exception("event=handler_crashed peer=%s", addr[0])
            if len(datagrams) < min(left, receiver.slots):
                return  # the socket is drained
            left -= len(datagrams)

    def send(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # full send buffer: the NAS retransmits, the cache answers
            self.send_errors += 1
            logger.debug("event=send_failed peer=%s error=%s", addr[0], exc)

    def send_many(self, replies: Sequence[tuple[bytes, Address]]) -> None:
        """Send replies (any thread): one sendmmsg where there is one, else one sendto each."""
        with self._sending:
            fd = self.sock.fileno()
            if fd < 0:  # closed (shutdown): the NASes retransmit, the next run answers
                self.send_errors += len(replies)
                return
            if _sendmmsg is None or not _MMSG_OK or len(replies) < 2:
                for data, addr in replies:
                    self.send(data, addr)
                return
            self._sendmmsg(fd, replies)

    def _sockaddr(self, addr: Address) -> bytes | None:
        packed = self._sockaddrs.get(addr)
        if packed is None:
            host, port = addr
            try:
                if self.sock.family == socket.AF_INET6:
                    packed = (
                        struct.pack("=H", socket.AF_INET6)
                        + struct.pack("!HI", port, 0)  # port, flow info
                        + socket.inet_pton(socket.AF_INET6, host)
                        + struct.pack("=I", 0)  # scope id
                    )
                else:
                    packed = struct.pack("=H", socket.AF_INET) + struct.pack(
                        "!H4s8x", port, socket.inet_pton(socket.AF_INET, host)
                    )
            except (OSError, ValueError, struct.error):
                return None  # e.g. a scoped IPv6 address: sendto resolves it
            if len(self._sockaddrs) >= _SOCKADDRS_MAX:
                self._sockaddrs.clear()
            self._sockaddrs[addr] = packed
        return packed

    def _sendmmsg(self, fd: int, replies: Sequence[tuple[bytes, Address]]) -> None:
        """One buffer: the mmsghdr array, the iovec array, the addresses, the data."""
        names: list[bytes] = []
        datas: list[bytes] = []
        for data, addr in replies:
            name = self._sockaddr(addr)
            if name is None:
                self.send(data, addr)
                continue
            names.append(name)
            datas.append(data)
        count = len(names)
        if not count:
            return
        iovs_at = count * 64
        names_at = iovs_at + count * 16
        data_at = names_at + sum(map(len, names))
        buffer = bytearray(data_at + sum(map(len, datas)))
        buffer[names_at:data_at] = b"".join(names)
        buffer[data_at:] = b"".join(datas)
        # the buffer's address, through one c_char over its first octet (an array type of the
        # buffer's length would be a new type per length, which ctypes caches for good)
        view = ctypes.c_char.from_buffer(buffer)
        base = ctypes.addressof(view)
        header, iovec = _MMSGHDR.pack_into, _IOVEC.pack_into
        name_at, datum_at = base + names_at, base + data_at
        for i in range(count):
            name, data = names[i], datas[i]
            header(buffer, i * 64, name_at, len(name), base + iovs_at + i * 16, 1, 0, 0, 0, 0)
            iovec(buffer, iovs_at + i * 16, datum_at, len(data))
            name_at += len(name)
            datum_at += len(data)
        sent = 0
        assert _sendmmsg is not None
        while sent < count:
            done = _sendmmsg(fd, base + sent * 64, count - sent, 0)
            if done > 0:
                sent += done
                continue
            error = ctypes.get_errno()
            if error == errno.EINTR:
                continue
            # the first message left failed (full send buffer, unreachable): the NAS
            # retransmits it and the response cache answers; the rest still go
            self.send_errors += 1
            logger.debug("event=send_failed error=%s", os.strerror(error))
            sent += 1
        del view  # ctypes held the buffer (and its memory) until here

    def close(self) -> None:
        self.pause()
        with self._sending:
            self.sock.close()

"""Every socket the daemon listens on, bound before anything runs: a busy port is a clear
error at start-up (with the key that names it), not a failure later."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from radtrack.endpoint import Endpoint
from radtrack.errors import StartupError
from radtrack.transport import bind_udp


def bind_all(
    udp: Sequence[Endpoint], receive_buffer: int, http: Endpoint | None
) -> tuple[list[socket.socket], socket.socket | None]:
    """The UDP sockets of ``radius.listen`` and the TCP socket of ``api.listen`` (None when
    the API is off). Raises StartupError, with every socket bound so far closed."""
    sockets: list[socket.socket] = []
    try:
        for endpoint in udp:
            try:
                sockets.append(bind_udp(endpoint, receive_buffer))
            except OSError as exc:
                raise StartupError(
                    f"radius.listen: cannot bind UDP {endpoint}: {exc.strerror} "
                    "(hint: is another radtrack or a RADIUS server running on that port?)"
                ) from None
        if http is None:
            return sockets, None
        from radtrack.api.server import bind_tcp

        try:
            return sockets, bind_tcp(http.host, http.port)
        except OSError as exc:
            raise StartupError(
                f"api.listen: cannot bind TCP {http}: {exc.strerror} "
                "(hint: another process is using that port)"
            ) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise

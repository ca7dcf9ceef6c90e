"""Every socket the daemon listens on, bound before anything runs: a busy port is a clear
error at start-up (with the key that names it), not a failure later."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from radtrack.endpoint import Endpoint
from radtrack.errors import StartupError
from radtrack.radius.settings import RadiusSettings
from radtrack.transport import bind_udp


@dataclass(slots=True)
class Bound:
    """The sockets bind_all bound: ``radius.listen``'s (UDP), ``radius.radsec_listen``'s (TCP,
    listening) and ``api.listen``'s (TCP; None when the API is off)."""

    udp: list[socket.socket] = field(default_factory=list)
    radsec: list[socket.socket] = field(default_factory=list)
    http: socket.socket | None = None

    def close(self) -> None:
        for sock in [*self.udp, *self.radsec, *([self.http] if self.http else [])]:
            sock.close()


def bind_all(radius: RadiusSettings, http: Endpoint | None) -> Bound:
    """Bind every listening socket. Raises StartupError, with every socket bound so far
    closed."""
    bound = Bound()
    try:
        for endpoint in radius.listen:
            try:
                bound.udp.append(bind_udp(endpoint, radius.receive_buffer))
            except OSError as exc:
                raise StartupError(
                    f"radius.listen: cannot bind UDP {endpoint}: {exc.strerror} "
                    "(hint: is another radtrack or a RADIUS server running on that port?)"
                ) from None
        for endpoint in radius.radsec_listen:
            try:
                bound.radsec.append(_bind_tcp(endpoint))
            except OSError as exc:
                raise StartupError(
                    f"radius.radsec_listen: cannot bind TCP {endpoint}: {exc.strerror} "
                    "(hint: is radsecproxy or a RADIUS server running on that port?)"
                ) from None
        if http is not None:
            try:
                bound.http = _bind_tcp(http)
            except OSError as exc:
                raise StartupError(
                    f"api.listen: cannot bind TCP {http}: {exc.strerror} "
                    "(hint: another process is using that port)"
                ) from None
        return bound
    except BaseException:
        bound.close()
        raise


def _bind_tcp(endpoint: Endpoint) -> socket.socket:
    from radtrack.api.server import bind_tcp  # the API's module: imported when TCP is used

    return bind_tcp(endpoint.host, endpoint.port)

"""Records shared by every layer.

AccountingRequest is frozen: once decoded it never changes. Session is the live record of one
session; the accounting core is its only writer, everyone else reads it or takes a ``row()``
snapshot (a plain tuple) to carry across threads.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from radtrack.errors import UsernameTaken
from radtrack.shared import NOT_ENDED, ending_of, origin_of


class StatusType(enum.IntEnum):
    """Acct-Status-Type values radtrack acts on (RFC 2866 §5.1)."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


class CloseReason(enum.StrEnum):
    """Why a session is no longer online; stored in ``sessions.close_reason``."""

    STOP = "stop"  # the NAS sent Accounting-Request Stop
    ACCOUNTING_ON = "accounting-on"  # the NAS rebooted (RFC 2866 §5.1, Accounting-On)
    ACCOUNTING_OFF = "accounting-off"  # the NAS is being taken out of service
    STALE = "stale"  # no update for longer than the stale limit


class AccountingRequest(NamedTuple):
    """One verified Accounting-Request, reduced to what the accounting core needs.

    Immutable (a NamedTuple: as frozen as a frozen dataclass, and built ~5x faster, which
    matters once per packet).

    Times are POSIX seconds, UTC. Counters are already 64-bit (Gigawords combined).
    ``nas_key`` identifies the NAS: the configured client plus NAS-IP-Address (or NAS-Identifier,
    or the source address), so one CIDR client entry can cover many NASes.
    """

    status: StatusType
    nas_key: str
    nas_name: str
    nas_ip: str
    session_id: str
    event_time: float
    user_name: str | None = None
    class_hex: str | None = None
    nas_port_id: str | None = None
    nas_port_type: str | None = None
    calling_station_id: str | None = None
    called_station_id: str | None = None
    framed_ip: str | None = None
    connect_info: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    input_packets: int | None = None
    output_packets: int | None = None
    terminate_cause: str | None = None
    interim_interval: int | None = None
    # when radtrack received it (POSIX seconds); 0: unknown, the event time stands in
    received_at: float = 0.0


# nas_key -> the hash state after "<nas_key>\\0" (session_key)
_KEY_PREFIXES: dict[str, hashlib.blake2b] = {}


def session_key(nas_key: str, session_id: str, class_hex: str | None) -> str:
    """The opaque, stable id of a session: (NAS, Acct-Session-Id, Class) hashed (DESIGN.md):
    BLAKE2b-96 of "<nas_key>\\0<session_id>\\0<class_hex>" (UTF-8, surrogateescape), in hex.

    Once per packet, so the hash state after each NAS's part is kept and copied (the digest
    is the same as hashing the whole at once)."""
    prefix = _KEY_PREFIXES.get(nas_key)
    if prefix is None:
        prefix = hashlib.blake2b(
            f"{nas_key}\x00".encode("utf-8", "surrogateescape"), digest_size=12
        )
        if len(_KEY_PREFIXES) >= 10_000:  # NASes are few; never grow without bound
            _KEY_PREFIXES.clear()
        _KEY_PREFIXES[nas_key] = prefix
    digest = prefix.copy()
    digest.update(f"{session_id}\x00{class_hex or ''}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# Length of a session_key(); the id of a later incarnation of the same key is longer
KEY_LENGTH = 24


def incarnation_id(key: str, start_time: float) -> str:
    """The id of a later session under an already used ``key`` (the NAS reused its
    Acct-Session-Id, e.g. after a reboot): the key, then BLAKE2b-48 of "<key>\\0<start time>",
    like FreeRADIUS's acct_unique with Acct-Session-Start-Time folded in. The first session of a
    key keeps the key itself as its id, so rows written before id reuse was known stay valid;
    ``id[:KEY_LENGTH]`` is the key of either."""
    digest = hashlib.blake2b(f"{key}\x00{start_time!r}".encode(), digest_size=6)
    return f"{key}.{digest.hexdigest()}"


# Column order of the ``sessions`` table; Session.row() and Session.from_row() follow it.
SESSION_COLUMNS: tuple[str, ...] = (
    "id",
    "nas_key",
    "nas_name",
    "nas_ip",
    "session_id",
    "class",
    "user_name",
    "user_id",
    "nas_port_id",
    "nas_port_type",
    "calling_station_id",
    "called_station_id",
    "framed_ip",
    "connect_info_start",
    "start_time",
    "last_update",
    "stop_time",
    "terminate_cause",
    "close_reason",
    "input_octets",
    "output_octets",
    "input_packets",
    "output_packets",
    "session_time",
    "interim_interval",
    "start_seen",
)


class Session:
    """The live record of one session (open, or closed and kept as history).

    Slotted and plain, because a million of these live in memory (docs/performance.md); the
    fields that are the same for most sessions and no Interim reads are in ``origin`` and
    ``ending`` (radtrack/shared.py; properties give them by name).
    """

    __slots__ = (
        "id",
        "nas_key",
        "origin",
        "session_id",
        "class_hex",
        "user_name",
        "user_id",
        "nas_port_id",
        "nas_port_type",
        "calling_station_id",
        "called_station_id",
        "framed_ip",
        "start_time",
        "last_update",
        "stop_time",
        "ending",
        "input_octets",
        "output_octets",
        "input_packets",
        "output_packets",
        "session_time",
        "interim_interval",
        "last_seen",
        "next_of_user",
    )

    def __init__(
        self,
        id: str,
        nas_key: str,
        nas_name: str,
        nas_ip: str,
        session_id: str,
        start_time: float,
        last_update: float,
        *,
        class_hex: str | None = None,
        user_name: str | None = None,
        user_id: int | None = None,
        nas_port_id: str | None = None,
        nas_port_type: str | None = None,
        calling_station_id: str | None = None,
        called_station_id: str | None = None,
        framed_ip: str | None = None,
        connect_info_start: str | None = None,
        stop_time: float | None = None,
        terminate_cause: str | None = None,
        close_reason: str | None = None,
        input_octets: int = 0,
        output_octets: int = 0,
        input_packets: int = 0,
        output_packets: int = 0,
        session_time: int = 0,
        interim_interval: int | None = None,
        start_seen: bool = False,
    ) -> None:
        self.id = id
        self.nas_key = nas_key
        self.origin = origin_of(nas_name, nas_ip, connect_info_start, start_seen)
        self.session_id = session_id
        self.class_hex = class_hex
        self.user_name = user_name
        self.user_id = user_id
        self.nas_port_id = nas_port_id
        self.nas_port_type = nas_port_type
        self.calling_station_id = calling_station_id
        self.called_station_id = called_station_id
        self.framed_ip = framed_ip
        self.start_time = start_time
        self.last_update = last_update
        self.stop_time = stop_time
        self.ending = (
            NOT_ENDED
            if close_reason is None and terminate_cause is None
            else ending_of(close_reason, terminate_cause, False)
        )
        self.input_octets = input_octets
        self.output_octets = output_octets
        self.input_packets = input_packets
        self.output_packets = output_packets
        self.session_time = session_time
        self.interim_interval = interim_interval
        # when radtrack last heard of it (its clock, not the NAS's): the stale rule uses this,
        # so a NAS whose clock is off, or a backlog of old packets, does not look stale at once
        self.last_seen = last_update
        # the next online session of the same user: SessionIndex chains a user's sessions
        # through this slot instead of keeping a list per user (it is the only writer)
        self.next_of_user: Session | None = None

    @property
    def online(self) -> bool:
        return self.stop_time is None

    # the fields of ``origin``; set one, and the session shares another Origin
    @property
    def nas_name(self) -> str:
        return self.origin.nas_name

    @nas_name.setter
    def nas_name(self, value: str) -> None:
        self.origin = origin_of(*self.origin._replace(nas_name=value))

    @property
    def nas_ip(self) -> str:
        return self.origin.nas_ip

    @nas_ip.setter
    def nas_ip(self, value: str) -> None:
        self.origin = origin_of(*self.origin._replace(nas_ip=value))

    @property
    def connect_info_start(self) -> str | None:
        return self.origin.connect_info_start

    @connect_info_start.setter
    def connect_info_start(self, value: str | None) -> None:
        self.origin = origin_of(*self.origin._replace(connect_info_start=value))

    @property
    def start_seen(self) -> bool:
        return self.origin.start_seen

    @start_seen.setter
    def start_seen(self, value: bool) -> None:
        self.origin = origin_of(*self.origin._replace(start_seen=value))

    # the fields of ``ending``, likewise
    @property
    def close_reason(self) -> str | None:
        return self.ending.close_reason

    @close_reason.setter
    def close_reason(self, value: str | None) -> None:
        _, terminate_cause, disconnecting = self.ending
        self.ending = ending_of(value, terminate_cause, disconnecting)

    @property
    def terminate_cause(self) -> str | None:
        return self.ending.terminate_cause

    @terminate_cause.setter
    def terminate_cause(self, value: str | None) -> None:
        close_reason, _, disconnecting = self.ending
        self.ending = ending_of(close_reason, value, disconnecting)

    @property
    def disconnecting(self) -> bool:
        return self.ending.disconnecting

    @disconnecting.setter
    def disconnecting(self, value: bool) -> None:
        close_reason, terminate_cause, _ = self.ending
        self.ending = ending_of(close_reason, terminate_cause, value)

    def set_ending(self, close_reason: str, terminate_cause: str | None) -> None:
        """close_reason and terminate_cause at once (one Ending looked up, not two)."""
        self.ending = ending_of(close_reason, terminate_cause, self.ending.disconnecting)

    def start_arrived(self, connect_info: str | None) -> None:
        """Its Accounting-Request Start came, with this Connect-Info (start_seen and
        connect_info_start set at once: one Origin looked up, not two)."""
        nas_name, nas_ip, _, _ = self.origin
        self.origin = origin_of(nas_name, nas_ip, connect_info, True)

    def row(self) -> tuple[object, ...]:
        """A snapshot in SESSION_COLUMNS order, safe to hand to the writer thread
        (``start_seen`` a bool: SQLite stores 1, PostgreSQL's column is a boolean)."""
        nas_name, nas_ip, connect_info_start, start_seen = self.origin
        close_reason, terminate_cause, _ = self.ending
        return (
            self.id,
            self.nas_key,
            nas_name,
            nas_ip,
            self.session_id,
            self.class_hex,
            self.user_name,
            self.user_id,
            self.nas_port_id,
            self.nas_port_type,
            self.calling_station_id,
            self.called_station_id,
            self.framed_ip,
            connect_info_start,
            self.start_time,
            self.last_update,
            self.stop_time,
            terminate_cause,
            close_reason,
            self.input_octets,
            self.output_octets,
            self.input_packets,
            self.output_packets,
            self.session_time,
            self.interim_interval,
            start_seen,
        )

    @classmethod
    def from_row(cls, row: tuple[object, ...] | list[object]) -> Session:
        """Rebuild a session from a ``sessions`` row in SESSION_COLUMNS order (history pages,
        subscription snapshots; start-up recovery has its own loop in store/recovery.py)."""
        session = cls.__new__(cls)
        (
            session.id,
            session.nas_key,
            nas_name,
            nas_ip,
            session.session_id,
            session.class_hex,
            session.user_name,
            session.user_id,
            session.nas_port_id,
            session.nas_port_type,
            session.calling_station_id,
            session.called_station_id,
            session.framed_ip,
            connect_info_start,
            session.start_time,
            session.last_update,
            session.stop_time,
            terminate_cause,
            close_reason,
            session.input_octets,
            session.output_octets,
            session.input_packets,
            session.output_packets,
            session.session_time,
            session.interim_interval,
            start_seen,
        ) = row  # type: ignore[assignment]
        session.origin = origin_of(
            nas_name,  # type: ignore[arg-type]
            nas_ip,  # type: ignore[arg-type]
            connect_info_start,  # type: ignore[arg-type]
            bool(start_seen),
        )
        session.ending = ending_of(close_reason, terminate_cause, False)  # type: ignore[arg-type]
        session.last_seen = session.last_update
        session.next_of_user = None
        return session


@dataclass(frozen=True, slots=True)
class User:
    """A row of the users table: maps a RADIUS User-Name to an API user id and its owner."""

    user_id: int
    username: str | None = None
    reseller_id: int | None = None
    max_sessions: int | None = None


def taken_username(
    users: Sequence[User], owner_of: Callable[[str], int | None]
) -> UsernameTaken | None:
    """The refusal of a users write that would take a username from a user it leaves alone.

    ``owner_of`` gives the user id that holds a username now (None: nobody). A username moves
    only when its holder is in the same write (with another username, or none): that is what
    asking for the move looks like.
    """
    written = {user.user_id for user in users}
    for index, user in enumerate(users):
        if user.username is None:
            continue
        owner = owner_of(user.username)
        if owner is not None and owner not in written:
            return UsernameTaken(user.username, owner, user.user_id, index)
    return None


class ChangeKind(enum.StrEnum):
    """What happened to a session, as subscribers and the writer see it."""

    STARTED = "started"
    UPDATED = "updated"
    STOPPED = "stopped"


class SessionChange(NamedTuple):
    """An effect of the accounting core: this session changed, persist it and tell subscribers.

    Immutable; a NamedTuple rather than a frozen dataclass because one is made per packet (a
    frozen dataclass's __init__ sets each field through object.__setattr__, ~5x slower)."""

    kind: ChangeKind
    session: Session
    # only counters, last_update and late-known attributes changed (an Interim-Update): the
    # writer can update fewer columns and no index
    counters_only: bool = False

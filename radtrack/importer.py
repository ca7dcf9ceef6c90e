"""`radtrack import radacct`: the sessions of a FreeRADIUS ``radacct`` table into radtrack's store.

A radacct row becomes the Session radtrack would have built from the same packets
(docs/freeradius.md): the NAS is named as the daemon names it, "<client name>/<NAS-IP-Address>"
(the [[radius.clients]] entry whose address covers nasipaddress, or the one ``client`` names),
and the id is derived the same way (model.session_key over the NAS, Acct-Session-Id and Class;
a later session of an already used key gets model.incarnation_id), so the NAS's next packet of
an imported session finds it. Idempotent: a row whose session the store already holds (the
same key, a start within SESSION_TIME_SKEW, or online both here and there) is "already present"
and left as the store has it.

Open rows (acctstoptime IS NULL) by default; closed ones too with ``history``. Of several open
rows of one key (FreeRADIUS never closed the older ones), only the newest is imported online.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from radtrack.accounting import SESSION_TIME_SKEW
from radtrack.model import CloseReason, Session, incarnation_id, session_key
from radtrack.radius.decoder import MAX_COUNTER
from radtrack.radius.settings import ClientSettings
from radtrack.store.imports import Known
from radtrack.store.index import UserDirectory

# the radacct columns read (FreeRADIUS 3 schemas, SQLite and PostgreSQL); gigawords columns
# of older schemas are added when present
COLUMNS = (
    "acctsessionid",
    "acctuniqueid",
    "username",
    "nasipaddress",
    "nasportid",
    "nasporttype",
    "acctstarttime",
    "acctupdatetime",
    "acctstoptime",
    "acctsessiontime",
    "acctinputoctets",
    "acctoutputoctets",
    "calledstationid",
    "callingstationid",
    "framedipaddress",
    "connectinfo_start",
    "acctterminatecause",
    "class",
)
OPTIONAL_COLUMNS = ("acctinputgigawords", "acctoutputgigawords", "class")


@dataclass
class Summary:
    imported: int = 0
    online: int = 0  # of the imported
    present: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [
            f"imported {self.imported} sessions ({self.online} online, "
            f"{self.imported - self.online} closed)",
            f"already present {self.present}",
            f"skipped {sum(self.skipped.values())}",
        ]
        out += [f"  {count} {reason}" for reason, count in self.skipped.most_common()]
        return out


class Progress:
    """A one-line progress bar on ``stream`` (stderr), redrawn every 1 % at most."""

    def __init__(self, total: int, stream: TextIO | None, label: str = "radacct") -> None:
        self.total, self.stream, self.label = total, stream, label
        self.done = 0
        self._shown = -1

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.stream is None or self.total <= 0:
            return
        percent = min(100, self.done * 100 // self.total)
        if percent != self._shown:
            self._shown = percent
            bar = "#" * (percent // 4)
            self.stream.write(f"\r{self.label} [{bar:<25}] {percent:3d}% {self.done}/{self.total}")
            self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def progress_stream(forced: bool, stream: TextIO = sys.stderr) -> TextIO | None:
    """Where the progress bar goes: stderr when it is a terminal or when asked (--progress)."""
    return stream if forced or stream.isatty() else None


def epoch(value: Any) -> float | None:
    """A radacct time as POSIX seconds: an integer (FreeRADIUS's SQLite queries store the
    epoch), a datetime (PostgreSQL's timestamptz; naive is UTC) or "YYYY-MM-DD HH:MM:SS"."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return float(text)
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def class_hex(value: Any) -> str | None:
    """radacct.class as radtrack keeps Class: hex of its octets. FreeRADIUS writes '%{Class}',
    an octets attribute, as "0x" and hex; anything else is taken as the text it is."""
    if value is None or value == "":
        return None
    text = value.hex() if isinstance(value, bytes) else str(value)
    if text[:2].lower() == "0x":
        try:
            return bytes.fromhex(text[2:]).hex()
        except ValueError:
            pass
    return text.encode("utf-8", "surrogateescape").hex()


def _text(value: Any) -> str | None:
    """A text column; FreeRADIUS writes '' for an attribute the packet did not have."""
    if value is None:
        return None
    text = str(value)
    return text or None


def _ip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return text.split("/", 1)[0]  # PostgreSQL's inet may carry a prefix length


def _counter(row: Mapping[str, Any], name: str) -> int:
    low = int(row.get(f"acct{name}octets") or 0)
    high = int(row.get(f"acct{name}gigawords") or 0)
    return max(0, min(low + (high << 32), MAX_COUNTER))


class Mapper:
    """radacct rows into Sessions, as the daemon would have named and keyed them."""

    def __init__(
        self, clients: Sequence[ClientSettings], users: UserDirectory, client: str | None = None
    ) -> None:
        self.clients = clients
        self.users = users
        self.client = client

    def nas_name(self, nas_ip: str) -> str | None:
        """The client entry that packets of this NAS come from: ``client`` (FreeRADIUS in
        front), else the most specific entry whose address covers the NAS's."""
        if self.client is not None:
            return self.client
        try:
            address = ipaddress.ip_address(nas_ip)
        except ValueError:
            return None
        best: ClientSettings | None = None
        for entry in self.clients:
            if address in entry.network and (
                best is None or entry.network.prefixlen > best.network.prefixlen
            ):
                best = entry
        return None if best is None else best.name

    def session(self, row: Mapping[str, Any]) -> Session | str:  # long: one column a line
        """The session of one row, or why it is skipped."""
        nas_ip = _ip(row.get("nasipaddress"))
        if nas_ip is None:
            return "no nasipaddress"
        session_id = _text(row.get("acctsessionid"))
        if session_id is None:
            return "no acctsessionid"
        nas_name = self.nas_name(nas_ip)
        if nas_name is None:
            return "NAS not covered by any [[radius.clients]] address (see --client)"
        start = epoch(row.get("acctstarttime"))
        if start is None:
            return "no acctstarttime"
        stop = epoch(row.get("acctstoptime"))
        last = max(start, epoch(row.get("acctupdatetime")) or start, stop or start)
        nas_key = f"{nas_name}/{nas_ip}"
        klass = class_hex(row.get("class"))
        user_name = _text(row.get("username"))
        return Session(
            session_key(nas_key, session_id, klass),  # the id is decided later (plan)
            nas_key,
            nas_name,
            nas_ip,
            session_id,
            start,
            last,
            class_hex=klass,
            user_name=user_name,
            user_id=self.users.resolve(user_name, klass),
            nas_port_id=_text(row.get("nasportid")),
            nas_port_type=_text(row.get("nasporttype")),
            calling_station_id=_text(row.get("callingstationid")),
            called_station_id=_text(row.get("calledstationid")),
            framed_ip=_ip(row.get("framedipaddress")),
            connect_info_start=_text(row.get("connectinfo_start")),
            stop_time=stop,
            terminate_cause=_text(row.get("acctterminatecause")) if stop is not None else None,
            close_reason=CloseReason.STOP.value if stop is not None else None,
            input_octets=_counter(row, "input"),
            output_octets=_counter(row, "output"),
            session_time=max(0, int(row.get("acctsessiontime") or 0)),
        )


class Plan:
    """Which mapped sessions to write, under which ids, given what the store holds."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.sessions: dict[str, Session] = {}  # id -> session to write, in start order
        self._planned: dict[str, list[Session]] = {}  # key -> planned incarnations

    def add(self, session: Session, stored: list[Known]) -> None:
        key = session.id
        planned = self._planned.setdefault(key, [])
        for _, start, online in stored:
            if abs(start - session.start_time) <= SESSION_TIME_SKEW or (online and session.online):
                self.summary.present += 1
                return
        for other in planned:
            if abs(other.start_time - session.start_time) <= SESSION_TIME_SKEW:
                self.summary.present += 1  # the same session twice in radacct
                return
        if session.online:
            for other in [s for s in planned if s.online]:
                # rows sorted by start: FreeRADIUS never closed this older one
                planned.remove(other)
                del self.sessions[other.id]
                self.summary.skipped["older open row of the same session (never closed)"] += 1
        taken = bool(stored) or any(s.id == key for s in planned)
        if taken:
            session.id = incarnation_id(key, session.start_time)
        planned.append(session)
        self.sessions[session.id] = session

    def finish(self) -> list[Session]:
        sessions = list(self.sessions.values())
        self.summary.imported = len(sessions)
        self.summary.online = sum(1 for s in sessions if s.online)
        return sessions


def map_rows(
    rows: Iterable[Mapping[str, Any]], mapper: Mapper, summary: Summary, progress: Progress
) -> list[Session]:
    """Every row's session (the skipped ones counted), by start time; each session's id is its
    key until ``decide`` gives it its own."""
    mapped: list[Session] = []
    for row in rows:
        session = mapper.session(row)
        if isinstance(session, str):
            summary.skipped[session] += 1
        else:
            mapped.append(session)
        progress.advance()
    mapped.sort(key=lambda s: (s.start_time, s.stop_time is None))
    return mapped


def keys_of(mapped: Sequence[Session]) -> list[str]:
    return sorted({s.id for s in mapped})


def decide(
    mapped: Sequence[Session],
    stored: Mapping[str, list[Known]],
    summary: Summary,
) -> list[Session]:
    """The sessions to write, with their ids, given what the store holds of their keys."""
    decided = Plan(summary)
    for session in mapped:
        decided.add(session, stored.get(session.id, []))
    return decided.finish()

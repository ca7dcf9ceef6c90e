"""The schema's scalars: DateTime (ISO 8601 in UTC, POSIX seconds inside) and Long (64 bits)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ariadne import ScalarType

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def serialize_datetime(value: Any) -> str:
    """POSIX seconds (or an aware datetime) -> "2024-01-15T10:30:00Z" (seconds truncated)."""
    if isinstance(value, datetime):
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"DateTime cannot represent {type(value).__name__}")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def parse_datetime(value: Any) -> float:
    """ "2024-01-15T10:30:00Z" (an explicit offset is required) -> POSIX seconds."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("DateTime must look like 2024-01-15T10:30:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a time zone, e.g. a Z suffix")
    return parsed.timestamp()


def serialize_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Long cannot represent {type(value).__name__}")
    if not LONG_MIN <= value <= LONG_MAX:
        raise ValueError("Long cannot represent a value outside 64 bits")
    return value


def parse_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not LONG_MIN <= value <= LONG_MAX:
        raise ValueError("Long must be an integer of at most 64 bits")
    return value


datetime_scalar = ScalarType("DateTime", serializer=serialize_datetime, value_parser=parse_datetime)
long_scalar = ScalarType("Long", serializer=serialize_long, value_parser=parse_long)

bindables = (datetime_scalar, long_scalar)

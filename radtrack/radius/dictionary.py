"""Loading the FreeRADIUS-format dictionaries radtrack ships (dictionaries/)."""

from __future__ import annotations

from pathlib import Path

from pyrad.dictionary import Dictionary

from radtrack.errors import DictionaryError

# Attributes the codec reads by name; a dictionary without them cannot be used.
REQUIRED = (
    "User-Name",
    "NAS-IP-Address",
    "NAS-Port-Type",
    "Acct-Status-Type",
    "Acct-Session-Id",
    "Acct-Terminate-Cause",
    "Event-Timestamp",
    "Message-Authenticator",
    "Proxy-State",
    "Error-Cause",
)


def default_path() -> Path:
    """The shipped dictionary: inside the installed wheel, else the source checkout's."""
    here = Path(__file__).resolve().parent.parent  # radtrack/
    for candidate in (
        here / "dictionaries" / "dictionary",
        here.parent / "dictionaries" / "dictionary",
    ):
        if candidate.is_file():
            return candidate
    raise DictionaryError("the shipped dictionaries are missing (radtrack/dictionaries/dictionary)")


def load(path: Path | None = None) -> Dictionary:
    """A pyrad Dictionary from ``path`` (default: the shipped one); raises only DictionaryError."""
    path = path or default_path()
    try:
        dictionary = Dictionary(str(path))
    except Exception as exc:  # pyrad raises ParseError, OSError, ValueError...
        raise DictionaryError(f"cannot load dictionary {path}: {exc}") from None
    missing = [name for name in REQUIRED if name not in dictionary.attributes]
    if missing:
        raise DictionaryError(f"dictionary {path} lacks {', '.join(missing)}")
    return dictionary

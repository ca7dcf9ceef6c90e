"""Tests of radtrack's own RADIUS dictionary files (dictionaries/)."""

from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary
from pyrad.packet import AccountingRequest, AcctPacket

DICT_DIR = Path(__file__).parents[1] / "dictionaries"
TOP = DICT_DIR / "dictionary"
SECRET = b"s3cr3t-s3cr3t-16"


@pytest.fixture(scope="module")
def d():
    return Dictionary(str(TOP))


def included_files():
    """The top-level file and the files it $INCLUDEs, in order."""
    files = [TOP]
    for line in TOP.read_text().splitlines():
        tokens = line.split("#", 1)[0].split()
        if tokens and tokens[0] == "$INCLUDE":
            files.append(DICT_DIR / tokens[1])
    return files


def definitions(keyword):
    """(file name, line number, tokens) of every `keyword` line."""
    for path in included_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            tokens = line.split("#", 1)[0].split()
            if tokens and tokens[0] == keyword:
                yield path.name, number, tokens


def test_loads_without_skipping(d):
    assert len(d) > 90
    # pyrad skips attributes of types it can't handle; we use none
    assert d.skipped_attributes == set()


def test_every_dictionary_file_is_included():
    on_disk = {p.name for p in DICT_DIR.glob("dictionary*")}
    assert {p.name for p in included_files()} == on_disk


def test_every_file_has_a_header():
    for path in included_files():
        assert "written for radtrack from the rfc text" in path.read_text().lower(), path.name


@pytest.mark.parametrize(
    "attr, name, number",
    [
        ("Acct-Status-Type", "Start", 1),
        ("Acct-Status-Type", "Stop", 2),
        ("Acct-Status-Type", "Interim-Update", 3),
        ("Acct-Status-Type", "Accounting-On", 7),
        ("Acct-Status-Type", "Accounting-Off", 8),
        ("NAS-Port-Type", "Virtual", 5),
        ("Acct-Terminate-Cause", "User-Request", 1),
        ("Acct-Terminate-Cause", "Admin-Reset", 6),
        ("Error-Cause", "Session-Context-Not-Found", 503),
    ],
)
def test_values(d, attr, name, number):
    assert d[attr].values[name] == number.to_bytes(4, "big")


@pytest.mark.parametrize(
    "name, code, datatype",
    [
        ("Acct-Status-Type", 40, "integer"),
        ("Acct-Session-Id", 44, "string"),
        ("Acct-Input-Gigawords", 52, "integer"),
        ("Event-Timestamp", 55, "date"),
        ("Message-Authenticator", 80, "octets"),
        ("NAS-Port-Id", 87, "string"),
        ("Error-Cause", 101, "integer"),
        ("Framed-IPv6-Prefix", 97, "ipv6prefix"),
        ("Framed-IPv6-Address", 168, "ipv6addr"),
    ],
)
def test_attributes(d, name, code, datatype):
    assert (d[name].code, d[name].type) == (code, datatype)


def test_accounting_request_round_trip(d):
    attrs = {
        "User-Name": "alice@example.net",
        "Acct-Status-Type": "Start",
        "Acct-Session-Id": "0A1B2C3D-00000042",
        "NAS-IP-Address": "192.0.2.10",
        "NAS-Identifier": "bras-1",
        "NAS-Port-Id": "eth0/1/2:100",
        "NAS-Port-Type": "Virtual",
        "Service-Type": "Framed-User",
        "Framed-Protocol": "PPP",
        "Calling-Station-Id": "00-11-22-33-44-55",
        "Framed-IP-Address": "198.51.100.7",
        "Framed-IPv6-Prefix": "2001:db8:1::/64",
        "Connect-Info": "1000BASE-T",
        "Event-Timestamp": 1700000000,
        "Acct-Authentic": "RADIUS",
        "Acct-Delay-Time": 0,
        "Acct-Input-Gigawords": 3,
        "Class": b"\x01\x02class",
    }
    request = AcctPacket(dict=d, secret=SECRET)
    for name, value in attrs.items():
        request[name] = value
    raw = request.RequestPacket()

    received = AcctPacket(packet=raw, dict=d, secret=SECRET)
    assert received.code == AccountingRequest
    assert received.VerifyAcctRequest()
    assert {name: received[name] for name in attrs} == {
        name: [value] for name, value in attrs.items()
    }


def test_attribute_codes_and_names_are_unique():
    codes, names = {}, {}
    for where, number, tokens in definitions("ATTRIBUTE"):
        name, code = tokens[1], int(tokens[2])
        here = f"{where}:{number}"
        assert code not in codes, f"code {code} at {here} and {codes[code]}"
        assert name not in names, f"{name} at {here} and {names[name]}"
        codes[code] = names[name] = here


def test_value_names_and_numbers_are_unique_per_attribute():
    attributes = {tokens[1] for _, _, tokens in definitions("ATTRIBUTE")}
    seen = {}
    for where, number, tokens in definitions("VALUE"):
        attr, name, value = tokens[1], tokens[2], int(tokens[3], 0)
        here = f"{where}:{number}"
        assert attr in attributes, f"VALUE for undefined {attr} at {here}"
        names, values = seen.setdefault(attr, ({}, {}))
        assert name not in names, f"{attr} {name} at {here} and {names[name]}"
        assert value not in values, f"{attr} {value} at {here} and {values[value]}"
        names[name] = values[value] = here

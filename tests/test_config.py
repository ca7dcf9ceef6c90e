"""Configuration: parsed once into frozen settings; unknown keys and wrong types name the key
path and say how to fix it; config.example.toml documents every setting."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from radtrack import cli, config
from radtrack.api.settings import EXAMPLE_TOKENS, ApiSettings, TokenSettings, token_digest
from radtrack.config import ConfigError
from radtrack.errors import ConfigErrors
from radtrack.radius.settings import ClientSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"


def parse(text: str) -> config.Settings:
    return config.parse(tomllib.loads(text))


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_example_config_loads() -> None:
    settings = config.load(EXAMPLE)
    assert settings.radius.clients[0].name == "vpn-gw-1"
    assert str(settings.radius.listen[0]) == "127.0.0.1:1813"
    assert settings.store.path == ROOT / "radtrack.db"  # relative to the config file
    assert settings.store.synchronous == "FULL"  # power-loss safe by default
    assert [t.name for t in settings.api.tokens] == ["example-admin", "example-reseller"]
    # the public tokens the dashboard may show (radtrack.api.settings) are the example's
    assert [t.sha256 for t in settings.api.tokens] == [token_digest(t) for t in EXAMPLE_TOKENS]
    for token in EXAMPLE_TOKENS:
        assert f'is "{token}"' in EXAMPLE.read_text()  # and its comments give them
    assert settings.warnings() == []
    # the query page and introspection: on for a first try on loopback, off by default
    assert settings.api.explorer and settings.api.introspection
    assert str(settings.api.listen) == "127.0.0.1:8080"
    assert not ApiSettings().explorer and not ApiSettings().introspection


def test_the_query_page_beyond_loopback_is_a_warning() -> None:
    for listen in ("0.0.0.0:8080", "192.0.2.10:8080", "[2001:db8::1]:8080"):
        settings = parse(f"[api]\nlisten = '{listen}'\nexplorer = true\n")
        assert [w for w in settings.warnings() if w.startswith("api.explorer: ")], listen
    for text in (
        "[api]\nlisten = '[::1]:8080'\nexplorer = true\nintrospection = true\n",
        "[api]\nlisten = 'localhost:8080'\nexplorer = true\n",
        "[api]\nlisten = '0.0.0.0:8080'\n",
    ):
        assert not [w for w in parse(text).warnings() if w.startswith("api.explorer: ")], text


def _keys(settings_type: type, prefix: str) -> set[str]:
    skip = {"clients", "tokens", "source"}
    keys = set()
    for field in dataclasses.fields(settings_type):
        if field.name in skip:
            continue
        if dataclasses.is_dataclass(field.default) and type(field.default).__name__.endswith(
            "Settings"
        ):
            keys |= _keys(type(field.default), f"{prefix}{field.name}.")
        else:
            keys.add(f"{prefix}{field.name}")
    return keys


def test_example_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    section = ""
    documented = set()
    for line in text.splitlines():
        header = re.match(r"^\s*#?\s*\[+([a-z_.]+)\]+", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"^\s*#?\s*([a-z_0-9]+)\s*=", line)
        if key:
            documented.add(f"{section}.{key.group(1)}")
    top = _keys(config.Settings, "")
    clients = {
        f"radius.clients.{f.name}"
        for f in dataclasses.fields(ClientSettings)
        if f.name != "network"
    } | {"radius.clients.address"}
    tokens = {f"api.tokens.{f.name}" for f in dataclasses.fields(TokenSettings)}
    missing = (top | clients | tokens) - documented
    assert not missing, f"config.example.toml does not document {sorted(missing)}"


def test_settings_are_frozen() -> None:
    settings = config.load(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.store.path = Path("/tmp/x")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "path", "hint"),
    [
        ("[radius]\nlisten = ['127.0.0.1:1813']\nbogus = 1\n", "radius.bogus", "known keys"),
        ("[stor]\npath = 'x'\n", "stor", "known keys"),
        ("[store]\npath = 3\n", "store.path", ""),
        ("[store]\ncommit_delay = 0.5\n", "store.commit_delay", "default is 0.001"),
        ("[store]\ncommit_delay = -1\n", "store.commit_delay", "default is 0.001"),
        ("[radius]\nlisten = '127.0.0.1:1813'\n", "radius.listen", ""),
        ("[radius]\nlisten = ['127.0.0.1']\n", "radius.listen[0]", "127.0.0.1:1813"),
        (
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.300'\nsecret = 's'\n",
            "radius.clients[0].address",
            "CIDR",
        ),
        (
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\n",
            "radius.clients[0].secret",
            "radtrack secret",
        ),
        (
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\nsecret = 's'\n"
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.2'\nsecret = 's'\n",
            "radius.clients[1].name",
            "unique",
        ),
        (
            "[[api.tokens]]\nname = 'r'\nsha256 = '" + "a" * 64 + "'\nscopes = ['reseller']\n",
            "api.tokens[0].reseller_id",
            "reseller_id",
        ),
        (
            "[[api.tokens]]\nname = 'r'\nsha256 = 'abc'\nscopes = ['admin']\n",
            "api.tokens[0].sha256",
            "radtrack token create",
        ),
        (
            "[[api.tokens]]\nname = 'r'\nsha256 = '" + "a" * 64 + "'\nscopes = ['root']\n",
            "api.tokens[0].scopes[0]",
            "admin or reseller",
        ),
        ("[store]\nsynchronous = 'SOMETIMES'\n", "store.synchronous", "FULL"),
        ("[sessions]\nstale_multiple = 0\n", "sessions.stale_multiple", ""),
        ("[users]\npattern = '('\n", "users.pattern", ""),
        ("[users]\nlimit_policy = 'kick-everyone'\n", "users.limit_policy", ""),
        ("[daemon]\nlog_level = 'LOUD'\n", "daemon.log_level", "DEBUG"),
        ("[radius]\nqueue_size = true\n", "radius.queue_size", ""),
    ],
)
def test_errors_name_the_key_path_and_hint(text: str, path: str, hint: str) -> None:
    exc = error(text)
    assert exc.errors == (exc,), str(exc)  # one mistake, one error
    assert exc.path == path, str(exc)
    assert exc.hint, f"no hint: {exc}"
    assert hint in exc.hint


# three mistakes of different kinds in three places, and a fourth and fifth in one table
THREE_MISTAKES = """\
[radius]
listen = ["127.0.0.1:1813"]
queue_size = "20000"

[[radius.clients]]
name = "gw"
address = "192.0.2.300"
secret = "a-long-enough-secret"

[store]
synchronus = "FULL"
"""


def test_every_error_of_a_file_is_reported_in_the_files_order() -> None:
    exc = error(THREE_MISTAKES)
    assert isinstance(exc, ConfigErrors)
    assert [e.path for e in exc.errors] == [
        "radius.queue_size",
        "radius.clients[0].address",
        "store.synchronus",
    ]
    assert all(e.hint for e in exc.errors)
    assert "e.g. queue_size = 20000" in exc.errors[0].hint
    assert "did you mean synchronous?" in exc.errors[2].hint
    assert exc.path == "radius.queue_size"  # the first one's, as for a single error
    assert str(exc).count("(hint: ") == 3  # what the daemon logs: all of them
    items = error(
        "[radius]\nclients = [1, {name = 'a', address = 'nope', secret = 'long-enough-1234'}]"
    )
    assert [(e.path, e.message) for e in items.errors] == [
        ("radius.clients[0]", "must be a table, not an integer"),
        ("radius.clients[1].address", "'nope' is not an IP address or CIDR"),
    ]
    more = error("[daemon]\nlog_lvl = 'INFO'\nshutdown_timeout = -1\nfoo = 1\n")
    assert [e.path for e in more.errors] == [
        "daemon.log_lvl",
        "daemon.shutdown_timeout",
        "daemon.foo",
    ]


def test_check_config_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(THREE_MISTAKES)
    result = subprocess.run(
        [sys.executable, "-m", "radtrack", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines[:3]] == [
        "radius.queue_size",
        "radius.clients[0].address",
        "store.synchronus",
    ], result.stderr
    assert all(f"{bad}: error: " in line and "(hint: " in line for line in lines[:3])
    assert lines[3:] == [f"{bad}: 3 errors"]
    good = subprocess.run(
        [sys.executable, "-m", "radtrack", "check-config", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert good.stderr == "" and good.stdout.startswith(f"{EXAMPLE}: ok (1 NAS clients")


def test_serve_refuses_a_bad_config_with_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(THREE_MISTAKES)
    assert cli.main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("radtrack: bad config (3 errors):\n  radius.queue_size: "), err
    assert "\n  radius.clients[0].address: " in err and "\n  store.synchronus: " in err


def test_ipv6_and_cidr() -> None:
    settings = parse(
        "[radius]\nlisten = ['[::1]:1813', '127.0.0.1:0']\n"
        "[[radius.clients]]\nname = 'pop'\naddress = '2001:db8::/64'\n"
        "secret = 'a-long-enough-secret'\n"
    )
    assert settings.radius.listen[0].host == "::1"
    assert str(settings.radius.clients[0].network) == "2001:db8::/64"


def test_secrets_never_in_repr() -> None:
    settings = parse(
        "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\nsecret = 'hunter2-hunter2-x'\n"
    )
    assert "hunter2" not in repr(settings)


def test_weak_secret_is_a_warning_not_an_error() -> None:
    settings = parse("[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\nsecret = 'short'\n")
    assert any("shorter than 16 characters" in w for w in settings.warnings())


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[radius\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


@pytest.mark.parametrize(
    ("text", "path", "hint"),
    [
        ("[store]\nbackend = 'postgresql'\n", "store.dsn", "postgresql://"),
        ("[store]\nbackend = 'mysql'\n", "store.backend", ""),
        (
            "[store]\nbackend = 'postgresql'\ndsn = 'postgresql://radtrack:s3cret@db/radtrack'\n",
            "store.dsn",
            "store.password_file",
        ),
        (
            "[store]\nbackend = 'postgresql'\ndsn = 'postgresql://db/r?password=s3cret'\n",
            "store.dsn",
            "store.password_env",
        ),
        ("[store]\nbackend = 'postgresql'\ndsn = 'mysql://db/r'\n", "store.dsn", "postgresql://"),
    ],
)
def test_postgresql_settings_are_checked_and_never_repeat_a_password(
    text: str, path: str, hint: str
) -> None:
    exc = error(text)
    assert exc.path == path, str(exc)
    assert hint in str(exc)
    assert "s3cret" not in str(exc)


def test_the_postgresql_password_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("from-the-file\n")
    (tmp_path / "a.toml").write_text(
        "[store]\nbackend = 'postgresql'\ndsn = 'postgresql://radtrack@db/radtrack'\n"
        "password_file = 'pw'\n"
    )
    settings = config.load(tmp_path / "a.toml")
    assert config.store_password(settings.store) == "from-the-file"
    assert "from-the-file" not in repr(settings)

    (tmp_path / "b.toml").write_text(
        "[store]\nbackend = 'postgresql'\ndsn = 'postgresql://radtrack@db/radtrack'\n"
        "password_env = 'RADTRACK_TEST_PG_PASSWORD'\n"
    )
    settings = config.load(tmp_path / "b.toml")
    with pytest.raises(ConfigError) as unset:
        config.store_password(settings.store)
    assert unset.value.path == "store.password_env"
    monkeypatch.setenv("RADTRACK_TEST_PG_PASSWORD", "from-the-env")
    assert config.store_password(settings.store) == "from-the-env"

    (tmp_path / "pw").unlink()
    with pytest.raises(ConfigError) as missing:
        config.store_password(config.load(tmp_path / "a.toml").store)
    assert missing.value.path == "store.password_file"


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("10.0.0.1/24", "10.0.0.0/24"),
        ("192.0.2.77/28", "192.0.2.64/28"),
        ("2001:db8::1/64", "2001:db8::/64"),
    ],
)
def test_a_cidr_with_host_bits_is_a_warning_naming_its_network(address: str, network: str) -> None:
    text = (
        f"[[radius.clients]]\nname = 'a'\naddress = '{address}'\nsecret = 'a-long-enough-secret'\n"
    )
    settings = parse(text)
    assert str(settings.radius.clients[0].network) == network  # still accepted, as before
    [warning] = [w for w in settings.warnings() if w.startswith("radius.clients")]
    assert warning.startswith(f"radius.clients[0].address: '{address}' has host bits set")
    assert f"it means the network {network}" in warning
    assert f'write "{network}"' in warning


@pytest.mark.parametrize("address", ["10.0.0.0/24", "10.0.0.1", "10.0.0.1/32", "2001:db8::/64"])
def test_a_plain_address_or_network_warns_nothing(address: str) -> None:
    text = (
        f"[[radius.clients]]\nname = 'a'\naddress = '{address}'\nsecret = 'a-long-enough-secret'\n"
    )
    assert not [w for w in parse(text).warnings() if w.startswith("radius.clients")]


def test_check_config_prints_the_host_bits_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hosty.toml"
    path.write_text(
        "[[radius.clients]]\nname = 'office'\naddress = '10.0.0.1/24'\n"
        "secret = 'a-long-enough-secret'\n"
    )
    assert cli.main(["check-config", "--config", str(path)]) == 0  # a warning, not an error
    err = capsys.readouterr().err
    assert (
        f"{path}: warning: radius.clients[0].address: '10.0.0.1/24' has host bits set; it means "
        'the network 10.0.0.0/24 (10.0.0.0 to 10.0.0.255) (hint: write "10.0.0.0/24" for that '
        'network, or "10.0.0.1" for one NAS)'
    ) in err


RADSEC = (
    "[radius]\nradsec_listen = ['127.0.0.1:2083']\nradsec_certificate = 'tls/server.pem'\n"
    "radsec_key = 'tls/server.key'\nradsec_ca = '/etc/radtrack/ca.pem'\n"
)


def test_radsec_settings_and_a_radsec_client(tmp_path: Path) -> None:
    path = tmp_path / "radtrack.toml"
    path.write_text(
        RADSEC + "[[radius.clients]]\nname = 'proxy'\naddress = '192.0.2.0/24'\nradsec = true\n"
        "certificate_name = 'proxy.example.net'\n[api]\nlisten = ''\n"
    )
    settings = config.load(path)
    radius = settings.radius
    assert [str(e) for e in radius.radsec_listen] == ["127.0.0.1:2083"]
    assert radius.radsec_certificate == tmp_path / "tls/server.pem"  # relative to the file
    assert radius.radsec_ca == Path("/etc/radtrack/ca.pem")
    [client] = radius.clients
    assert client.radsec and client.secret == b"radsec"  # RFC 6614 §2.3
    assert client.certificate_name == "proxy.example.net"
    assert settings.warnings() == []  # "radsec" is no weak secret: it is no secret at all


@pytest.mark.parametrize(
    ("text", "path", "hint"),
    [
        (
            "[radius]\nradsec_listen = ['127.0.0.1:2083']\n",
            "radius.radsec_certificate",
            "docs/radsec.md",
        ),
        (RADSEC.replace("radsec_ca", "#"), "radius.radsec_ca", "folder"),
        ("[radius]\nradsec_listen = ['127.0.0.1']\n", "radius.radsec_listen[0]", "host:port"),
        (
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\nsecret = 'a-long-secret-xyz'\n"
            "certificate_name = 'a.example'\n",
            "radius.clients[0].certificate_name",
            "radsec = true",
        ),
        (
            "[[radius.clients]]\nname = 'a'\naddress = '10.0.0.1'\nradsec = true\n"
            "coa_address = '10.0.0.1'\n",
            "radius.clients[0].coa_address",
            "not supported",
        ),
        (RADSEC + "radsec_read_timeout = 0\n", "radius.radsec_read_timeout", ""),
    ],
)
def test_radsec_errors_name_the_key_path(text: str, path: str, hint: str) -> None:
    exc = error(text)
    assert exc.path == path, str(exc)
    assert hint in str(exc)


def test_a_radsec_client_without_a_radsec_listener_is_a_warning() -> None:
    settings = parse("[[radius.clients]]\nname = 'p'\naddress = '10.0.0.1'\nradsec = true\n")
    assert any("radsec_listen is empty" in w for w in settings.warnings())


def test_radsec_listeners_need_a_restart_clients_do_not() -> None:
    old = parse(RADSEC)
    new = parse(
        RADSEC.replace("2083", "2084")
        + "[[radius.clients]]\nname = 'p'\naddress = '10.0.0.1'\nradsec = true\n"
    )
    assert old.needing_restart(new) == ["radius.radsec_listen"]
    kept = new.radius.keeping_restart_only(old.radius)
    assert kept.radsec_listen == old.radius.radsec_listen
    assert kept.clients == new.radius.clients

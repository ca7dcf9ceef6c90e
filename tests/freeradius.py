"""A real FreeRADIUS 3 for tests: a raddb of its own in a temp directory, run in the foreground.

``FreeRadius(root, ...)`` writes a minimal raddb (``radiusd.conf`` only: one accounting listener
on 127.0.0.1, one client, the modules and sections a test names), starts ``freeradius -X``
(foreground, single-threaded, debug log on stdout, which the test keeps to show on failure) and
returns once it says "Ready to process requests". Nothing of the system install is used but the
dictionaries, the modules (/usr/lib/freeradius) and, for rlm_sql, the schema and queries that
Debian's package ships under /etc/freeradius/3.0/mods-config (read, never changed).

``freeradius_or_skip()`` finds the binary: without it the test skips, unless ``CI`` is set,
where it fails (CI must run these tests: .ci/run installs the package).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SHIPPED = Path("/etc/freeradius/3.0")  # Debian's freeradius-config: schema.sql, queries.conf
SQLITE_SCHEMA = SHIPPED / "mods-config/sql/main/sqlite/schema.sql"
POSTGRESQL_SCHEMA = SHIPPED / "mods-config/sql/main/postgresql/schema.sql"
SQLITE_QUERIES = SHIPPED / "mods-config/sql/main/sqlite/queries.conf"
ACCT_UNIQUE = SHIPPED / "policy.d/accounting"
READY = "Ready to process requests"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def freeradius_or_skip() -> str:
    """The freeradius binary; skips the test without it (fails under CI)."""
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None or shutil.which("radclient") is None:
        if _ci():
            pytest.fail("CI: freeradius or radclient missing (apt-get install freeradius)")
        pytest.skip("FreeRADIUS not installed (apt-get install freeradius freeradius-utils)")
    return binary


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 nobody holds right now (FreeRADIUS takes ports from its config)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proxy_config(home_port: int, secret: str, response_window: float = 2.0) -> str:
    """radtrack as an accounting home server, its pool and a realm (what docs/freeradius.md
    tells operators to add to proxy.conf), with Status-Server checks."""
    return f"""
home_server radtrack {{
	type = acct
	ipaddr = 127.0.0.1
	port = {home_port}
	secret = {secret}
	response_window = {response_window}
	status_check = status-server
	check_interval = 6
	num_answers_to_alive = 3
}}
home_server_pool radtrack {{
	type = fail-over
	home_server = radtrack
}}
realm radtrack {{
	acct_pool = radtrack
	nostrip
}}
"""


def sql_module(root: Path, database: Path, *, with_class: bool = True) -> str:
    """rlm_sql on SQLite with the schema and queries Debian ships; ``with_class`` turns on the
    Class column as queries.conf says (its ``class`` subsection, uncommented)."""
    queries = SQLITE_QUERIES.read_text()
    if with_class:
        queries = (
            queries.replace('column_name =\t# ", class"', 'column_name = ", class"')
            .replace("packet_xlat =\t# \", '%{Class}'\"", "packet_xlat = \", '%{Class}'\"")
            .replace(
                "reply_xlat =\t# \", '%{reply:Class}'\"", "reply_xlat = \", '%{reply:Class}'\""
            )
        )
        assert ", '%{Class}'\"" in queries and "# \", '%{Class}'\"" not in queries
    root.mkdir(parents=True, exist_ok=True)
    (root / "queries.conf").write_text(queries)
    return f"""
	sql {{
		dialect = "sqlite"
		driver = "rlm_sql_sqlite"
		sqlite {{
			filename = "{database}"
			busy_timeout = 200
			bootstrap = "{SQLITE_SCHEMA}"
		}}
		radius_db = "radius"
		acct_table1 = "radacct"
		acct_table2 = "radacct"
		postauth_table = "radpostauth"
		authcheck_table = "radcheck"
		groupcheck_table = "radgroupcheck"
		authreply_table = "radreply"
		groupreply_table = "radgroupreply"
		usergroup_table = "radusergroup"
		read_groups = yes
		client_table = "nas"
		group_attribute = "SQL-Group"
		pool {{
			start = 1
			min = 1
			max = 2
			spare = 1
			uses = 0
			lifetime = 0
			idle_timeout = 60
		}}
		$INCLUDE {root / "queries.conf"}
	}}
"""


class FreeRadius:
    """One FreeRADIUS process on a raddb written into ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        acct_port: int,
        nas_secret: str,
        preacct: str = "",
        accounting: str = "ok",
        modules: str = "",
        extra: str = "",
    ) -> None:
        self.binary = freeradius_or_skip()
        self.root = root
        self.acct_port = acct_port
        self.nas_secret = nas_secret
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "radiusd.conf").write_text(self._radiusd_conf(preacct, accounting, modules, extra))

    def _radiusd_conf(self, preacct: str, accounting: str, modules: str, extra: str) -> str:
        return f"""
prefix = /usr
raddbdir = {self.root}
dictdir = /usr/share/freeradius
logdir = {self.root}
run_dir = {self.root}
libdir = /usr/lib/freeradius
pidfile = {self.root}/radiusd.pid
name = radiusd
log {{
	destination = stdout
}}
security {{
	allow_core_dumps = no
}}
proxy_requests = yes
proxy server {{
	default_fallback = no
}}
client nas {{
	ipaddr = 127.0.0.1
	secret = {self.nas_secret}
}}
{extra}
policy {{
	$INCLUDE {ACCT_UNIQUE}
}}
modules {{
	always ok {{
		rcode = ok
	}}
	# %{{md5:...}}, %{{hex:...}}, %{{string:...}}: what the shipped acct_unique policy uses
	expr {{
	}}
{modules}
}}
server default {{
	listen {{
		type = acct
		ipaddr = 127.0.0.1
		port = {self.acct_port}
	}}
	preacct {{
		acct_unique
{preacct}
	}}
	accounting {{
		{accounting}
	}}
}}
"""

    def start(self, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "-X", "-d", str(self.root), "-n", "radiusd"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self._proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"FreeRADIUS did not start:\n{self.log()}")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY in line:
                self._ready.set()
        self._ready.set()  # it exited: start() sees poll() is not None

    def log(self, last: int = 150) -> str:
        return "\n".join(self.lines[-last:])

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)  # the pipe is at its end once the process is gone
        if proc.stdout is not None:
            proc.stdout.close()


def running(server: FreeRadius) -> Iterator[FreeRadius]:
    """Start ``server``, yield it, stop it (for fixtures)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()

"""A real PostgreSQL for tests and benchmarks: a throwaway cluster of its own.

``PgCluster`` runs Debian's PostgreSQL binaries (``initdb``, ``pg_ctl``) on a cluster in a temp
directory, listening on 127.0.0.1 on a free port and on a unix socket in that directory. The
server refuses to run as root (``initdb`` and ``postgres`` check), and the tests and CI run as
root, so under root every server command runs as an unprivileged system user (Debian's
``postgres``, which the ``postgresql`` package creates; ``RADTRACK_PG_USER`` names another) and
the temp directory is handed to that user. Authentication is ``trust`` (loopback and a socket in
a private directory only); fsync and synchronous_commit stay on, because the tests and the
benchmark are about durable commits.

``find_bindir`` locates the binaries: ``RADTRACK_PG_BINDIR``, then the newest
/usr/lib/postgresql/*/bin, then ``initdb`` on PATH. ``PostgresMissing`` says what is missing
(tests/conftest.py skips on it loudly, or fails under ``CI``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

DEFAULT_USER = "postgres"
SUPERUSER = "radtrack_test"  # the cluster's bootstrap superuser (initdb -U)

# Settings for a small, quick cluster; durability settings stay at their defaults (on)
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "40",
    "shared_buffers": "64MB",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "log_checkpoints": "off",
    "jit": "off",
}


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries, or a user to run them as, cannot be found."""


def find_bindir() -> Path:
    """The directory that holds ``initdb``, ``pg_ctl`` and ``postgres``."""
    if env := os.environ.get("RADTRACK_PG_BINDIR"):
        candidates = [Path(env)]
    else:

        def version(path: Path) -> float:
            try:
                return float(path.parent.name)
            except ValueError:
                return 0.0

        candidates = sorted(
            (p / "bin" for p in Path("/usr/lib/postgresql").glob("*")), key=version, reverse=True
        )
        if found := shutil.which("initdb"):
            candidates.append(Path(found).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresMissing(
        "PostgreSQL server binaries not found (initdb, pg_ctl, postgres in "
        "/usr/lib/postgresql/*/bin or RADTRACK_PG_BINDIR): apt-get install postgresql"
    )


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("RADTRACK_PG_USER", DEFAULT_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresMissing(
            f"running as root and there is no user {name!r} to run PostgreSQL as "
            "(Debian's postgresql package creates 'postgres'; RADTRACK_PG_USER names another)"
        ) from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One running cluster; ``start()`` then ``stop()`` (or use ``running()``)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="radtrack-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.port = 0
        self._started = False
        self._options = ""
        self._databases = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self.user
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,  # the server user cannot enter root's working directory
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.root)},
            capture_output=True,
            text=True,
            check=check,
        )

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.user:
            for path in (self.root, self.socket_dir):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        # --no-sync: the initial files need not reach the disk (a test cluster); the server's
        # own fsyncs stay on
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        )
        settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self.socket_dir)}
        for attempt in range(5):  # the free port may be taken between the probe and the bind
            self.port = _free_port()
            options = " ".join(f"-c {k}={v}" for k, v in {**settings, "port": self.port}.items())
            done = self._pg_start(options, check=False)
            if done.returncode == 0:
                self._started = True
                self._options = options
                return
            if attempt == 4 or "could not bind" not in self.log.read_text(errors="replace"):
                raise RuntimeError(
                    f"pg_ctl start failed: {done.stdout}{done.stderr}\n"
                    f"{self.log.read_text(errors='replace')}"
                )

    def pause(self) -> None:
        """Stop the server (fast: clients are disconnected), keeping the cluster: ``resume``
        starts it again on the same port (a PostgreSQL restart, as a client sees it)."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait")
        self._started = False

    def resume(self) -> None:
        self._pg_start(self._options)
        self._started = True

    def _pg_start(self, options: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data),
            "--wait",
            "--timeout",
            "60",
            "--log",
            str(self.log),
            "--options",
            options,
            check=check,
        )

    def stop(self) -> None:
        """Stop the server (fast: disconnects clients) and remove the cluster; idempotent."""
        if self._started:
            self._started = False
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URI over TCP to 127.0.0.1 (what asyncpg and psycopg both take)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def socket_dsn(self, database: str = "postgres") -> str:
        """The same over the unix socket (the deployment default, ``host=/run/postgresql``)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql as the superuser; its output (tuples only)."""
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            + ["-d", self.dsn(database), "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        """A new, empty database; its name."""
        self._databases += 1
        name = f"test_{self._databases}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def running(bindir: Path | None = None) -> Iterator[PgCluster]:
    """A started cluster, stopped and removed on the way out."""
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

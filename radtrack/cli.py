"""The command line: the only place that exits.

radtrack serve --config FILE          run the daemon
radtrack check-config --config FILE   validate a config; non-zero exit when it is wrong
radtrack secret                       print a strong random RADIUS shared secret
radtrack token create --name N --scope admin|reseller [--reseller-id R]
radtrack users import FILE.csv --config FILE    upsert users (user_id,username,reseller_id,...)
radtrack sessions --config FILE [--user ID] [--nas NAME] [--json]   who is online (read-only)
radtrack migrate --config FILE        create or migrate the database schema (SQLite or PostgreSQL)
radtrack import radacct --from PATH|DSN --config FILE [--history]   FreeRADIUS sessions in
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from radtrack import __version__, logs
from radtrack.api.settings import RESELLER, SCOPES, token_digest
from radtrack.config import Settings, load, store_password
from radtrack.errors import ConfigError, UsernameTaken
from radtrack.radius.tls import server_context
from radtrack.store import journal, snapshot

T = TypeVar("T")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


class CommandFailed(Exception):
    """A command cannot go on: ``main`` prints the message and exits with ``status``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _settings(path: str) -> Settings:
    try:
        return load(path)
    except ConfigError as exc:
        if len(exc.errors) == 1:
            raise CommandFailed(f"bad config: {exc}", 2) from None
        lines = "".join(f"\n  {error}" for error in exc.errors)
        raise CommandFailed(f"bad config ({len(exc.errors)} errors):{lines}", 2) from None


GC_YOUNG, GC_MIDDLE, GC_FULL = 2_000, 2, 1_000  # gc thresholds of the daemon (cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    logs.configure(args.log_level or settings.daemon.log_level)
    for warning in settings.warnings():
        _err(f"radtrack: warning: {warning}")
    from radtrack.daemon import run

    # The writer's SQLite thread needs the GIL between its statements; with the default 5 ms
    # switch interval a busy event loop makes every commit wait (docs/performance.md).
    sys.setswitchinterval(0.0005)
    # Garbage collection pauses the event loop for as long as it scans: ~0.8 us per young
    # object here, so a young generation of 50,000 was a 40 ms pause every 2.5 s at 5,000
    # packets/s (and the middle one up to a second). Small young generations keep each pause to
    # a few ms (2,000 and 2: ~3 ms young, ~10 ms middle, for the same GC time in all as 5,000
    # and 5; getOnlineSessions p99 beside 5,000 packets/s 22-33 ms instead of 30-48 in four
    # alternating pairs); full collections (a million long-lived sessions) stay rare; start-up
    # freezes what recovery loaded (Daemon.start) so it is never scanned again.
    gc.set_threshold(GC_YOUNG, GC_MIDDLE, GC_FULL)

    try:
        import uvloop  # the event loop measured in docs/performance.md
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(settings))
    try:
        return uvloop.run(run(settings))
    except KeyboardInterrupt:
        return 130


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config)
    except ConfigError as exc:  # every error of the file, each with its key path and a hint
        for error in exc.errors:
            _err(f"{args.config}: error: {error}")
        if len(exc.errors) > 1:
            _err(f"{args.config}: {len(exc.errors)} errors")
        return 2
    try:
        store_password(settings.store)
        server_context(settings.radius)  # RadSec's certificates and key load
    except ConfigError as exc:
        _err(f"{args.config}: error: {exc}")
        return 2
    warnings = settings.warnings()
    for warning in warnings:
        _err(f"{args.config}: warning: {warning}")
    _out(
        f"{args.config}: ok ({len(settings.radius.clients)} NAS clients, "
        f"{len(settings.api.tokens)} API tokens, database {_database(settings)})"
    )
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    _out(secrets.token_urlsafe(args.bytes))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    if args.scope == RESELLER and args.reseller_id is None:
        raise CommandFailed("--reseller-id is required with --scope reseller", 2)
    token = secrets.token_urlsafe(32)
    digest = token_digest(token).hex()
    _out(f"token (shown once, give it to the API consumer): {token}")
    _out("")
    _out("[[api.tokens]]")
    _out(f'name = "{args.name}"')
    _out(f'sha256 = "{digest}"')
    _out(f'scopes = ["{args.scope}"]')
    if args.scope == RESELLER:
        _out(f"reseller_id = {args.reseller_id}")
    return 0


def _database(settings: Settings) -> str:
    store = settings.store
    return store.dsn if store.backend == "postgresql" else str(store.path)


def _on_postgresql(
    settings: Settings, work: Callable[[str, str | None], Coroutine[Any, Any, T]]
) -> T:
    """Run ``work(dsn, password)`` against the configured PostgreSQL."""
    try:
        password = store_password(settings.store)
    except ConfigError as exc:
        raise CommandFailed(f"bad config: {exc}", 2) from None
    import asyncpg

    try:
        return asyncio.run(work(settings.store.dsn, password))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandFailed(f"cannot use the database {settings.store.dsn}: {exc}", 1) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if settings.store.backend == "postgresql":
        from radtrack.store.pg import tools

        before, now = _on_postgresql(settings, tools.migrate)
    else:
        from radtrack.store.schema import SCHEMA_VERSION, migrate

        path = settings.store.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.discard(path)  # written for the schema as it was
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            try:
                before, now = migrate(conn), SCHEMA_VERSION
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise CommandFailed(f"cannot migrate {path}: {exc}", 1) from None
    state = "up to date" if before == now else f"migrated from version {before}"
    _out(f"{_database(settings)}: schema version {now} ({state})")
    return 0


USER_COLUMNS = ("user_id", "username", "reseller_id", "max_sessions")


def _optional_int(value: str | None, where: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"{where}: {number} is negative")
    return number


def read_users_csv(path: str) -> list[tuple[int, str | None, int | None, int | None]]:
    """Rows of a users CSV (header: user_id,username[,reseller_id][,max_sessions])."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "user_id" not in fields:
            raise ValueError(f"{path}: the header must name user_id (columns: {USER_COLUMNS})")
        unknown = set(fields) - set(USER_COLUMNS)
        if unknown:
            raise ValueError(f"{path}: unknown columns {sorted(unknown)} (known: {USER_COLUMNS})")
        rows = []
        seen_ids: set[int] = set()
        seen_names: set[str] = set()
        for line, record in enumerate(reader, start=2):
            where = f"{path}:{line}"
            user_id = _optional_int(record.get("user_id"), where)
            if user_id is None or user_id >= 2**31:
                raise ValueError(f"{where}: user_id is required (0 to 2^31-1)")
            username = (record.get("username") or "").strip() or None
            if user_id in seen_ids or (username is not None and username in seen_names):
                raise ValueError(f"{where}: user {user_id} / {username!r} appears twice")
            seen_ids.add(user_id)
            if username is not None:
                seen_names.add(username)
            rows.append(
                (
                    user_id,
                    username,
                    _optional_int(record.get("reseller_id"), where),
                    _optional_int(record.get("max_sessions"), where),
                )
            )
        return rows


def _taken(path: str, taken: UsernameTaken) -> CommandFailed:
    return CommandFailed(
        f"{path}: user {taken.user_id}: username {taken.username!r} belongs to user "
        f"{taken.owner}; nothing was imported (to move it, give user {taken.owner} another "
        "username, or none, in the same file)",
        2,
    )


def cmd_users_import(args: argparse.Namespace) -> int:
    from radtrack.model import User, taken_username
    from radtrack.store.schema import FREE_OWN_USERNAME, UPSERT_USER, migrate, username_owners

    settings = _settings(args.config)
    try:
        rows = read_users_csv(args.file)
    except (OSError, ValueError) as exc:
        raise CommandFailed(str(exc), 2) from None
    if settings.store.backend == "postgresql":
        from radtrack.store.pg import tools

        async def write(dsn: str, password: str | None) -> None:
            await tools.import_users(dsn, password, rows)

        try:
            _on_postgresql(settings, write)
        except UsernameTaken as refused:
            raise _taken(args.file, refused) from None
        _out(
            f"imported {len(rows)} users into {settings.store.dsn}; running daemons pick them "
            "up on reload (systemctl reload radtrack, or SIGHUP)"
        )
        return 0
    snapshot.discard(settings.store.path)  # no longer the store's (its seal breaks too)
    conn = sqlite3.connect(settings.store.path, isolation_level=None, timeout=10)
    try:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        owners = username_owners(conn, [name for _, name, _, _ in rows if name is not None])
        taken = taken_username([User(*row) for row in rows], owners.get)
        if taken is not None:
            raise _taken(args.file, taken)  # closing the connection rolls back
        conn.executemany(FREE_OWN_USERNAME, [(uid,) for uid, _, _, _ in rows])
        conn.executemany(UPSERT_USER, rows)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise CommandFailed(f"cannot write {settings.store.path}: {exc}", 1) from None
    finally:
        conn.close()
    _out(
        f"imported {len(rows)} users into {settings.store.path}; a running daemon picks them up "
        "on reload (systemctl reload radtrack, or SIGHUP)"
    )
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if settings.store.backend == "postgresql":
        from radtrack.store.pg import tools

        async def read(dsn: str, password: str | None) -> list[dict[str, Any]]:
            return await tools.online_sessions(dsn, password, args.user, args.nas)

        return _print_sessions(_on_postgresql(settings, read), args.json)
    where = ["stop_time IS NULL"]
    params: list[object] = []
    if args.user is not None:
        where.append("user_id = ?")
        params.append(args.user)
    if args.nas is not None:
        where.append("nas_name = ?")
        params.append(args.nas)
    try:
        # what the daemon acknowledged: sessions plus the journal's rows not yet folded in
        conn = journal.open_current(settings.store.path)
    except sqlite3.Error as exc:
        raise CommandFailed(f"cannot open {settings.store.path}: {exc}", 1) from None
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, session_id, user_id, user_name, nas_name, nas_ip, framed_ip, "
            "calling_station_id, start_time, last_update, input_octets, output_octets "
            f"FROM current_sessions WHERE {' AND '.join(where)} ORDER BY start_time",
            params,
        ).fetchall()
    except sqlite3.Error as exc:
        raise CommandFailed(f"cannot read {settings.store.path}: {exc}", 1) from None
    finally:
        conn.close()
    return _print_sessions([dict(row) for row in rows], args.json)


def _print_sessions(records: list[dict[str, Any]], as_json: bool) -> int:
    for record in records:
        for key in ("start_time", "last_update"):
            record[key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record[key]))
    if as_json:
        _out(json.dumps(records, indent=2))
        return 0
    columns = ("user_id", "user_name", "session_id", "nas_name", "framed_ip", "start_time")
    table = [[str(r[c] if r[c] is not None else "-") for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
    _out("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        _out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    _out(f"({len(records)} online)")
    return 0


def cmd_import_radacct(args: argparse.Namespace) -> int:
    from radtrack import radacct
    from radtrack.importer import Mapper, progress_stream
    from radtrack.store.index import UserDirectory

    settings = _settings(args.config)
    names = [c.name for c in settings.radius.clients]
    if args.client is not None and args.client not in names:
        raise CommandFailed(f"--client {args.client!r} is not a [[radius.clients]] name {names}", 2)
    users = settings.users
    directory = UserDirectory(
        numeric_user_names=users.numeric_user_names,
        pattern=users.pattern,
        pattern_attribute=users.pattern_attribute,
    )
    mapper = Mapper(settings.radius.clients, directory, args.client)
    store = settings.store
    try:
        password = store_password(store) if store.backend == "postgresql" else None
    except ConfigError as exc:
        raise CommandFailed(f"bad config: {exc}", 2) from None
    target = radacct.Target(store.backend, store.path, store.dsn, password)
    try:
        summary = radacct.run(
            args.source,
            target,
            mapper,
            history=args.history,
            progress_to=progress_stream(args.progress),
        )
    except radacct.ERRORS as exc:
        raise CommandFailed(f"import from {args.source} failed: {exc}", 1) from None
    for line in summary.lines():
        _out(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radtrack", description="RADIUS session tracker")
    parser.add_argument("--version", action="version", version=f"radtrack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", required=True, help="TOML config file")
    serve.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_check_config)

    secret = sub.add_parser("secret", help="print a strong random shared secret")
    secret.add_argument("--bytes", type=int, default=24, help="random bytes (default 24)")
    secret.set_defaults(func=cmd_secret)

    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a bearer token")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--reseller-id", type=int)
    create.set_defaults(func=cmd_token_create)

    users = sub.add_parser("users", help="the users table")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    imp = users_sub.add_parser("import", help="upsert users from a CSV file")
    imp.add_argument("file", help="CSV with a header: user_id,username,reseller_id,max_sessions")
    imp.add_argument("--config", required=True)
    imp.set_defaults(func=cmd_users_import)

    sessions = sub.add_parser("sessions", help="list online sessions (reads the database)")
    sessions.add_argument("--config", required=True)
    sessions.add_argument("--user", type=int, help="only this user id")
    sessions.add_argument("--nas", help="only this NAS (its name in the config)")
    sessions.add_argument("--json", action="store_true", help="JSON instead of a table")
    sessions.set_defaults(func=cmd_sessions)

    migrate = sub.add_parser("migrate", help="create or migrate the database schema")
    migrate.add_argument("--config", required=True)
    migrate.set_defaults(func=cmd_migrate)

    imp_ = sub.add_parser("import", help="import sessions from elsewhere")
    imp_sub = imp_.add_subparsers(dest="import_command", required=True)
    radacct = imp_sub.add_parser("radacct", help="sessions of a FreeRADIUS radacct table")
    radacct.add_argument("--from", dest="source", required=True, help="SQLite file or DSN")
    radacct.add_argument("--config", required=True)
    radacct.add_argument("--history", action="store_true", help="closed sessions too")
    radacct.add_argument("--client", help="the [[radius.clients]] name of every NAS's packets")
    radacct.add_argument("--progress", action="store_true", help="progress bar even off a TTY")
    radacct.set_defaults(func=cmd_import_radacct)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandFailed as exc:
        _err(f"radtrack: {exc}")
        return exc.status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

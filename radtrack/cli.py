"""The command line: the only place that exits.

radtrack serve --config FILE          run the daemon
radtrack check-config --config FILE   validate a config; non-zero exit when it is wrong
radtrack secret                       print a strong random RADIUS shared secret
radtrack token create --name N --scope admin|reseller [--reseller-id R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import secrets
import sys
from collections.abc import Sequence

from radtrack import __version__, logs
from radtrack.config import load
from radtrack.errors import ConfigError


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config)
    except ConfigError as exc:
        _err(f"radtrack: bad config: {exc}")
        return 2
    logs.configure(args.log_level or settings.daemon.log_level)
    for warning in settings.warnings():
        _err(f"radtrack: warning: {warning}")
    from radtrack.daemon import run

    # The writer's SQLite thread needs the GIL between its statements; with the default 5 ms
    # switch interval a busy event loop makes every commit wait (docs/performance.md).
    sys.setswitchinterval(0.0005)
    # A million long-lived sessions make every full garbage collection slow: collect young
    # objects less often; start-up freezes what recovery loaded (Daemon.start).
    gc.set_threshold(50_000, 20, 100)

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        return runner(run(settings))
    except KeyboardInterrupt:
        return 130


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config)
    except ConfigError as exc:
        _err(f"{args.config}: error: {exc}")
        return 2
    warnings = settings.warnings()
    for warning in warnings:
        _err(f"{args.config}: warning: {warning}")
    _out(
        f"{args.config}: ok ({len(settings.radius.clients)} NAS clients, "
        f"{len(settings.api.tokens)} API tokens, database {settings.store.path})"
    )
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    _out(secrets.token_urlsafe(args.bytes))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    if args.scope == "reseller" and args.reseller_id is None:
        _err("radtrack: --reseller-id is required with --scope reseller")
        return 2
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    _out(f"token (shown once, give it to the API consumer): {token}")
    _out("")
    _out("[[api.tokens]]")
    _out(f'name = "{args.name}"')
    _out(f'sha256 = "{digest}"')
    _out(f'scopes = ["{args.scope}"]')
    if args.scope == "reseller":
        _out(f"reseller_id = {args.reseller_id}")
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
    create.add_argument("--scope", choices=("admin", "reseller"), required=True)
    create.add_argument("--reseller-id", type=int)
    create.set_defaults(func=cmd_token_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``llmgate`` command: parses arguments and calls in."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Literal, NoReturn

from llmgate import __version__
from llmgate.errors import SettingsError
from llmgate.observability import logs
from llmgate.settings import ListenerBusy, check_listeners, load_settings


class _OneLineParser(argparse.ArgumentParser):
    """An argument error is one line, as every other invalid setting (argparse printed the
    whole usage before it): ``llmgate: error: <what> (see `llmgate serve --help`)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"llmgate: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="llmgate", description="An API gateway for LLM APIs.")
    parser.add_argument("--version", action="version", version=f"llmgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    serve = commands.add_parser("serve", help="run the admin API and the data plane")
    serve.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
    serve.add_argument("--admin-listen", help="host:port of the admin API (127.0.0.1:9180)")
    serve.add_argument("--proxy-listen", help="host:port of the data plane (0.0.0.0:9080)")
    serve.add_argument(
        "--proxy-listen-tls",
        help="host:port of the data plane's HTTPS listener, or off (0.0.0.0:9443)",
    )
    serve.add_argument("--metrics-listen", help="host:port of the metrics (127.0.0.1:9091)")
    serve.add_argument("--database-url", help="store URL (sqlite+aiosqlite:///./llmgate.db)")
    serve.add_argument("--redis-url", help="redis://host:port/db for shared counters and cache")
    serve.add_argument("--spool-dir", help="usage spool directory, or off (beside the store)")
    serve.add_argument("--reload-interval", help="seconds between store revision polls (0.1)")
    serve.add_argument(
        "--snapshot-dir",
        help="where this node keeps the last-good snapshot of a PostgreSQL store "
        "(~/.local/state/llmgate; off: nowhere)",
    )
    serve.add_argument("--role", choices=("admin", "proxy", "all"), help="which side to run")
    serve.add_argument("--workers", help="data-plane processes sharing the port (1)")
    serve.add_argument(
        "--standalone",
        metavar="FILE",
        help="serve an APISIX standalone file (apisix.yaml) instead of the database; "
        "reloaded when it changes, the admin API read-only",
    )
    serve.add_argument(
        "--ui-dir",
        metavar="DIR",
        help="serve this static admin UI build (e.g. the APISIX Dashboard's dist/) at /ui/ "
        "on the admin listener",
    )
    serve.add_argument("--admin-cors", help="on|off: CORS headers on admin answers, as APISIX (on)")
    serve.add_argument("--log-level", help="debug, info, warning or error (warning)")
    serve.add_argument("--log-format", help="text or json: one JSON object per line (text)")
    serve.add_argument(
        "--access-log", help="on|off: the data plane's access log on standard output (on)"
    )
    serve.add_argument("--client-header-timeout", help="seconds for a whole request head (60)")
    serve.add_argument("--client-body-timeout", help="seconds between two body reads (60)")
    serve.add_argument("--keepalive-timeout", help="seconds an idle connection is kept (75)")
    serve.add_argument(
        "--send-timeout", help="seconds a response may wait for a client that does not read (60)"
    )
    serve.add_argument("--keepalive-requests", help="requests per connection (1000)")
    serve.add_argument(
        "--max-connections", help="client connections per listener and process (0: from ulimit)"
    )
    serve.add_argument("--merge-slashes", help="on|off: '//' in a path is '/' (on)")

    migrate = commands.add_parser("migrate", help="apply the store's migrations")
    migrate.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
    migrate.add_argument("--database-url", help="store URL (LLMGATE_DATABASE_URL)")

    config = commands.add_parser(
        "config", help="dump, diff or apply the whole configuration as a standalone file"
    )
    actions = config.add_subparsers(dest="action", required=True)
    dump = actions.add_parser("dump", help="write every resource as an apisix.yaml file")
    dump.add_argument("-o", "--output", metavar="FILE", help="write here (standard output)")
    dump.add_argument("output_file", nargs="?", metavar="FILE", help="the same as -o FILE")
    dump.add_argument("--format", choices=("yaml", "json"), help="yaml unless FILE is .json")
    diff = actions.add_parser("diff", help="show what apply would change (exit 1 if anything)")
    apply = actions.add_parser("apply", help="make the store equal the file, in one revision")
    for action in (diff, apply):
        action.add_argument("-f", "--file", help="apisix.yaml or .json (- : stdin)")
        action.add_argument("file_arg", nargs="?", metavar="FILE", help="the same as -f FILE")
        action.add_argument(
            "--prune", action="store_true", help="delete resources the file does not have"
        )
    for action in (dump, diff, apply):
        action.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
        action.add_argument("--database-url", help="store URL (LLMGATE_DATABASE_URL)")

    admin_key = commands.add_parser(
        "admin-key", help="replace the generated admin key (a lost one, or on a schedule)"
    )
    key_actions = admin_key.add_subparsers(dest="action", required=True)
    rotate = key_actions.add_parser(
        "rotate", help="generate a new admin key, print it once, keep only its digest"
    )
    rotate.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
    rotate.add_argument("--database-url", help="store URL (LLMGATE_DATABASE_URL)")

    fake = commands.add_parser("fake-upstream", help="run the OpenAI-compatible fake upstream")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=_port, default=8000)
    fake.add_argument("--latency-ms", type=_millis, default=0.0)
    fake.add_argument("--stream-delay-ms", type=_millis, default=0.0)
    fake.add_argument(
        "--model", default="gpt-3.5-turbo", help="model named when a request has none"
    )
    fake.add_argument("--status", type=int, help="answer every request with this error (400-599)")
    fake.add_argument("--drop", choices=("before", "mid-stream"), help="drop every connection")
    fake.add_argument("--record", type=_count, default=1000, help="requests kept for inspection")
    return parser


def _millis(text: str) -> float:
    """A fake-upstream delay: a finite number of milliseconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds (0 or more)")
    return value


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return int(text)


def _open_standard_fds() -> None:
    """Point a closed standard fd (0-2; a supervisor's ``>&-``) at /dev/null, as daemons do:
    otherwise the next socket or file opened takes its number, stray writes land in it, and
    uvloop aborts the process when it closes an fd <= 2."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _one_file(flag: str | None, positional: str | None, usage: str) -> str | Literal[False] | None:
    """The file a ``config`` command names, by its flag or as a plain argument (either one);
    False (said on standard error) when it names two."""
    if flag is not None and positional is not None and flag != positional:
        print(f"llmgate: error: name the file once: {usage}", file=sys.stderr)
        return False
    return flag if flag is not None else positional


def main(argv: Sequence[str] | None = None) -> int:
    _open_standard_fds()
    args = _parser().parse_args(argv)
    if args.command == "fake-upstream":
        from llmgate.fake_upstream import FakeSettings, run

        if args.status is not None and not 400 <= args.status <= 599:
            print("llmgate: error: --status must be 400-599", file=sys.stderr)
            return 2
        knobs = FakeSettings(
            latency_ms=args.latency_ms,
            stream_delay_ms=args.stream_delay_ms,
            model=args.model,
            status=args.status,
            drop=args.drop,
            record=args.record,
        )
        try:
            run(args.host, args.port, knobs, announce=True)
        except OSError as exc:  # the listener: a busy port, a host that does not resolve
            where = f"{args.host}:{args.port}"
            print(f"llmgate: error: fake upstream {where}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 0
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(flags)
    except SettingsError as exc:
        print(f"llmgate: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "config":
        from llmgate.config import commands as config

        if args.action == "dump":
            output = _one_file(args.output, args.output_file, "dump FILE or dump -o FILE")
            if output is False:
                return 2
            return config.dump(settings.database_url, output, args.format)
        path = _one_file(args.file, args.file_arg, f"{args.action} FILE or {args.action} -f FILE")
        if path is False:
            return 2
        if not path:
            print(f"llmgate: error: name the file: {args.action} FILE", file=sys.stderr)
            return 2
        if args.action == "diff":
            return config.diff_command(settings.database_url, path, args.prune)
        return config.apply_command(settings.database_url, path, args.prune)
    if args.command == "serve":
        try:  # before the heavy imports: a busy port is said at once
            check_listeners(settings)
        except ListenerBusy as exc:
            logs.say(f"error: {exc}")
            return 1
    from llmgate import server

    if args.command == "admin-key":
        return server.rotate_admin_key_command(settings)
    if args.command == "migrate":
        return server.migrate(settings.database_url)
    return server.serve(settings)


if __name__ == "__main__":
    sys.exit(main())

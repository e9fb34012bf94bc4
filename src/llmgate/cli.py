"""The ``llmgate`` command: parses arguments and calls in."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llmgate.errors import SettingsError
from llmgate.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgate", description="An API gateway for LLM APIs.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the admin API and the data plane")
    serve.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
    serve.add_argument("--admin-listen", help="host:port of the admin API (127.0.0.1:9180)")
    serve.add_argument("--proxy-listen", help="host:port of the data plane (0.0.0.0:9080)")
    serve.add_argument("--metrics-listen", help="host:port of the metrics (127.0.0.1:9091)")
    serve.add_argument("--database-url", help="store URL (sqlite+aiosqlite:///./llmgate.db)")
    serve.add_argument("--redis-url", help="redis://host:port/db for shared counters and cache")
    serve.add_argument("--reload-interval", help="seconds between store revision polls (0.1)")
    serve.add_argument("--role", choices=("admin", "proxy", "all"), help="which side to run")
    serve.add_argument("--workers", help="data-plane processes sharing the port (1)")

    migrate = commands.add_parser("migrate", help="apply the store's migrations")
    migrate.add_argument("--config", help="a TOML settings file (or LLMGATE_CONFIG)")
    migrate.add_argument("--database-url", help="store URL (LLMGATE_DATABASE_URL)")

    fake = commands.add_parser("fake-upstream", help="run the OpenAI-compatible fake upstream")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8000)
    fake.add_argument("--latency-ms", type=float, default=0.0)
    fake.add_argument("--stream-delay-ms", type=float, default=0.0)
    fake.add_argument(
        "--model", default="gpt-3.5-turbo", help="model named when a request has none"
    )
    fake.add_argument("--status", type=int, help="answer every request with this error (400-599)")
    fake.add_argument("--drop", choices=("before", "mid-stream"), help="drop every connection")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fake-upstream":
        from llmgate.fake_upstream import FakeSettings, run

        if args.status is not None and not 400 <= args.status <= 599:
            print("llmgate: error: --status must be 400-599", file=sys.stderr)
            return 2
        run(
            args.host,
            args.port,
            FakeSettings(
                latency_ms=args.latency_ms,
                stream_delay_ms=args.stream_delay_ms,
                model=args.model,
                status=args.status,
                drop=args.drop,
            ),
        )
        return 0
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(flags)
    except SettingsError as exc:
        print(f"llmgate: error: {exc}", file=sys.stderr)
        return 2
    from llmgate import server

    if args.command == "migrate":
        return server.migrate(settings.database_url)
    return server.serve(settings)


if __name__ == "__main__":
    sys.exit(main())

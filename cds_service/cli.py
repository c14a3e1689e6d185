"""``diazepam-cds`` command line: serve (gunicorn) and operational sub-commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cds_service.config import ConfigError, check_canonical_base, load_settings

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the service under gunicorn")
    p.add_argument("--host", default=None, help="interface to bind (default CDS_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default CDS_PORT or 8080)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (CDS_WORKERS)")


@command("serve")
def serve(args: argparse.Namespace) -> int:
    from cds_service.config import check_startup
    from cds_service.logs import configure_logging
    from cds_service.server import freeze_startup_objects, run_gunicorn

    settings = load_settings()
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
        if v is not None
    }
    settings = settings.with_overrides(**overrides)
    configure_logging(settings.log_level)
    check_startup(settings)  # before anything is opened or bound: unsafe settings stop here
    check_canonical_base(settings)  # production needs the site's own code system base
    check_app(settings)
    # The checked app is garbage now; what stays (modules) is frozen before the fork, so a
    # worker's collections never write to the pages it shares with the master (copy-on-write).
    freeze_startup_objects()
    return run_gunicorn(settings)


def check_app(settings: Any) -> None:
    """Build the app once before gunicorn forks: a bad issuers file, policy or card template
    stops here with one clear line (exit 2) instead of a traceback per worker, and the
    database schema is upgraded once rather than raced by every worker."""
    from cds_service.app import create_app

    app = create_app(settings)
    store = app.extensions.get("cds.store")
    if store is not None:
        store.dispose()  # workers open their own connections; none is shared across fork


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diazepam-cds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    for extra in _EXTRA_PARSERS:
        extra(sub)
    return parser


# Other modules contribute sub-commands: (add_parser function) registered here.
_EXTRA_PARSERS: list[Callable[[Any], None]] = []


def _load_plugins() -> None:
    import importlib

    for module in ("cds_service.cli_tools",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    _load_plugins()
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"diazepam-cds: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The floor: the least a Flask service under our gunicorn can do for a hook call.

It reads and parses the JSON body (as the service must) and answers one fixed card, nothing
else: no auth, no validation, no rules, no store. Run under exactly the gunicorn options the
service uses (``cds_service.server.gunicorn_options``), its throughput and latency are the
physical floor of the stack on this machine, and the service is reported as a ratio of it.

    python -m bench.floor_app --port 8181 --workers 2
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication

from cds_service.config import load_settings
from cds_service.server import gunicorn_options

FIXED_CARD: dict[str, Any] = {
    "cards": [
        {
            "uuid": "7c2a6b58-3f0e-4a4b-9d55-0a8a2d6f1b11",
            "summary": "Floor: a fixed card",
            "indicator": "info",
            "source": {"label": "bench floor"},
        }
    ]
}
_FIXED_BODY = json.dumps(FIXED_CARD, separators=(",", ":"))


def create_floor_app() -> Flask:
    app = Flask("bench.floor")

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> Response:
        body = json.loads(request.get_data())  # the one piece of work every hook call needs
        if not isinstance(body, dict):
            return Response('{"error":"not an object"}', 400, mimetype="application/json")
        return Response(_FIXED_BODY, 200, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status":"ok"}', 200, mimetype="application/json")

    return app


class _FloorGunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_floor_app()


def floor_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """The service's own gunicorn options, bound elsewhere: the comparison is only fair if
    worker class, threads and keep-alive are the same."""
    settings = load_settings().with_overrides(host=host, port=port, workers=workers)
    return gunicorn_options(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare Flask floor app under gunicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    _FloorGunicorn(floor_options(args.host, args.port, args.workers)).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The floors: the least a Flask service under our gunicorn can do for a hook call.

* **bare** (``--kind bare``): reads and parses the JSON body (as the service must) and answers
  one fixed card, nothing else: no auth, no validation, no rules, no store.
* **protocol** (``--kind protocol --jwks FILE --iss ISS``): the same, plus what CDS Hooks 2.0
  makes every service do on every call. It verifies the bearer JWT with PyJWT: ES384
  signature against a JWK Set (the key chosen by the header's ``kid``), ``iss``, ``aud`` = the
  URL called, ``exp``/``iat`` (and the claims CDS Hooks requires present), and a ``jti`` not
  seen before, remembered in an in-process set (enough for a floor: no shared database, so a
  replay sent to the other worker would pass; the service checks the shared store). Still no
  clinical work, no store, no metrics, no request log.

Run under exactly the gunicorn options the service uses (``cds_service.server.gunicorn_options``),
their throughput and latency are the floors of the stack on this machine, and the service is
reported as a ratio of them: with authentication off against the bare floor, with it on
against the protocol floor.

    python -m bench.floor_app --port 8181 --workers 2
    python -m bench.floor_app --port 8182 --kind protocol --jwks jwks.json --iss https://ehr
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
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
_UNAUTHORIZED = '{"error":"authentication required"}'
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


def _floor(name: str, check: Callable[[str | None, str], bool] | None = None) -> Flask:
    """The floor apps share one handler, so the two floors differ only by ``check`` (the
    protocol floor's token verification): the ratio between them is the protocol's cost."""
    app = Flask(name)

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> Response:
        if check is not None and not check(request.headers.get("Authorization"), request.base_url):
            return Response(_UNAUTHORIZED, 401, mimetype="application/json")
        body = json.loads(request.get_data())  # the one piece of work every hook call needs
        if not isinstance(body, dict):
            return Response('{"error":"not an object"}', 400, mimetype="application/json")
        return Response(_FIXED_BODY, 200, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status":"ok"}', 200, mimetype="application/json")

    return app


def create_floor_app() -> Flask:
    return _floor("bench.floor")


class ProtocolCheck:
    """CDS Hooks 2.0 §Trusting CDS Clients, the plain PyJWT way: one parsed key per ``kid``
    (per key, never per token), ``jwt.decode`` for signature and claims, a set for ``jti``."""

    def __init__(self, jwks_path: Path, issuer: str, algorithms: list[str] | None = None):
        jwk_set = jwt.PyJWKSet.from_json(Path(jwks_path).read_text(encoding="utf-8"))
        self.keys = {key.key_id: key for key in jwk_set.keys}
        self.issuer = issuer
        self.algorithms = algorithms or ["ES384"]
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, authorization: str | None, url: str) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        try:
            key = self.keys.get(jwt.get_unverified_header(token).get("kid"))
            if key is None:
                return False
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=url,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError:
            return False
        jti = claims["jti"]
        with self._lock:
            if jti in self._seen:
                return False
            self._seen.add(jti)
        return True


def create_protocol_floor_app(jwks_path: Path, issuer: str) -> Flask:
    return _floor("bench.protocol_floor", ProtocolCheck(jwks_path, issuer))


class _FloorGunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], args: argparse.Namespace):
        self.options = options
        self.args = args
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        if self.args.kind == "protocol":
            return create_protocol_floor_app(self.args.jwks, self.args.iss)
        return create_floor_app()


def floor_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """The service's own gunicorn options, bound elsewhere: the comparison is only fair if
    worker class, threads and keep-alive are the same."""
    settings = load_settings().with_overrides(host=host, port=port, workers=workers)
    return gunicorn_options(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare and protocol Flask floors under gunicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kind", choices=("bare", "protocol"), default="bare")
    parser.add_argument("--jwks", type=Path, help="JWK Set file (protocol floor)")
    parser.add_argument("--iss", help="the one trusted issuer (protocol floor)")
    args = parser.parse_args(argv)
    if args.kind == "protocol" and not (args.jwks and args.iss):
        parser.error("--kind protocol needs --jwks and --iss")
    _FloorGunicorn(floor_options(args.host, args.port, args.workers), args).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Faults: the SQLite database stays locked by another process (a long report, a backup) —
a real lock, taken with a second connection, not a mock.

While it is held, every answer is one the spec declares (503 with a JSON OperationOutcome that
does not leak "database is locked", or a 200 where advice can go out without bookkeeping);
once it is released the service recovers with no restart and nothing half-stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error

from cds_service.app import create_app
from cds_service.security.tokens import mint_token, public_jwks
from cds_service.store import engine as store_engine
from tests.robustness.contract import CHECKS, SPEC, answer_problems
from tests.robustness.hostile import base_request
from tests.support.keys import write_private_key

ISS = "https://ehr.example.org"
SIGN = "diazepam-order-sign"
FEEDBACK = {
    "feedback": [
        {"card": "fault-card", "outcome": "overridden", "outcomeTimestamp": "2026-01-15T10:00:00Z"}
    ]
}


@contextmanager
def locked(database: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a second process would."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=5)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _key(tmp_path: Path) -> Path:
    key = write_private_key(tmp_path / "client.pem")
    (tmp_path / "jwks.json").write_text(json.dumps(public_jwks(key)), encoding="utf-8")
    issuers = {"issuers": [{"iss": ISS, "jwks_file": "jwks.json"}]}
    (tmp_path / "issuers.json").write_text(json.dumps(issuers), encoding="utf-8")
    return key


@pytest.fixture
def fast_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production wait (10 s) would make each locked call a 10 s test step.
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 200)


def _cases(app: Flask, token_for: Any) -> list[tuple[str, Any]]:
    schema = schemathesis.from_path(str(SPEC), app=app)
    base = "http://localhost/cds-services"
    wanted = [
        ("discovery", "/cds-services", "GET", {}, None, base),
        (
            "hook",
            "/cds-services/{id}",
            "POST",
            {"id": SIGN},
            base_request("order-sign"),
            f"{base}/{SIGN}",
        ),
        (
            "feedback",
            "/cds-services/{id}/feedback",
            "POST",
            {"id": SIGN},
            FEEDBACK,
            f"{base}/{SIGN}/feedback",
        ),
    ]
    cases = []
    for name, path, method, params, body, aud in wanted:
        kwargs: dict[str, Any] = {"path_parameters": params} if params else {}
        if body is not None:
            kwargs.update(body=body, media_type="application/json")
        headers = {"Authorization": f"Bearer {token_for(aud)}"} if token_for else {}
        cases.append((name, schema[path][method].make_case(headers=headers, **kwargs)))
    return cases


def _send(cases: list[tuple[str, Any]]) -> dict[str, Any]:
    answers = {}
    for name, case in cases:
        # Status, headers and body as the spec declares them; a 503 is the right answer here.
        response = case.call_and_validate(checks=CHECKS, excluded_checks=(not_a_server_error,))
        problems = answer_problems(
            response.status_code, response.content_type or "", response.get_data()
        )
        assert not problems, (name, problems)
        assert b"locked" not in response.get_data().lower()
        answers[name] = response
    return answers


def _feedback_rows(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


def test_locked_database_without_auth(tmp_path, fast_lock_timeout):
    app = create_app({"auth": "disabled", "data_dir": str(tmp_path / "data")})
    database = tmp_path / "data" / "cds.sqlite3"
    with locked(database):
        answers = _send(_cases(app, None))
        # Advice goes out without its bookkeeping; feedback says "retry" and stores nothing.
        assert answers["hook"].status_code == 200
        assert answers["hook"].get_json()["cards"]
        assert answers["feedback"].status_code == 503
        assert int(answers["feedback"].headers["Retry-After"]) > 0
    assert _feedback_rows(database) == 0
    answers = _send(_cases(app, None))
    assert [r.status_code for r in answers.values()] == [200, 200, 200]
    assert answers["feedback"].get_json()["stored"] == 1
    assert _feedback_rows(database) == 1


def test_locked_database_with_auth(tmp_path, fast_lock_timeout):
    key = _key(tmp_path)
    app = create_app(
        {"data_dir": str(tmp_path / "data"), "trusted_issuers": str(tmp_path / "issuers.json")}
    )
    database = tmp_path / "data" / "cds.sqlite3"

    def token_for(aud: str) -> str:
        return mint_token(key, ISS, aud)

    with locked(database):
        # The replay check (jti) needs a write: no call can be authenticated, so none is
        # refused as unauthenticated either — the client is told to come back.
        answers = _send(_cases(app, token_for))
        assert {name: r.status_code for name, r in answers.items()} == {
            "discovery": 503,
            "hook": 503,
            "feedback": 503,
        }
        assert all(int(r.headers["Retry-After"]) > 0 for r in answers.values())
    answers = _send(_cases(app, token_for))
    assert [r.status_code for r in answers.values()] == [200, 200, 200]
    assert _feedback_rows(database) == 1

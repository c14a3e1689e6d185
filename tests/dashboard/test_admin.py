"""``/admin``: absent without ``CDS_ADMIN_TOKEN``; with it, a Bearer token or the login
form's cookie, 401 with no detail otherwise; never under the hooks' CORS or JWT check; strict
security headers; exports serve the figures' tables; card text cannot inject markup."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from flask import Flask

from cds_service.admin import COOKIE, CSP, new_session, session_valid
from cds_service.dashboard.gallery import card_view
from cds_service.dashboard.page import render_template
from cds_service.dashboard.stats import wilson

TOKEN = "admin-token-for-tests-0123456789"
PATHS = ["/admin", "/admin/dashboard", "/admin/cards", "/admin/export/outcomes.csv"]


@pytest.fixture
def admin_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(admin_token=TOKEN, allowed_origins=("*",))


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", PATHS + ["/admin/login"])
def test_admin_does_not_exist_without_a_token(make_app: Callable[..., Flask], path: str) -> None:
    client = make_app().test_client()
    assert client.get(path).status_code == 404
    assert client.get(path, headers=bearer()).status_code == 404


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sent", [None, "Bearer wrong", "Bearer ", "Basic eDp5", TOKEN])
def test_wrong_or_missing_credentials_are_401_without_detail(
    admin_app: Flask, path: str, sent: str | None
) -> None:
    headers = {"Authorization": sent} if sent is not None else {}
    answer = admin_app.test_client().get(path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    text = answer.get_data(as_text=True)
    assert "Authentication required." in text and "token" not in text.lower()


def test_bearer_token_opens_the_pages_with_security_headers(admin_app: Flask) -> None:
    client = admin_app.test_client()
    page = client.get("/admin/dashboard", headers=bearer())
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP
    assert "script-src" not in CSP and "unsafe-inline" not in CSP.split("style-src")[0]
    assert "frame-ancestors 'none'" in CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "<script" not in html and html.count("<svg") >= 10
    # also the refusals carry them
    assert client.get("/admin/cards").headers["X-Frame-Options"] == "DENY"


def test_admin_is_outside_cors_and_jwt(make_app: Callable[..., Flask]) -> None:
    app = make_app(admin_token=TOKEN, allowed_origins=("*",), auth="required", env="development")
    client = app.test_client()
    origin = {"Origin": "https://evil.example"}
    preflight = client.options(
        "/admin/dashboard", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    page = client.get("/admin/dashboard", headers={**bearer(), **origin})
    assert page.status_code == 200  # the admin token, not a CDS Hooks JWT
    assert "Access-Control-Allow-Origin" not in page.headers
    # the hooks keep their CORS
    assert client.get("/cds-services", headers=origin).headers["Access-Control-Allow-Origin"]


def test_login_form_sets_a_strict_session_cookie(admin_app: Flask) -> None:
    client = admin_app.test_client()
    assert client.get("/admin/login").status_code == 200
    refused = client.post("/admin/login", data={"token": "nope"})
    assert refused.status_code == 401 and COOKIE not in refused.headers.get("Set-Cookie", "")
    done = client.post("/admin/login", data={"token": TOKEN})
    assert done.status_code == 303 and done.headers["Location"].endswith("/admin/dashboard")
    cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http on loopback (development)
    assert TOKEN not in cookie
    assert client.get("/admin/dashboard").status_code == 200
    client.post("/admin/logout")
    assert client.get("/admin/dashboard").status_code == 401


def test_cookie_is_secure_off_loopback(admin_app: Flask) -> None:
    client = admin_app.test_client()
    done = client.post(
        "/admin/login", data={"token": TOKEN}, base_url="http://cds.hospital.example"
    )
    assert "Secure" in done.headers["Set-Cookie"]


def test_sessions_expire_and_die_with_the_token() -> None:
    cookie = new_session(TOKEN)
    assert session_valid(TOKEN, cookie)
    assert not session_valid("another-token", cookie)
    assert not session_valid(TOKEN, cookie, now=time.time() + 9 * 3600)
    assert not session_valid(TOKEN, cookie[:-1] + ("0" if cookie[-1] != "0" else "1"))
    assert not session_valid(TOKEN, "x" * 500)


def test_exports_and_bad_dates(admin_app: Flask) -> None:
    client = admin_app.test_client()
    csv = client.get("/admin/export/outcomes.csv", headers=bearer())
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.get_data(as_text=True).splitlines()[0].startswith("topic,display,issued")
    body = client.get("/admin/export/by-profile.json?since=2026-01-01", headers=bearer())
    assert json.loads(body.get_data(as_text=True))["figure"] == "by-profile"
    assert client.get("/admin/export/nope.csv", headers=bearer()).status_code == 404
    assert client.get("/admin/export/outcomes.xml", headers=bearer()).status_code == 404
    assert client.get("/admin/dashboard?since=yesterday", headers=bearer()).status_code == 400


def test_card_text_cannot_inject_markup() -> None:
    card = {
        "summary": "<img src=x onerror=alert(1)>",
        "indicator": 'warning" onmouseover="x',
        "detail": "**bold** <script>alert(1)</script> [x](javascript:alert(1))",
        "source": {"label": "<b>s</b>", "url": "javascript:alert(1)"},
        "links": [{"label": "l", "url": "data:text/html,<script>"}],
        "suggestions": [
            {
                "label": "<i>x</i>",
                "actions": [
                    {
                        "type": "create",
                        "description": "<u>d</u>",
                        "resource": {"resourceType": "<x>"},
                    }
                ],
            }
        ],
    }
    html = render_template(
        "gallery.html",
        views=[],
        comparison={
            "fixture": "f",
            "description": "",
            "commit": "0" * 40,
            "what": "",
            "profiles": [{"profile": "standard", "before": [card_view(card)], "after": []}],
        },
        standalone=True,
        scenario_count=0,
        profiles=[],
        card_count=0,
    )
    assert "<script" not in html and "<img" not in html
    assert 'href="javascript' not in html and "onmouseover=\"" not in html
    assert "<b>s</b>" not in html and "<i>x</i>" not in html and "data:text/html" not in html
    assert "<strong>bold</strong>" in html and "&lt;script&gt;" in html
    assert 'class="card info"' in html  # an unknown indicator is drawn as info


def test_wilson_interval() -> None:
    low, high = wilson(5, 10)
    assert round(low, 3) == 0.237 and round(high, 3) == 0.763
    assert wilson(0, 0) is None
    low, high = wilson(0, 4)
    assert low == 0.0 and 0.45 < high < 0.52

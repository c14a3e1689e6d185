"""``/admin/*``: the committee's pages (dashboard, card gallery), off unless
``CDS_ADMIN_TOKEN`` is set.

Off means absent: without the token no route exists and every ``/admin`` path is a 404, so a
scanner learns nothing. On, a page needs ``Authorization: Bearer <token>`` (compared in
constant time) or the session cookie the login form sets: HttpOnly, SameSite=Strict, Secure
unless the request came over plain http to a loopback address (local development), lasting
``SESSION_S``. The cookie holds an expiry and a nonce signed with an HMAC keyed by the token,
never the token: it works across workers and hosts and dies when the token changes. A wrong or
missing credential is a 401 that says nothing more.

These pages are for people in a browser, not EHRs: no CDS Hooks JWT (``security.is_open``
lets ``/admin`` through to this check), no CORS (``app.register_cors`` leaves ``/admin`` out)
and headers that let them run nowhere but here: a CSP with no script source at all (the
pages have no JavaScript), ``frame-ancestors 'none'``, ``nosniff``, no referrer, no caching.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import date
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, redirect, request, url_for
from werkzeug.exceptions import NotFound

from cds_service.config import Settings, is_loopback_host

ADMIN_PREFIX = "/admin"
COOKIE = "cds_admin"
SESSION_S = 8 * 3600
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HTML = "text/html; charset=utf-8"
# logging in and out need no session: clearing a cookie gives nobody anything
OPEN_ENDPOINTS = frozenset({"admin.login_form", "admin.login", "admin.logout"})

admin_bp = Blueprint("admin", __name__, url_prefix=ADMIN_PREFIX)


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


# -- credentials --------------------------------------------------------------------------
def _token() -> str:
    return str(current_app.config["CDS_SETTINGS"].admin_token)


def _sign(token: str, payload: str) -> str:
    return hmac.new(
        token.encode(), f"cds-admin-session\x00{payload}".encode(), hashlib.sha256
    ).hexdigest()


def new_session(token: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + SESSION_S)
    payload = f"{expires}.{secrets.token_hex(16)}"
    return f"{payload}.{_sign(token, payload)}"


def session_valid(token: str, cookie: str | None, now: float | None = None) -> bool:
    if not cookie or len(cookie) > 200:
        return False
    payload, _, signature = cookie.rpartition(".")
    expires, _, _nonce = payload.partition(".")
    if not expires.isdigit() or not hmac.compare_digest(signature, _sign(token, payload)):
        return False
    return int(expires) > (now or time.time())


def bearer_valid(token: str, header: str | None) -> bool:
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def _refused() -> Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>401</title>"
        '<p>Authentication required. <a href="' + url_for("admin.login_form") + '">Log in</a></p>'
    )
    return Response(body, 401, {"WWW-Authenticate": "Bearer"}, content_type=HTML)


@admin_bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    token = _token()
    if bearer_valid(token, request.headers.get("Authorization")) or session_valid(
        token, request.cookies.get(COOKIE)
    ):
        return None
    return _refused()


@admin_bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _secure_cookie() -> bool:
    """Secure everywhere but plain-http development on this machine (where a Secure cookie
    would never come back)."""
    return request.is_secure or not is_loopback_host(request.host.rsplit(":", 1)[0])


# -- login --------------------------------------------------------------------------------
def _login_page(status: int = 200) -> Response:
    from cds_service.dashboard.page import render_template

    return Response(render_template("login.html", failed=status == 401), status, content_type=HTML)


@admin_bp.get("/login")
def login_form() -> Response:
    return _login_page()


@admin_bp.post("/login")
def login() -> Response:
    token = _token()
    sent = request.form.get("token", "")
    if not hmac.compare_digest(sent.encode(), token.encode()):
        return _login_page(401)
    response = redirect(url_for("admin.dashboard"), code=303)
    response.set_cookie(
        COOKIE,
        new_session(token),
        max_age=SESSION_S,
        path=ADMIN_PREFIX,
        httponly=True,
        samesite="Strict",
        secure=_secure_cookie(),
    )
    return response


@admin_bp.post("/logout")
def logout() -> Response:
    response = redirect(url_for("admin.login_form"), code=303)
    response.delete_cookie(
        COOKIE, path=ADMIN_PREFIX, httponly=True, samesite="Strict", secure=_secure_cookie()
    )
    return response


# -- pages --------------------------------------------------------------------------------
def _window() -> Any:
    from cds_service.dashboard.query import Window

    def day(name: str) -> date | None:
        text = request.args.get(name, "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            g.cds_admin_bad = name
            return None

    return Window(day("since"), day("until"))


def _bad_request(name: str) -> Response:
    return Response(
        f"{name}: expected a date YYYY-MM-DD", 400, content_type="text/plain; charset=utf-8"
    )


@admin_bp.get("")
def index() -> Response:
    return redirect(url_for("admin.dashboard"), code=302)


@admin_bp.get("/dashboard")
def dashboard() -> Response:
    from cds_service.dashboard.build import dashboard_html

    window = _window()
    if g.get("cds_admin_bad"):
        return _bad_request(g.cds_admin_bad)
    query = {k: v for k, v in (("since", window.since), ("until", window.until)) if v}

    def export_href(figure: Any, fmt: str) -> str:
        return url_for("admin.export", name=f"{figure.id}.{fmt}", **query)

    html = dashboard_html(
        current_app.extensions["cds.store"].engine, window, _labels(), export_href=export_href
    )
    return Response(html, content_type=HTML)


@admin_bp.get("/export/<name>")
def export(name: str) -> Response:
    """One figure's table: ``/admin/export/outcomes.csv`` or ``.json``."""
    from cds_service.dashboard.build import figures
    from cds_service.dashboard.export import FORMATS
    from cds_service.dashboard.export import export as export_text

    figure_id, _, fmt = name.rpartition(".")
    if fmt not in FORMATS:
        raise NotFound()
    window = _window()
    if g.get("cds_admin_bad"):
        return _bad_request(g.cds_admin_bad)
    found, _ = figures(current_app.extensions["cds.store"].engine, window, _labels())
    figure = next((f for f in found if f.id == figure_id), None)
    if figure is None:
        raise NotFound()
    return Response(
        export_text(figure, fmt),
        content_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{figure.id}.{fmt}"'},
    )


@admin_bp.get("/cards")
def cards() -> Response:
    from cds_service.dashboard.gallery import render_gallery

    profile = request.args.get("profile") or None
    if profile not in (None, "standard", "epic"):
        return Response(
            "profile: expected standard or epic", 400, content_type="text/plain; charset=utf-8"
        )
    scenarios, comparison = _gallery()
    return Response(render_gallery(scenarios, comparison, profile=profile), content_type=HTML)


def _labels() -> Any:
    from cds_service.dashboard.build import labels_for

    labels = current_app.extensions.get("cds.admin_labels")
    if labels is None:
        labels = labels_for(current_app.extensions["cds.advisor"].templates)
        current_app.extensions["cds.admin_labels"] = labels
    return labels


def _gallery() -> tuple[Any, Any]:
    """Every scenario through the engine once per worker (about a second), on first view."""
    from cds_service.dashboard.gallery import before_after, run_scenarios

    cached = current_app.extensions.get("cds.admin_gallery")
    if cached is None:
        advisor = current_app.extensions["cds.advisor"]
        settings = current_app.config["CDS_SETTINGS"]
        cached = (run_scenarios(advisor, settings), before_after(advisor, settings))
        current_app.extensions["cds.admin_gallery"] = cached
    return cached


def register_admin(app: Flask, settings: Settings) -> None:
    """Mount ``/admin`` only when a token is configured; otherwise it does not exist."""
    if settings.admin_token:
        app.register_blueprint(admin_bp)

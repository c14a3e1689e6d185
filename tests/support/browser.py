"""Headless Chromium for the dashboard tests: Debian's ``chromium`` package driven by
Playwright for Python through ``executable_path``, never a browser Playwright downloads.

``make test`` installs the package when it is missing and the user is root; otherwise the
browser tests skip saying why, and fail under ``CI=true`` (``tests/support/gate.py``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.gate import require

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None)


def require_browser() -> str:
    """The Chromium executable, or skip (fail in CI) saying what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require("playwright is not installed (pip install -c constraints.txt -e '.[test]')")
    path = chromium_path()
    if path is None:
        require(
            "Debian's chromium is not installed: `make test` installs it when run as root "
            "(apt-get install chromium)"
        )
    return str(path)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = require_browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The WSGI app on a free loopback port (werkzeug, threaded), for the browser to load."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)

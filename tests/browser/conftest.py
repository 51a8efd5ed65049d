"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), a CSRF-on live server."""

import os
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_app, missing
from webapp.extensions import db

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PICTOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)")
    if not (ROOT / "static" / "js" / "htmx.min.js").exists():
        missing("static/js/htmx.min.js is missing: run `make static` (the pages are not live without it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright Python package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def portal(tmp_path):
    """The portal over real HTTP with CSRF on, as in production."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    server = LiveServer(app)
    app.config["SERVER_URL"] = server.url
    yield app, server.url
    server.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def screenshot():
    """screenshot(page, name): a full-page PNG under test-artifacts/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take

"""Fleet operations in a real browser: filter the worker list by GPU, select rows, confirm a bulk pause that
says how many; and the account's alert settings with their delivery log. Screenshots at 1366 and 390 px."""

import re
import shutil
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.webapp.dispatch_factories import make_worker
from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import User, Worker
from webapp.services import accounts, alerts, fleet

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
SHOTS = Path("/tmp/shots/fleet")


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def seed(app) -> list[int]:
    """Eight workers (three RTX 4090s), two tagged; one offline whose alert went to a real local webhook."""
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    app.config["ALERT_WEBHOOK_ALLOW_PRIVATE"] = True
    with app.app_context():
        user = accounts.sign_up(EMAIL, PASSWORD)
        ids = []
        for n, gpu in enumerate(["RTX 4090", "RTX 3090", "RTX 4090", "RTX 3090", "RTX 4090", "RTX 3060",
                                 "RTX 3090", "RTX 3060"]):
            worker_id, _ = make_worker(owner_id=user.id, name=f"rack3-node{n + 1:02d}")
            worker = db.session.get(Worker, worker_id)
            worker.gpu_name, worker.hostname, worker.ram_mb = f"NVIDIA GeForce {gpu}", f"r3n{n + 1:02d}.farm", 65536
            worker.gpus = [{"name": worker.gpu_name, "memory_mb": 24576}] * (2 if n % 3 == 0 else 1)
            ids.append(worker_id)
        db.session.commit()
        fleet.apply(user.id, ids[:2], "tag", tags=["rack-3", "farm-a"])
        alerts.update_settings(db.session.get(User, user.id), on_offline=True, on_error=True, on_suspended=True,
                               daily_digest=True, email_enabled=True, email_to="ops@example.com",
                               webhook_url=f"http://127.0.0.1:{hook.server_port}/pictor")
        offline = db.session.get(Worker, ids[-1])
        offline.last_heartbeat_at = utcnow() - timedelta(minutes=10)
        db.session.commit()
        alerts.detect()
        alerts.deliver_due()  # the webhook succeeds; the e-mail fails: this portal has no SMTP server
    hook.shutdown()
    return ids


def shoot(page, screenshot, name):
    path = screenshot(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def test_select_confirm_and_pause_workers_then_read_the_alert_log(browser, portal, screenshot):
    app, base = portal
    ids = seed(app)
    for width, height in ((1366, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{base}/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{base}/workers")
        page.select_option("#worker-gpu", "NVIDIA GeForce RTX 3060")  # the GPU filter, live
        page.wait_for_function("() => document.querySelectorAll('.worker-name').length === 2")
        page.select_option("#worker-gpu", "")
        page.fill("#worker-q", "4090")  # the search matches GPU models, live as one types
        page.wait_for_function("() => document.querySelectorAll('.worker-name').length === 3")
        assert page.locator("text=All 3 matching the filter").count() == 1
        boxes = page.locator('input[name="ids"][form="bulk-form"]')
        boxes.nth(0).check()
        boxes.nth(1).check()
        assert page.locator("[data-bulk-count]").inner_text() == "2 selected"
        page.select_option("#bulk-action", "pause")
        page.click("#bulk-form button[type=submit]")
        confirm = page.locator(".bulk-confirm-panel")
        confirm.wait_for()
        assert "Pause 2 workers?" in confirm.inner_text()
        shoot(page, screenshot, f"fleet-bulk-confirm-{width}")
        if width == 1366:
            confirm.locator("button[type=submit]").click()
            page.wait_for_selector("text=Paused 2 workers.")
            assert page.locator('.workers-table .badge-paused').count() == 2
            with app.app_context():
                assert sum(db.session.get(Worker, i).paused_at is not None for i in ids) == 2
        page.goto(f"{base}/account#alerts")
        log = page.locator(".delivery-log")
        assert re.search(r"Offline · rack3-node08", log.inner_text())
        assert log.locator(".badge-online").count() == 1 and log.locator(".badge-error").count() == 1
        page.locator("#alerts").scroll_into_view_if_needed()
        shoot(page, screenshot, f"fleet-account-alerts-{width}")
        context.close()

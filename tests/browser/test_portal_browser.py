"""A provider's day in a real browser: sign up, create and pair workers, watch them go live, sort, search,
read the statistics and the task list; screenshots of each page at laptop and phone width."""

import re
from datetime import timedelta

import pytest
import requests

from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import Job, JobType, Task, User, Worker, WorkerDailyStat
from webapp.services import workers as worker_service

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
HARDWARE = {
    "app_version": "1.0.0", "os": "Linux-6.1.0-18-amd64-x86_64-with-glibc2.36", "hostname": "attic",
    "cpu": "AMD Ryzen 9 7950X 16-Core Processor", "ram_mb": 65536, "state": "idle",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564, "driver": "551.86"}],
    "renderers": {"blender": {"version": "3.4.1"}},
    "capabilities": {"job_types": ["render"], "gpu": True, "devices": ["CPU", "CUDA"]},
    "compliance": [{"check": "Firewall", "status": "pass", "reason": "The system firewall is on."},
                   {"check": "OS updates", "status": "warn", "reason": "The last update is 41 days old."}],
}


def api(base: str, path: str, token: str | None = None, **body) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.post(f"{base}/api/v1{path}", json=body, headers=headers, timeout=15)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json() if response.content else {}


def pair_and_hello(base: str, code: str) -> str:
    """What the Worker App does with a pairing code: trade it for a token, then say hello."""
    token = api(base, "/pair", code=code)["token"]
    api(base, "/worker/hello", token, **HARDWARE)
    return token


def create_in_browser(page, base: str, name: str) -> str:
    page.goto(f"{base}/workers/new")
    page.fill("#name", name)
    page.click("button:has-text('Create worker')")
    code = page.locator("#pairing-code").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", code)
    return code


def charts_loaded(page) -> None:
    page.locator("#charts").scroll_into_view_if_needed()
    # A function, not an expression string: the page's CSP has no 'unsafe-eval' for Playwright to eval one.
    page.wait_for_function("() => Array.from(document.querySelectorAll('.chart img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def worker_names(page) -> list[str]:
    return [name.strip() for name in page.locator(".worker-name").all_inner_texts()]


def test_provider_journey(browser, portal, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    laptop = browser.new_context(viewport={"width": 1366, "height": 900})
    page = laptop.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    # The pages keep working under their Content-Security-Policy: nothing is blocked anywhere below.
    csp_violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and csp_violations.append(msg.text))

    # Sign up: the empty state leads to the guide.
    page.goto(f"{base}/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/workers")
    expect(page.locator(".empty-state")).to_contain_text("No workers yet")
    screenshot(page, "01-workers-empty-laptop")

    # New worker: the guide shows a pairing code; pairing through the API is noticed without a reload.
    page.click(".page-actions >> text=New Worker")
    page.fill("#name", "Attic tower")
    screenshot(page, "02-new-worker-laptop")
    page.click("button:has-text('Create worker')")
    code = page.locator("#pairing-code").inner_text()
    countdown = page.locator(".countdown").inner_text()
    expect(page.locator(".countdown")).not_to_have_text(countdown)  # static/js/countdown.js ticks
    page.click("button:has-text('Regenerate code')")  # an htmx swap: the new card's countdown ticks too
    expect(page.locator("#pairing-code")).not_to_have_text(code)
    code = page.locator("#pairing-code").inner_text()
    countdown = page.locator(".countdown").inner_text()
    expect(page.locator(".countdown")).not_to_have_text(countdown)
    page.reload()  # the install commands below the card show the code the page was rendered with
    expect(page.locator("#connection")).to_contain_text("Waiting for the app to connect")
    expect(page.locator("#linux-command")).to_contain_text(f"pictor-worker pair {code} --server {base}")
    screenshot(page, "03-pairing-guide-laptop")
    page.evaluate("window.__sameDocument = true")
    attic_token = pair_and_hello(base, code)
    expect(page.locator("#connection")).to_contain_text("Connected")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "04-pairing-connected-laptop")

    # A second worker goes online while the list is open: the polled table shows it, no reload.
    basement_code = create_in_browser(page, base, "Basement server")
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == EMAIL)).scalar_one()
        for name in ("alpha node", "Zulu node", "Mid node"):
            worker_service.create_worker(user, name)
    page.goto(f"{base}/workers")
    page.evaluate("window.__sameDocument = true")
    basement_badge = page.locator("tr", has_text="Basement server").locator(".badge")
    expect(basement_badge).to_have_text("Pending")
    pair_and_hello(base, basement_code)
    expect(basement_badge).to_have_text("Online")
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator(".count-chip[data-status=online] strong")).to_have_text("2")
    screenshot(page, "05-workers-live-laptop")

    # Sort by name both ways, then search; the query string keeps the state.
    page.click("th a[data-sort=name]")
    expect(page).to_have_url(re.compile(r"sort=name&order=asc"))
    names = worker_names(page)
    assert names == sorted(names, key=str.lower) and len(names) == 5
    page.click("th a[data-sort=name]")
    expect(page).to_have_url(re.compile(r"sort=name(&order=desc)?$"))
    assert worker_names(page) == sorted(names, key=str.lower, reverse=True)
    # "attic" alone is also both paired workers' hostname (search matches hostnames): part of the name.
    page.fill("#worker-q", "attic tow")
    expect(page.locator(".worker-name")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=attic(%20|\+)tow"))
    expect(page.locator(".worker-name")).to_have_text("Attic tower")

    # Some history and a running task for the details page.
    with app.app_context():
        attic = db.session.execute(db.select(Worker).where(Worker.name == "Attic tower")).scalar_one()
        today = utcnow().date()
        for days_ago, completed, failed, cents in ((0, 3, 0, 41), (1, 7, 1, 96), (3, 5, 0, 62), (20, 9, 2, 130)):
            db.session.add(WorkerDailyStat(worker_id=attic.id, day=(today - timedelta(days=days_ago)).isoformat(),
                                           tasks_completed=completed, tasks_failed=failed,
                                           task_earnings_micros=cents * 10_000, mining_earnings_micros=0,
                                           compute_seconds=completed * 300.0))
        attic.earnings_micros = (41 + 96 + 62 + 130) * 10_000  # what the ledger would have credited
        attic.compute_seconds = 24 * 300.0
        job = Job(owner_id=attic.owner_id, name="Forest flythrough", type=JobType.RENDER, spec={},
                  software="Blender · Cycles")
        db.session.add(job)
        db.session.flush()
        db.session.add(Task(job_id=job.id, seq=0, type=JobType.RENDER, params={"frames": [1]}))
        db.session.commit()
        attic_id = attic.id
    claimed = api(base, "/worker/tasks/claim", attic_token)
    api(base, f"/worker/tasks/{claimed['id']}/progress", attic_token, progress=0.25, eta_s=120,
        message="Rendering sample 32/128")
    api(base, "/worker/heartbeat", attic_token, state="busy", message="Rendering Forest flythrough")
    api(base, "/worker/speedtest/result", attic_token, download_mbps=480.5, upload_mbps=96.0)

    # Details: statistics with the three charts over each period.
    page.click("tr:has-text('Attic tower') >> text=Details")
    expect(page).to_have_url(f"{base}/workers/{attic_id}")
    expect(page.locator("#worker-head .badge")).to_have_text("Busy")
    for text in ("NVIDIA GeForce RTX 4090 · 24 GB · driver 551.86", "480.5 Mbit/s", "Firewall", "OS updates"):
        expect(page.locator("main")).to_contain_text(text)
    charts_loaded(page)
    screenshot(page, "06-details-stats-week-laptop")
    page.click(".segmented >> text=Month")
    expect(page).to_have_url(re.compile(r"period=month"))
    charts_loaded(page)
    expect(page.locator(".chart figcaption").nth(1)).to_contain_text("24 completed, 3 failed")
    page.click(".segmented >> text=Year")
    expect(page).to_have_url(re.compile(r"period=year"))
    charts_loaded(page)
    page.fill("#period-from", (today - timedelta(days=10)).isoformat())
    page.fill("#period-to", today.isoformat())
    page.click("button:has-text('Show range')")
    expect(page).to_have_url(re.compile(r"period=custom"))
    charts_loaded(page)
    expect(page.locator(".chart figcaption").nth(1)).to_contain_text("15 completed, 1 failed")
    screenshot(page, "07-details-stats-custom-laptop")

    # Task list: progress moves while the page polls.
    page.click(".tabs >> text=Task List")
    row = page.locator(f"#task-{claimed['id']}")
    expect(row).to_contain_text("Blender 3.4 · Cycles")
    expect(row).to_contain_text("25%")
    page.evaluate("window.__sameDocument = true")
    api(base, f"/worker/tasks/{claimed['id']}/progress", attic_token, progress=0.75, eta_s=40,
        message="Rendering sample 96/128")
    expect(page.locator(f"#task-{claimed['id']}")).to_contain_text("75%")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "08-details-tasks-laptop")

    # Deleting asks first in the page's own dialog (data-confirm, static/js/pages.js: no inline handler
    # under the CSP, no native confirm()); "Cancel" keeps it.
    page.goto(f"{base}/workers/{attic_id}")
    native = []
    page.on("dialog", lambda dialog: (native.append(dialog.message), dialog.dismiss()))
    page.click("#worker-head button:has-text('Delete')")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".confirm-message")).to_contain_text("Attic tower")
    expect(dialog.locator(".confirm-ok")).to_have_text("Delete")
    screenshot(page, "08b-delete-dialog-laptop")
    dialog.locator(".confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#worker-head")).to_be_visible()
    assert native == [] and page.url.endswith(f"/workers/{attic_id}")

    # The same pages at phone width.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=laptop.storage_state(),
                                is_mobile=True, device_scale_factor=1)
    small = phone.new_page()
    small.set_default_timeout(20_000)
    for path, name in ((f"/workers", "09-workers-phone"), (f"/workers/{attic_id}", "10-details-stats-phone"),
                       (f"/workers/{attic_id}?tab=tasks", "11-details-tasks-phone"),
                       (f"/workers/{attic_id}/setup", "12-pairing-guide-phone")):
        small.goto(base + path)
        if "tab" not in path and "setup" not in path and path != "/workers":
            charts_loaded(small)
        # Nothing wider than the screen: a phone never scrolls sideways.
        assert small.evaluate("document.documentElement.scrollWidth") <= 390, path
        screenshot(small, name)
    phone.close()
    laptop.close()
    assert csp_violations == []

"""A new user's first pages in a real browser: the Jobs list on a phone (cards, no sideways scroll), times in
the browser's own zone, and the page's own confirm dialog."""

import re

import pytest

from tests.webapp.dispatch_factories import make_job
from webapp.extensions import db
from webapp.models import Job, JobStatus, User, Worker
from webapp.services import workers as worker_service

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"


def sign_up(page, base):
    page.goto(f"{base}/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/workers")


def add_jobs(app):
    with app.app_context():
        owner = db.session.execute(db.select(User).where(User.email == EMAIL)).scalar_one().id
        for i in range(4):
            make_job(owner, tasks=3, name=f"Forest flythrough with a rather long name v{i}")
        job_id, _ = make_job(owner, tasks=2, name="Product turntable")
        job = db.session.get(Job, job_id)
        job.status = JobStatus.COMPLETED
        job.finished_at = job.created_at
        db.session.commit()


def test_jobs_list_on_a_phone_is_cards_and_never_scrolls_sideways(browser, portal, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=1,
                                timezone_id="Europe/Berlin")
    page = phone.new_page()
    page.set_default_timeout(20_000)
    sign_up(page, base)
    add_jobs(app)
    page.goto(f"{base}/jobs")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(5)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Each job is a card: its cells stack, labelled, inside the screen.
    first = page.locator(".jobs-table tbody tr").first
    box = first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate("getComputedStyle(document.querySelector('.jobs-table td')).display") == "block"
    assert page.evaluate("getComputedStyle(document.querySelector('.jobs-table thead')).position") == "absolute"
    # All status tabs are on the screen (they wrap), none cut off.
    for tab in page.locator("nav.tabs a").all():
        tab_box = tab.bounding_box()
        assert tab_box["x"] >= 0 and tab_box["x"] + tab_box["width"] <= 390, tab.inner_text()
    # A finished job's cost is its cost; a running one's says "so far".
    finished = page.locator(".jobs-table tr", has_text="Product turntable").locator("td[data-label=Cost]")
    expect(finished).not_to_contain_text("so far")
    expect(page.locator(".jobs-table tr", has_text="v0").locator("td[data-label=Cost]")).to_contain_text("so far")
    # The browser's zone (Europe/Berlin here) is what the page uses, after the first visit set the cookie.
    expect(page.locator("footer")).to_contain_text("times are shown in Europe/Berlin")
    screenshot(page, "first-impressions-jobs-phone")
    phone.close()

    laptop = browser.new_context(viewport={"width": 1366, "height": 900}, storage_state=None)
    page = laptop.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{base}/jobs")
    assert page.evaluate("getComputedStyle(document.querySelector('.jobs-table td')).display") == "table-cell"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    screenshot(page, "first-impressions-jobs-laptop")
    laptop.close()


def test_delete_confirms_in_the_pages_own_dialog(browser, portal, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_up(page, base)
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == EMAIL)).scalar_one()
        worker, _code, _token = worker_service.create_worker(user, "Spare box")
        worker_id = worker.id
    page.goto(f"{base}/workers")
    native = []
    page.on("dialog", lambda dialog: (native.append(dialog.message), dialog.dismiss()))
    page.click(f"#worker-{worker_id} button:has-text('Delete')")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".confirm-message")).to_contain_text("Spare box")
    screenshot(page, "first-impressions-delete-dialog")
    dialog.locator(".confirm-ok").click()
    expect(page.locator(f"#worker-{worker_id}")).to_have_count(0)
    assert native == []
    with app.app_context():
        assert db.session.get(Worker, worker_id).deleted_at is not None
    context.close()


def test_new_job_tabs_switch_in_place_and_rename_does_not_move_delete(browser, portal, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_up(page, base)
    page.goto(f"{base}/jobs/new")
    expect(page.locator("#render")).to_be_visible()
    expect(page.locator("#upscale")).to_be_hidden()
    page.evaluate("window.__sameDocument = true")
    page.click("nav[data-tabs] >> text=Upscale images")
    expect(page.locator("#upscale")).to_be_visible()
    expect(page.locator("#render")).to_be_hidden()
    expect(page.locator("nav[data-tabs] a[aria-current=page]")).to_have_text("Upscale images (Real-ESRGAN)")
    expect(page.locator("#upscale .help").first).to_contain_text(re.compile(r"Up to \d+ images"))
    assert page.evaluate("window.__sameDocument") is True and page.url.endswith("type=upscale")
    screenshot(page, "first-impressions-new-job-upscale-tab")
    page.reload()  # the address it left is the same tab, drawn by the server
    expect(page.locator("#upscale")).to_be_visible()
    expect(page.locator("#render")).to_be_hidden()

    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == EMAIL)).scalar_one()
        worker, _code, _token = worker_service.create_worker(user, "Studio PC")
        worker.ram_mb = 16384
        for i in range(3):  # a full list, as in the demo: long GPU names squeeze the narrow columns
            other, _c, _t = worker_service.create_worker(user, f"Backup workstation number {i}")
            other.gpu_name, other.ram_mb = "NVIDIA GeForce RTX 4070 Ti SUPER (2 × 16 GB)", 262144
            other.gpus = [{"name": other.gpu_name}] * 4
            other.earnings_micros = 123_456_789_000
        db.session.commit()
        worker_id = worker.id
    page.goto(f"{base}/workers")
    row = page.locator(f"#worker-{worker_id}")
    ram = row.locator("td[data-label=RAM]")
    expect(ram).to_have_text("16 GB")
    # One line, not "16 / GB": the text's boxes all sit on one line.
    tops = ram.evaluate("td => { const r = document.createRange(); r.selectNodeContents(td);"
                        " return Array.from(r.getClientRects()).map(b => Math.round(b.top)); }")
    assert len(set(tops)) == 1, tops
    delete = row.locator("button:has-text('Delete')")
    before = delete.bounding_box()
    row.locator("summary:has-text('Rename')").click()
    expect(row.locator(".rename-form input[name=name]")).to_be_visible()
    after = delete.bounding_box()
    assert abs(after["x"] - before["x"]) < 1 and abs(after["y"] - before["y"]) < 1, (before, after)
    screenshot(page, "first-impressions-rename-open")
    context.close()

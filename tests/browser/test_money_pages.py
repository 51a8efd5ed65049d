"""Money in the browser (real Chromium, CSRF on): the Earnings page's figures, the per-worker sum and the CSV
agree; a payout requested through the form goes pending -> paid through the operator's CLI; the Spend page
shows a budgeted job's spend and the credit it holds. Screenshots at 1366 and 390 px wide."""

import csv
import io
from datetime import timedelta

import requests

from tests.webapp.dispatch_factories import make_job, make_user, make_worker
from webapp import money
from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import Job, LedgerEntry, LedgerKind, Task, User, Worker
from webapp.services import accounts, credit, ledger

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


def _seed(app):
    """Ada: two workers with settled, pending and reversed rewards; $5 of creator credit and a budgeted job."""
    with app.app_context():
        user = accounts.sign_up(EMAIL, PASSWORD)
        accounts.set_wallet(user, WALLET)
        now = utcnow()
        for name, rewards in (("Attic tower", [12_345_678, 2_500, 3_000_000]), ("Basement server", [7_654_321])):
            worker_id, _ = make_worker(user.id, name=name)
            worker = db.session.get(Worker, worker_id)
            for i, micros in enumerate(rewards):
                held = i == 2  # one reward waits for its spot check
                db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=micros, worker_id=worker_id,
                                           provider_id=user.id, created_at=now - timedelta(days=i + 1),
                                           available_at=None if held else now - timedelta(days=i),
                                           memo=f"Task of job {i}"))
                worker.earnings_micros += micros
                ledger.bump_daily(worker_id, ledger.day_of(now - timedelta(days=i + 1)), task_earnings_micros=micros)
        db.session.commit()
        credit.add_credit(user, "5.00")
        job_id, tasks = make_job(user.id, tasks=3, name="Shot 010")
        job = db.session.get(Job, job_id)
        job.budget_micros = 2_000_000
        credit.reserve_for(job)
        task = db.session.get(Task, tasks[0])
        task.worker_id, task.attempts = make_worker(make_user("bob@example.com"), name="bob's")[0], 1
        ledger.credit_task_reward(task, 1_250_000, now)
        db.session.commit()
        return user.id


def _login(page, base):
    page.goto(f"{base}/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_earnings_payout_and_spend_pages(browser, portal, screenshot):
    from playwright.sync_api import expect

    app, base = portal
    _seed(app)
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    csp_violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and csp_violations.append(msg.text))
    _login(page, base)

    # Workers opens on the money: the same total as the Earnings page.
    expect(page.locator("#earned-total")).to_have_text("$23.002499")
    screenshot(page, "money-00-workers-laptop")
    page.click("nav.nav >> text=Earnings")
    expect(page).to_have_url(f"{base}/earnings")
    expect(page.locator("#earned-total")).to_have_text("$23.002499")  # 12.345678 + 0.0025 + 3 + 7.654321
    expect(page.locator("#earned-pending")).to_have_text("$3.00")
    expect(page.locator("#earned-balance")).to_have_text("$20.002499")
    expect(page.locator("#by-worker-total")).to_have_text("$23.002499")  # the per-worker rows add up
    page.locator("#chart").scroll_into_view_if_needed()
    page.wait_for_function("() => Array.from(document.querySelectorAll('#chart img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    # The CSV the page offers sums to the same total.
    with page.expect_download() as download:
        page.click("text=Export CSV")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    assert sum(money.to_micros(r["amount"]) for r in rows if r["kind"] == "task_reward") == 23_002_499
    screenshot(page, "money-01-earnings-laptop")

    # A payout of $12.50; a second click on the same form (a double submission) makes no second request.
    page.fill("#amount", "12.50")
    page.click("button:has-text('Request payout')")
    expect(page.locator(".flash")).to_contain_text("requested")
    expect(page.locator("#payout-history tbody tr")).to_have_count(1)
    expect(page.locator("#payout-history")).to_contain_text("pending")
    expect(page.locator("#earned-balance")).to_have_text("$7.502499")
    # Too much is a message next to the field, not an error page.
    page.fill("#amount", "100")
    page.click("button:has-text('Request payout')")
    expect(page.locator(".field .error")).to_contain_text("your balance is $7.502499")
    screenshot(page, "money-02-payout-refused-laptop")

    # The operator pays it from the CLI; the page shows it paid with its reference.
    with app.app_context():
        from webapp.models import Payout
        payout_id = db.session.execute(db.select(Payout.id)).scalar_one()
    result = app.test_cli_runner().invoke(args=["payouts", "mark-paid", str(payout_id), "--reference", "0xfeed"])
    assert result.exit_code == 0, result.output
    page.goto(f"{base}/earnings")
    expect(page.locator("#payout-history")).to_contain_text("paid")
    expect(page.locator("#payout-history")).to_contain_text("0xfeed")
    expect(page.locator("#earned-paid")).to_have_text("$12.50")
    # Search the statement.
    page.fill("#statement-q", "payout")
    page.click("button:has-text('Search')")
    expect(page.locator("table.statement tbody tr")).to_have_count(1)
    expect(page.locator("table.statement")).to_contain_text("-$12.50")
    expect(page.locator("table.statement")).to_contain_text("Payout #1 to " + WALLET)
    screenshot(page, "money-03-earnings-paid-laptop")

    # Spend: the credit, the job's budget, spend and hold.
    page.click("nav.nav >> text=Spend")
    expect(page.locator("#credit-balance")).to_have_text("$3.75")
    expect(page.locator("#credit-reserved")).to_have_text("$0.75")
    expect(page.locator("#credit-available")).to_have_text("$3.00")
    row = page.locator("#spend-jobs tr", has_text="Shot 010")
    expect(row).to_contain_text("$2.00")
    expect(row).to_contain_text("$1.25")
    page.fill("#spend-jobs input[name=budget]", "3.00")
    page.click("#spend-jobs button:has-text('Raise budget')")
    expect(page.locator(".flash")).to_contain_text("raised to $3.00")
    expect(page.locator("#credit-available")).to_have_text("$2.00")
    expect(page.locator("table.statement")).to_contain_text("Task cost")
    screenshot(page, "money-04-spend-laptop")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(f"{base}/earnings")
    expect(small.locator("#earned-total")).to_have_text("$23.002499")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(small, "money-05-earnings-phone")
    small.goto(f"{base}/spend")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(small, "money-06-spend-phone")
    assert not csp_violations, csp_violations
    phone.close()
    context.close()

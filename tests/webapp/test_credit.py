"""A creator's credit and job budgets: credit from the CLI, a budget held at submission (402 beyond the
credit), a job that pauses at its budget through the real dispatcher, the unspent part released when it ends."""

import csv
import io
import json
import threading

import pytest

from tests.conftest import create_token
from tests.webapp.dispatch_factories import frame_png, make_job, make_user, make_worker
from webapp import money
from webapp.extensions import db
from webapp.models import Job, JobStatus, LedgerEntry, LedgerKind, Task, TaskOutput, TaskStatus, User, Worker
from webapp.services import credit, dispatch, ledger, statements, storage

from .blend_fixture import FAKE_BLEND

CREATOR = "cleo@example.com"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def submit(client, token, budget=None, frames=4):
    spec = {"type": "render", "name": "Shot 010", "frame_start": 1, "frame_end": frames}
    if budget is not None:
        spec["budget"] = budget
    return client.post("/api/v1/jobs", data={"spec": json.dumps(spec), "blend": (io.BytesIO(FAKE_BLEND), "shot.blend")},
                       content_type="multipart/form-data", headers=bearer(token))


def test_credit_from_the_cli_and_a_budget_held_at_submission(app, client, clock):
    token = create_token(app, CREATOR)
    result = app.test_cli_runner().invoke(args=["credit", CREATOR, "10.00", "--memo", "Invoice 42"])
    assert result.exit_code == 0 and "balance $10.00" in result.output
    assert app.test_cli_runner().invoke(args=["credit", CREATOR, "-3"]).exit_code != 0
    assert app.test_cli_runner().invoke(args=["credit", "nobody@example.com", "3"]).exit_code != 0
    assert client.get("/api/v1/account/credit", headers=bearer(token)).get_json() == {
        "balance": "10.000000", "reserved": "0.000000", "available": "10.000000", "credited": "10.000000",
        "spent": "0.000000"}

    response = submit(client, token, budget="12.00")
    assert response.status_code == 402
    body = response.get_json()
    assert body["error"] == "insufficient_credit" and "$10.00" in body["message"]
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(Job.id))).scalar_one() == 0  # nothing stored

    response = submit(client, token, budget="6.00")
    assert response.status_code == 201 and response.get_json()["budget"] == "6.000000"
    figures = client.get("/api/v1/account/credit", headers=bearer(token)).get_json()
    assert (figures["balance"], figures["reserved"], figures["available"]) == ("10.000000", "6.000000", "4.000000")
    # The second job can't hold what the first one holds.
    assert submit(client, token, budget="4.01").status_code == 402
    assert submit(client, token, budget="4.00").status_code == 201
    assert client.get("/api/v1/account/credit", headers=bearer(token)).get_json()["available"] == "0.000000"
    bad = submit(client, token, budget="lots")
    assert bad.status_code == 400 and "budget" in bad.get_json()["fields"]


def test_without_a_budget_a_job_is_billed_on_account_unless_credit_is_required(app, client, clock):
    token = create_token(app, CREATOR)
    assert submit(client, token).status_code == 201  # CREDIT_REQUIRED off: the old way
    app.config["CREDIT_REQUIRED"] = True
    response = submit(client, token)
    assert response.status_code == 402 and response.get_json()["error"] == "insufficient_credit"
    app.test_cli_runner().invoke(args=["credit", CREATOR, "3"])
    job = submit(client, token).get_json()
    assert job["budget"] == "3.000000"  # it may spend what there is, and holds it
    assert client.get("/api/v1/account/credit", headers=bearer(token)).get_json()["available"] == "0.000000"


def _finish(clock, worker_id, task_id, seconds):
    """Claim, upload a real frame and complete through the dispatcher; returns the reward."""
    task = dispatch.claim_task(db.session.get(Worker, worker_id))
    assert task is not None and task.id == task_id
    name = f"frame_{task.params['frames'][0]:04d}.png"
    stored = storage.put_bytes(frame_png(task_id))
    db.session.flush()
    db.session.add(TaskOutput(task_id=task_id, name=name, sha256=stored.sha256, size=stored.size))
    db.session.commit()
    start = clock.now
    clock.advance(seconds=seconds)
    reward = dispatch.complete_task(db.session.get(Worker, worker_id), task_id,
                                    [{"name": name, "sha256": stored.sha256, "size": stored.size}], seconds)
    clock.set(start)
    return reward


def _page_of(app, user_id, url) -> str:
    """A page as the user sees it (logged in through the session, as flask-login does)."""
    client = app.test_client()
    user = db.session.get(User, user_id)
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
    response = client.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def any_ctx(any_app, clock):
    with any_app.app_context():
        yield any_app


def _budgeted_job(owner_id, budget: str, tasks: int):
    job_id, task_ids = make_job(owner_id, tasks=tasks)
    job = db.session.get(Job, job_id)
    job.budget_micros = money.to_micros(budget)
    credit.reserve_for(job)  # what submission does, in its transaction
    db.session.commit()
    return job_id, task_ids


def test_a_job_stops_at_its_budget_and_its_unspent_part_comes_back(any_ctx, clock):
    creator = make_user(CREATOR)
    credit.add_credit(db.session.get(User, creator), "1.00")
    worker, _ = make_worker(bid="3.60")  # $0.001 per second
    job_id, tasks = _budgeted_job(creator, "0.05", 4)
    assert credit.summary(creator)["available"] == 950_000
    assert _finish(clock, worker, tasks[0], 20) == 20_000
    assert _finish(clock, worker, tasks[1], 20) == 20_000
    # The third task is worth $0.02 but only $0.01 is left: it is paid that, and the job pauses.
    assert _finish(clock, worker, tasks[2], 20) == 10_000
    job = db.session.get(Job, job_id)
    assert ledger.job_cost_micros(job_id) == 50_000 == job.budget_micros
    assert job.paused_at is not None and "reached its budget of $0.05" in job.paused_reason
    # The cheat: the last task is still queued, but no worker gets it.
    assert dispatch.claim_task(db.session.get(Worker, worker)) is None
    assert db.session.get(Task, tasks[3]).status == TaskStatus.QUEUED
    figures = credit.summary(creator)
    assert (figures["balance"], figures["reserved"], figures["available"]) == (950_000, 0, 950_000)
    # The creator is told why, on the job's page.
    page = _page_of(any_ctx, creator, f"/jobs/{job_id}")
    assert 'id="job-paused"' in page and "reached its budget of $0.05" in page and "Raise the budget" in page
    # Raising the budget holds more credit and lets it go on.
    credit.raise_budget(job, "0.10")
    assert credit.summary(creator)["available"] == 900_000
    assert _finish(clock, worker, tasks[3], 20) == 20_000
    # The job ended: what it did not spend ($0.03) is released, exactly once.
    assert db.session.get(Job, job_id).status == JobStatus.COMPLETED
    figures = credit.summary(creator)
    assert (figures["balance"], figures["reserved"], figures["available"], figures["spent"]) == (930_000, 0, 930_000, 70_000)
    dispatch.roll_up_status(db.session.get(Job, job_id))
    db.session.commit()
    assert credit.summary(creator)["available"] == 930_000
    holds = db.session.execute(db.select(LedgerEntry.kind, LedgerEntry.amount_micros).where(
        LedgerEntry.job_id == job_id, LedgerEntry.kind.in_([LedgerKind.RESERVE, LedgerKind.RELEASE]))
        .order_by(LedgerEntry.id)).all()
    assert holds == [(LedgerKind.RESERVE, -50_000), (LedgerKind.RESERVE, -50_000), (LedgerKind.RELEASE, 30_000)]


def test_a_canceled_job_returns_its_whole_unspent_budget(any_ctx, clock):
    creator = make_user(CREATOR)
    credit.add_credit(db.session.get(User, creator), "2.00")
    worker, _ = make_worker(bid="3.60")
    job_id, tasks = _budgeted_job(creator, "1.50", 3)
    assert credit.summary(creator)["available"] == 500_000
    _finish(clock, worker, tasks[0], 100)  # $0.10
    dispatch.cancel(db.session.get(Job, job_id))
    figures = credit.summary(creator)
    assert (figures["balance"], figures["reserved"], figures["available"]) == (1_900_000, 0, 1_900_000)


def test_raising_a_budget_past_the_credit_is_refused_and_others_jobs_are_404(app, client, clock):
    token = create_token(app, CREATOR)
    other = create_token(app, "eve@example.com")
    app.test_cli_runner().invoke(args=["credit", CREATOR, "5"])
    job = submit(client, token, budget="4.00").get_json()
    response = client.post(f"/api/v1/jobs/{job['id']}/budget", json={"budget": "5.01"}, headers=bearer(token))
    assert response.status_code == 402 and response.get_json()["error"] == "insufficient_credit"
    response = client.post(f"/api/v1/jobs/{job['id']}/budget", json={"budget": "3.00"}, headers=bearer(token))
    assert response.status_code == 400  # lowering would un-hold money the job may already be spending
    assert client.post(f"/api/v1/jobs/{job['id']}/budget", json={"budget": "5"}, headers=bearer(other)).status_code == 404
    response = client.post(f"/api/v1/jobs/{job['id']}/budget", json={"budget": "5.00"}, headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["budget"] == "5.000000"
    assert client.get("/api/v1/account/credit", headers=bearer(token)).get_json()["available"] == "0.000000"


def test_spend_statement_and_csv_add_up_to_the_balance(any_ctx, clock):
    creator = make_user(CREATOR)
    credit.add_credit(db.session.get(User, creator), "2.00")
    worker, _ = make_worker(bid="3.60")
    job_id, tasks = _budgeted_job(creator, "1.00", 2)
    _finish(clock, worker, tasks[0], 100)
    _finish(clock, worker, tasks[1], 50)
    rows = statements.statement(statements.creator_rows(creator), per_page=200).items
    assert sum(statements.signed_for_creator(e) for e in rows) == credit.summary(creator)["balance"] == 1_850_000
    text = "".join(statements.csv_lines(statements.creator_rows(creator), creator=True))
    amounts = [money.to_micros(r["amount"]) for r in csv.DictReader(io.StringIO(text))]
    assert sum(amounts) == 1_850_000 and len(amounts) == 3


def test_racing_submissions_never_hold_more_than_the_credit(any_app, clock):
    """Six jobs with a $4 budget each against $10 of credit, submitted at once over HTTP (SQLite and
    PostgreSQL): two are accepted, the rest get 402, and nothing more is held than there is."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.conftest import LiveServer
    token = create_token(any_app, CREATOR)
    any_app.test_cli_runner().invoke(args=["credit", CREATOR, "10"])
    server = LiveServer(any_app)
    barrier = threading.Barrier(6)
    spec = json.dumps({"type": "render", "name": "Race", "frame_start": 1, "frame_end": 1, "budget": "4.00"})

    def send(n):
        # Each its own bytes: six uploads of one blob at once are another race (storage's), not this test's.
        blend = FAKE_BLEND + bytes([n]) * 16
        barrier.wait()
        return requests.post(f"{server.url}/api/v1/jobs", data={"spec": spec}, files={"blend": ("s.blend", blend)},
                             headers=bearer(token), timeout=60).status_code
    try:
        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(pool.map(send, range(6)))
    finally:
        server.stop()
    assert statuses == [201, 201, 402, 402, 402, 402], statuses
    with any_app.app_context():
        user_id = db.session.execute(db.select(User.id).where(User.email == CREATOR)).scalar_one()
        assert credit.summary(user_id)["available"] == 2_000_000


def test_completions_racing_at_a_budget_never_spend_past_it(any_app, clock):
    """Six workers complete $0.02 tasks of a $0.05 job at the same moment: the budget caps them in turn
    (PostgreSQL row locks; SQLite's one writer), so the job spends exactly its budget, never more."""
    with any_app.app_context():
        creator = make_user(CREATOR)
        credit.add_credit(db.session.get(User, creator), "1.00")
        workers = [make_worker(name=f"node-{i}", bid="3.60")[0] for i in range(6)]  # $0.001 per second
        job_id, _ = _budgeted_job(creator, "0.05", 6)
        declared = {}
        for worker_id in workers:
            task = dispatch.claim_task(db.session.get(Worker, worker_id))
            name = f"frame_{task.params['frames'][0]:04d}.png"
            stored = storage.put_bytes(frame_png(task.id))
            db.session.flush()
            db.session.add(TaskOutput(task_id=task.id, name=name, sha256=stored.sha256, size=stored.size))
            db.session.commit()
            declared[worker_id] = (task.id, [{"name": name, "sha256": stored.sha256, "size": stored.size}])
    clock.advance(seconds=20)
    barrier, rewards, errors = threading.Barrier(len(workers)), [], []

    def complete(worker_id):
        task_id, outputs = declared[worker_id]
        with any_app.app_context():
            barrier.wait()
            try:
                rewards.append(dispatch.complete_task(db.session.get(Worker, worker_id), task_id, outputs, 20))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=complete, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(rewards) == [0, 0, 0, 10_000, 20_000, 20_000]
    with any_app.app_context():
        assert ledger.job_cost_micros(job_id) == 50_000
        assert db.session.get(Job, job_id).paused_at is not None

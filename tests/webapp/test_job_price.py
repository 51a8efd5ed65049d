"""A creator raises a waiting job's maximum price to what its price_too_low message names; nobody else can, and no
lower, junk or late price gets through."""

import pytest

from tests.webapp.dispatch_factories import make_job, make_user, make_worker
from webapp.extensions import db
from webapp.models import Job, JobStatus, Task, TaskStatus, Worker
from webapp.services import ServiceError, accounts, dispatch, job_price, queue_status


@pytest.fixture
def sqlite_ctx(app, clock):
    with app.app_context():
        yield app


def waiting(job_id):
    db.session.expire_all()
    return queue_status.waiting_for_jobs([db.session.get(Job, job_id)])[job_id]


def test_raising_to_the_named_price_reaches_the_workers(sqlite_ctx):
    worker, _ = make_worker(make_user("farm@example.com"), bid="0.7912")
    job_id, task_ids = make_job(tasks=2, max_price="0.62")
    running_id, _ = make_job(tasks=1, max_price="5", name="other")
    reason = waiting(job_id)
    assert reason.reason == queue_status.WaitingReason.PRICE_TOO_LOW and reason.price_needed_micros == 800_000
    for bad in ("0.62", "0.61", "-1", "0", "abc", "1e400", "0.1234567", 0.8, True, None, "1000.01"):
        with pytest.raises(ServiceError) as exc:
            job_price.raise_max_price(db.session.get(Job, job_id), bad)
        assert exc.value.status == 400 and exc.value.code == "invalid_max_price"
    assert db.session.get(Job, job_id).max_price_micros == 620_000  # nothing half-written
    assert job_price.raise_max_price(db.session.get(Job, job_id), "0.80") == 800_000
    assert waiting(job_id) is None
    assert dispatch.claim_task(db.session.get(Worker, worker)).id in task_ids
    job = db.session.get(Job, job_id)
    assert job.spec["max_price"] == "0.800000"
    assert {t.max_price_micros for t in job.tasks} == {800_000}
    dispatch.cancel(db.session.get(Job, running_id))
    with pytest.raises(ServiceError) as exc:
        job_price.raise_max_price(db.session.get(Job, running_id), "9")
    assert exc.value.status == 409


def test_running_tasks_keep_the_maximum_they_were_claimed_under(sqlite_ctx):
    worker, _ = make_worker(make_user("farm@example.com"), bid="0.50", slots=None)
    job_id, (first, second) = make_job(tasks=2, max_price="0.60")
    assert dispatch.claim_task(db.session.get(Worker, worker)).id == first
    job_price.raise_max_price(db.session.get(Job, job_id), "0.90")
    prices = dict(db.session.execute(db.select(Task.id, Task.max_price_micros).where(Task.job_id == job_id)).all())
    assert prices == {first: 600_000, second: 900_000}


def test_api_and_page(app, client, auth, clock):
    auth.signup("creator@example.com")
    with app.app_context():
        creator = accounts.user_by_email("creator@example.com")
        token = accounts.create_api_token(creator, "t")[1]
        other_token = accounts.create_api_token(accounts.sign_up("mallory@example.com", "correct horse battery"), "t")[1]
        make_worker(make_user("farm@example.com"), bid="0.80")
        job_id, _ = make_job(owner_id=creator.id, tasks=1, max_price="0.62")
        page_job, _ = make_job(owner_id=creator.id, tasks=1, max_price="0.62", name="by the page")
    url = f"/api/v1/jobs/{job_id}/max_price"
    assert client.post(url, json={"max_price": "0.80"}, headers={"Authorization": f"Bearer {other_token}"}).status_code == 404
    bad = client.post(url, json={"max_price": 0.8}, headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_max_price"
    body = client.post(url, json={"max_price": "0.80"}, headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["max_price"] == "0.800000" and body["waiting"] is None

    page = client.get(f"/jobs/{page_job}").get_data(as_text=True)
    assert f'action="/jobs/{page_job}/max-price"' in page and 'value="0.8"' in page
    response = client.post(f"/jobs/{page_job}/max-price", data={"max_price": "0.70"}, follow_redirects=True)
    assert "Maximum price raised to $0.70" in response.get_data(as_text=True)
    assert 'data-reason="price_too_low"' in response.get_data(as_text=True)  # still short of $0.80: still says so
    response = client.post(f"/jobs/{page_job}/max-price", data={"max_price": "0.5"}, follow_redirects=True)
    assert "must be more than the current $0.70" in response.get_data(as_text=True)
    client.post(f"/jobs/{page_job}/max-price", data={"max_price": "0.80"})
    assert 'id="job-waiting"' not in client.get(f"/jobs/{page_job}").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Job, page_job).status == JobStatus.QUEUED
        assert {t.status for t in db.session.get(Job, page_job).tasks} == {TaskStatus.QUEUED}

"""Progress reports written together (dispatch.ProgressBatch): what a report answers is read at once,
what it writes lands with the batch, and a report waiting in it can't hold, or reach, a task that is
no longer its worker's."""

from datetime import timedelta

import pytest

from tests.webapp.dispatch_factories import auth, make_job, make_worker
from webapp.extensions import db
from webapp.models import Job, Task, TaskStatus
from webapp.services import dispatch

API = "/api/v1"


@pytest.fixture
def batched(any_app):
    any_app.config["PROGRESS_BATCH_SECONDS"] = 3600  # the batch thread never writes during a test
    with any_app.app_context():
        yield any_app


def _claim(client, token) -> int:
    response = client.post(f"{API}/worker/tasks/claim", headers=auth(token))
    assert response.status_code == 200
    return response.get_json()["id"]


def _report(client, token, task_id, progress):
    return client.post(f"{API}/worker/tasks/{task_id}/progress", headers=auth(token), json={"progress": progress})


def _row(task_id):
    db.session.rollback()
    row = db.session.execute(db.select(Task.status, Task.worker_id, Task.progress, Task.lease_expires_at)
                             .where(Task.id == task_id)).one()
    db.session.commit()
    return row


def test_a_report_is_answered_at_once_and_written_with_the_batch(batched, clock):
    client = batched.test_client()
    _, token = make_worker()
    job_id, _ = make_job()
    task_id = _claim(client, token)
    claimed = _row(task_id)
    clock.advance(seconds=20)
    assert _report(client, token, task_id, 0.5).get_json()["keep_running"] is True
    batch = dispatch.ProgressBatch.of(batched)
    assert batch.pending() == 1 and _row(task_id).progress == 0.0  # not written yet
    assert batch.flush() == 1
    written = _row(task_id)
    assert written.progress == 0.5 and written.lease_expires_at == clock.now + timedelta(seconds=60) > claimed.lease_expires_at
    # Stopping needs no batch: the answer is read from the task as it is now.
    dispatch.cancel_job(db.session.get(Job, job_id))
    response = _report(client, token, task_id, 0.7)
    assert response.status_code == 409 and response.get_json()["keep_running"] is False
    assert batch.pending() == 0


def test_a_report_waiting_in_the_batch_reaches_no_task_its_worker_lost(batched, clock):
    """The lease lapses and the task goes to another worker while the first one's report waits: the
    batch writes nothing to the new holder's attempt (its progress and lease stay its own)."""
    client = batched.test_client()
    _, first = make_worker(name="first")
    _, second = make_worker(name="second")
    make_job()
    task_id = _claim(client, first)
    assert _report(client, first, task_id, 0.9).status_code == 200  # waits in the batch
    clock.advance(seconds=61)
    assert dispatch.reap_expired_leases() == 1
    assert _claim(client, second) == task_id
    taken = _row(task_id)
    assert dispatch.ProgressBatch.of(batched).flush() == 1
    assert _row(task_id) == taken and taken.progress == 0.0 and taken.status == TaskStatus.RUNNING


def test_pinging_the_same_progress_through_the_batch_holds_no_task(batched, clock):
    """The stall rule holds for batched reports: the same progress, reported past STALL_SECONDS, no longer
    extends the lease."""
    client = batched.test_client()
    _, token = make_worker()
    make_job()
    task_id = _claim(client, token)
    batch = dispatch.ProgressBatch.of(batched)
    _report(client, token, task_id, 0.3)
    batch.flush()
    stall = batched.config["STALL_SECONDS"]
    clock.advance(seconds=stall - 30)
    _report(client, token, task_id, 0.3)
    batch.flush()
    alive = _row(task_id).lease_expires_at
    assert alive == clock.now + timedelta(seconds=60)  # within STALL_SECONDS of the last move: extended
    clock.advance(seconds=50)
    _report(client, token, task_id, 0.3)
    batch.flush()
    assert _row(task_id).lease_expires_at == alive  # stalled too long: the ping bought nothing

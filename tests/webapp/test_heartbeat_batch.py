"""Heartbeats written together (presence.HeartbeatBatch), SQLite's writers queued (database.WriterQueue),
and the rule that a write takes the write lock first: what keeps a 10,000-worker network's presence cheap
without losing what it says."""

import multiprocessing
import threading
import time
from datetime import timedelta

import pytest

from tests.conftest import make_app
from tests.webapp.dispatch_factories import auth, make_worker
from webapp.database import WriteOutsideWriteTransaction, begin_read_transaction, begin_write_transaction
from webapp.extensions import db
from webapp.models import PresenceInterval, Worker, WorkerState
from webapp.services import fleet, presence

API = "/api/v1"


# Each read ends its transaction: a test's session must not hold the write lock while a batch writes.

def _intervals(worker_id):
    rows = db.session.execute(db.select(PresenceInterval.started_at, PresenceInterval.ended_at)
                              .where(PresenceInterval.worker_id == worker_id)
                              .order_by(PresenceInterval.started_at)).all()
    db.session.commit()
    return [tuple(row) for row in rows]


def _seen(worker_id):
    """(state, message, last heartbeat, name, compute seconds) as the database has them now."""
    db.session.rollback()
    row = db.session.execute(db.select(Worker.state, Worker.state_message, Worker.last_heartbeat_at, Worker.name,
                                       Worker.compute_seconds, Worker.paused_at).where(Worker.id == worker_id)).one()
    db.session.commit()
    return row


def test_repeated_heartbeats_wait_in_the_batch_and_a_change_is_written_at_once(any_app, clock):
    app = any_app
    app.config["HEARTBEAT_BATCH_SECONDS"] = 3600  # the batch thread never flushes during the test
    client = app.test_client()

    def beat(token, state="idle", message=None):
        response = client.post(f"{API}/worker/heartbeat", headers=auth(token), json={"state": state, "message": message})
        assert response.status_code == 200

    with app.app_context():
        a, token_a = make_worker(name="a", seen=False)
        b, token_b = make_worker(name="b", seen=False)
        batch = presence.HeartbeatBatch.of(app)
        start = clock.now
        beat(token_a)
        beat(token_b)  # a worker's first "idle" is news: written at once
        assert batch.pending() == 0 and _seen(a).last_heartbeat_at == start

        clock.advance(seconds=10)
        beat(token_a)
        beat(token_b)
        clock.advance(seconds=5)
        beat(token_a)  # the same again: one entry per worker however often it beats
        assert batch.pending() == 2
        assert _seen(a).last_heartbeat_at == start  # nothing written yet

        assert batch.flush() == 2
        assert _seen(a).last_heartbeat_at == start + timedelta(seconds=15)
        assert _seen(b).last_heartbeat_at == start + timedelta(seconds=10)
        assert _intervals(a) == [(start, start + timedelta(seconds=15))]  # one stretch: no online time lost

        clock.advance(seconds=5)
        beat(token_b)  # pending again ...
        beat(token_b, "busy", "rendering")  # ... and a change takes it along, written at once
        worker = _seen(b)
        assert (worker.state, worker.state_message, worker.last_heartbeat_at) == (
            WorkerState.BUSY, "rendering", start + timedelta(seconds=20))
        assert batch.pending() == 0 and batch.flush() == 0


def test_an_older_batch_never_overwrites_a_newer_heartbeat(any_app, clock):
    """Two portal processes: one holds a worker's "idle" in its batch while the other writes "busy" at once."""
    app = any_app
    with app.app_context():
        worker_id, _ = make_worker(seen=False)
        start = clock.now
        slow = presence.HeartbeatBatch(app)
        slow._merge(worker_id, presence.Seen(start, start, WorkerState.IDLE, None))
        presence.HeartbeatBatch(app).write_now(worker_id, presence.Seen(
            start + timedelta(seconds=1), start + timedelta(seconds=1), WorkerState.BUSY, "rendering"))
        slow.flush()
        worker = _seen(worker_id)
        assert (worker.state, worker.last_heartbeat_at) == (WorkerState.BUSY, start + timedelta(seconds=1))
        # Nor does it stretch the open interval back: at most a batch's seconds of online time go uncounted.
        assert _intervals(worker_id) == [(start + timedelta(seconds=1), start + timedelta(seconds=1))]


def test_a_late_heartbeat_in_the_batch_moves_nothing_back(any_app, clock):
    app = any_app
    with app.app_context():
        worker_id, _ = make_worker(seen=False)
        batch = presence.HeartbeatBatch(app)  # not flushing on its own: seconds are read but no thread runs
        start = clock.now
        batch._merge(worker_id, presence.Seen(start + timedelta(seconds=20), start + timedelta(seconds=20),
                                              WorkerState.BUSY, None))
        batch._merge(worker_id, presence.Seen(start, start, WorkerState.IDLE, None))  # arrived late
        batch.flush()
        worker = _seen(worker_id)
        assert (worker.state, worker.last_heartbeat_at) == (WorkerState.BUSY, start + timedelta(seconds=20))
        assert _intervals(worker_id) == [(start, start + timedelta(seconds=20))]


def test_the_batch_extends_an_open_interval_and_opens_one_after_an_outage(any_app, clock):
    app = any_app
    with app.app_context():
        worker_id, _ = make_worker()
        start = clock.now
        presence.record_heartbeat(db.session.get(Worker, worker_id), "idle", now=start)
        batch = presence.HeartbeatBatch(app)
        batch._merge(worker_id, presence.Seen(start + timedelta(seconds=30), start + timedelta(seconds=30),
                                              WorkerState.IDLE, None))
        batch.flush()
        outage = start + timedelta(seconds=30 + 91)
        batch._merge(worker_id, presence.Seen(outage, outage + timedelta(seconds=5), WorkerState.IDLE, None))
        batch.flush()
        assert _intervals(worker_id) == [(start, start + timedelta(seconds=30)), (outage, outage + timedelta(seconds=5))]


def test_the_heartbeat_answer_carries_the_portal_pause_before_the_batch_is_written(tmp_path):
    app = make_app(tmp_path, HEARTBEAT_BATCH_SECONDS=3600)
    client = app.test_client()
    with app.app_context():
        worker_id, token = make_worker()
        assert client.post(f"{API}/worker/heartbeat", headers=auth(token), json={}).json["paused"] is False
        fleet.apply(db.session.get(Worker, worker_id).owner_id, [worker_id], fleet.BulkAction.PAUSE)
    assert client.post(f"{API}/worker/heartbeat", headers=auth(token), json={}).json["paused"] is True


def test_one_bad_heartbeat_does_not_hold_up_the_others(any_app, clock):
    """A worker whose row is gone (its heartbeat's interval can't reference it) is dropped; the rest land."""
    app = any_app
    with app.app_context():
        worker_id, _ = make_worker(seen=False)
        batch = presence.HeartbeatBatch(app)
        seen = presence.Seen(clock.now, clock.now, WorkerState.IDLE, None)
        batch._merge(worker_id, seen)
        batch._merge(987_654, seen)  # no such worker: the foreign key refuses its interval
        assert batch.flush() == 1
        assert _seen(worker_id).last_heartbeat_at == clock.now
        assert batch.pending() == 0


def test_the_batch_thread_writes_heartbeats_within_its_interval(tmp_path):
    app = make_app(tmp_path, HEARTBEAT_BATCH_SECONDS=0.2)
    client = app.test_client()
    with app.app_context():
        worker_id, token = make_worker(seen=False)
    client.post(f"{API}/worker/heartbeat", headers=auth(token), json={"state": "idle"})
    deadline = time.monotonic() + 10
    with app.app_context():
        while _seen(worker_id).last_heartbeat_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _seen(worker_id).last_heartbeat_at is not None
        assert len(_intervals(worker_id)) == 1


def test_a_write_in_a_read_transaction_is_refused_in_tests(app):
    """On SQLite such a write fails only when another writer committed meanwhile ("database is locked"):
    the test suite refuses it always, so no code path can depend on luck."""
    with app.app_context():
        worker_id, _ = make_worker()
        begin_read_transaction(db.session)
        with pytest.raises(WriteOutsideWriteTransaction):
            db.session.execute(db.update(Worker).where(Worker.id == worker_id).values(name="renamed"))
        db.session.rollback()
        begin_write_transaction(db.session)
        db.session.execute(db.update(Worker).where(Worker.id == worker_id).values(name="renamed"))
        db.session.commit()
        assert _seen(worker_id).name == "renamed"


def test_writers_of_two_processes_take_turns_without_database_is_locked(tmp_path):
    """A writer in another process holds its turn; this process's writers queue behind it and all land."""
    app = make_app(tmp_path)
    with app.app_context():
        worker_id, _ = make_worker()
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_other_process_writer, args=(str(tmp_path / "test.sqlite3"), held, release))
    other.start()
    try:
        assert held.wait(60), "the other process never took its turn"
        done = []

        def write(i):
            with app.app_context():
                begin_write_transaction(db.session)
                db.session.execute(db.update(Worker).where(Worker.id == worker_id)
                                   .values(compute_seconds=Worker.compute_seconds + 1))
                db.session.commit()
                done.append(i)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        assert done == []  # all eight wait for the other process's turn
        release.set()
        for thread in threads:
            thread.join(30)
        assert sorted(done) == list(range(8))
    finally:
        release.set()
        other.join(30)
    assert other.exitcode == 0
    with app.app_context():
        worker = _seen(worker_id)
        assert (worker.name, worker.compute_seconds) == ("held", 8.0)


def _other_process_writer(path, held, release):
    from webapp import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
                      "SCHEDULER_ENABLED": False, "STORAGE_DIR": path + "-storage"})
    with app.app_context():
        begin_write_transaction(db.session)
        db.session.execute(db.update(Worker).values(name="held"))
        held.set()
        release.wait(30)
        db.session.commit()

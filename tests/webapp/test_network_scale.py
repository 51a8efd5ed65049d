"""A large network on one portal: the intervals it advises, and hot worker calls that don't queue for
SQLite's one writer (bench/dispatch.py and bench/presence.py measure the figures; these check the rules)."""

import sqlite3
import threading
import time
from datetime import timedelta

import pytest

from tests.conftest import make_app
from tests.webapp.dispatch_factories import auth, make_job, make_worker
from webapp.extensions import db
from webapp.models import PresenceInterval, Worker, WorkerState
from webapp.services import dispatch, presence

API = "/api/v1"


@pytest.mark.parametrize("online, heartbeat, poll", [
    (0, 15, 1), (1, 15, 1), (49, 15, 1), (120, 15, 3),   # a small network asks every second or so
    (3_000, 15, 60), (6_000, 20, 120),
    (10_000, 30, 120), (1_000_000, 30, 120),             # never past three heartbeats per offline window
])
def test_advised_intervals_stretch_with_the_network(app, online, heartbeat, poll):
    with app.app_context():
        advice = presence.advised_intervals(online)
    assert (advice.heartbeat_seconds, advice.poll_seconds) == (heartbeat, poll)
    # What the network sends in all stays within the configured budgets once the floors are left behind.
    assert online / advice.poll_seconds <= max(50, online / 1)
    assert online / advice.heartbeat_seconds <= max(300, online / 30)


def test_hello_heartbeat_and_an_empty_claim_carry_the_advice_for_this_network(tmp_path):
    app = make_app(tmp_path, IDLE_CLAIMS_PER_SECOND=2, HEARTBEATS_PER_SECOND=0.5)
    client = app.test_client()
    with app.app_context():
        workers = [make_worker(name=f"node-{i}") for i in range(10)]
        for worker_id, _ in workers:
            presence.record_heartbeat(db.session.get(Worker, worker_id), WorkerState.IDLE)
    token = workers[0][1]
    hello = client.post(f"{API}/worker/hello", headers=auth(token), json={"capabilities": {"job_types": ["render"]}})
    beat = client.post(f"{API}/worker/heartbeat", headers=auth(token), json={"state": "idle"})
    idle = client.post(f"{API}/worker/tasks/claim", headers=auth(token))
    # 10 online workers: 10 / 2 per second -> every 5 s; 10 / 0.5 per second -> 20 s between heartbeats.
    assert (hello.json["poll_seconds"], hello.json["heartbeat_seconds"]) == (5, 20)
    assert beat.json["heartbeat_seconds"] == 20
    assert idle.status_code == 204 and idle.headers["Retry-After"] == "5"


def test_the_network_size_counts_online_workers_only(app, clock):
    with app.app_context():
        online = [make_worker(name=f"on-{i}")[0] for i in range(3)]
        make_worker(name="never-seen", seen=False)
        for worker_id in online:
            presence.record_heartbeat(db.session.get(Worker, worker_id), WorkerState.IDLE)
        gone = db.session.get(Worker, online[2])
        gone.deleted_at = gone.last_heartbeat_at
        db.session.commit()
        assert presence.network_size() == 2


def test_a_heartbeat_extends_the_open_interval_and_opens_one_after_an_outage(app, clock):
    with app.app_context():
        worker_id, _ = make_worker()
        start = clock.now
        presence.heartbeat(worker_id, "idle", now=start)
        presence.heartbeat(worker_id, "busy", "rendering", now=start + timedelta(seconds=30))
        presence.heartbeat(worker_id, "idle", now=start + timedelta(seconds=29))  # a late one never shrinks it
        after_outage = start + timedelta(seconds=30 + 91)
        presence.heartbeat(worker_id, "idle", now=after_outage)
        intervals = db.session.execute(db.select(PresenceInterval.started_at, PresenceInterval.ended_at)
                                       .where(PresenceInterval.worker_id == worker_id)
                                       .order_by(PresenceInterval.started_at)).all()
        assert intervals == [(start, start + timedelta(seconds=30)), (after_outage, after_outage)]
        worker = db.session.get(Worker, worker_id)
        assert (worker.state, worker.last_heartbeat_at) == (WorkerState.IDLE, after_outage)


def test_a_deleted_workers_heartbeat_is_refused(app, client):
    with app.app_context():
        worker_id, token = make_worker()
        worker = db.session.get(Worker, worker_id)
        worker.deleted_at = worker.created_at
        db.session.commit()
    response = client.post(f"{API}/worker/heartbeat", headers=auth(token), json={"state": "idle"})
    assert response.status_code == 401


def _holding_the_write_lock(path):
    """Another writer holding SQLite's write lock (as a long complete or a migration would)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_an_idle_claim_and_the_token_check_never_wait_for_the_writer(tmp_path):
    """With nothing queued for it, a claim answers 204 while another connection holds the write lock; a
    claim that finds work waits for the lock (it must: claiming writes)."""
    app = make_app(tmp_path)
    client = app.test_client()
    with app.app_context():
        _, idle_token = make_worker(name="idle", job_types=["upscale"])
        _, busy_token = make_worker(name="busy")
        make_job(tasks=1)  # a render task: only the second worker may take it
    path = str(tmp_path / "test.sqlite3")
    writer = _holding_the_write_lock(path)
    answers = {}

    def ask(name, token):
        with app.app_context():
            answers[name] = app.test_client().post(f"{API}/worker/tasks/claim", headers=auth(token)).status_code

    try:
        idle = threading.Thread(target=ask, args=("idle", idle_token))
        busy = threading.Thread(target=ask, args=("busy", busy_token))
        idle.start()
        busy.start()
        idle.join(5)
        assert answers.get("idle") == 204  # answered while the lock is held
        time.sleep(0.3)
        assert "busy" not in answers  # still waiting for the writer
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    busy.join(30)
    assert answers["busy"] == 200


def test_each_call_of_a_task_cycle_takes_the_writers_turn_once_and_idle_calls_never(tmp_path, clock):
    """Reads around a write (the worker's row, the claimed task's payload after the commit, the output
    files' check) never hold SQLite's one writer: per call, one BEGIN IMMEDIATE, and none for a repeated
    (batched) heartbeat, a (batched) progress report or an idle claim; a batch of reports takes one."""
    from sqlalchemy import event

    from tests.webapp.dispatch_factories import frame_png, sha
    app = make_app(tmp_path, HEARTBEAT_BATCH_SECONDS=3600, PROGRESS_BATCH_SECONDS=3600)
    client = app.test_client()
    with app.app_context():
        _, token = make_worker(job_types=["render"])
        _, idle_token = make_worker(name="idle", job_types=["upscale"])
        make_job(tasks=1)
        engine = db.engine
    turns = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: turns.append(1) if statement == "BEGIN IMMEDIATE" else None)

    def call(method, path, token=token, **kwargs):
        turns.clear()
        response = getattr(client, method)(f"{API}{path}", headers={**auth(token), **kwargs.pop("headers", {})}, **kwargs)
        return response, len(turns)

    (news, news_turns) = call("post", "/worker/heartbeat", json={"state": "idle"})  # a new state: written at once
    (beat, beat_turns) = call("post", "/worker/heartbeat", json={"state": "idle"})  # the same: batched
    (idle, idle_turns) = call("post", "/worker/tasks/claim", token=idle_token)
    assert (news.status_code, news_turns, beat.status_code, beat_turns) == (200, 1, 200, 0)
    assert (idle.status_code, idle_turns) == (204, 0)

    (claimed, claim_turns) = call("post", "/worker/tasks/claim")
    task_id = claimed.json["id"]
    (progress, progress_turns) = call("post", f"/worker/tasks/{task_id}/progress", json={"progress": 0.5})
    frame = frame_png()
    (put, put_turns) = call("put", f"/worker/tasks/{task_id}/outputs/frame_0001.png", data=frame,
                            headers={"X-Content-SHA256": sha(frame)}, content_type="image/png")
    (done, done_turns) = call("post", f"/worker/tasks/{task_id}/complete", json={
        "outputs": [{"name": "frame_0001.png", "sha256": sha(frame), "size": len(frame)}], "compute_seconds": 1})
    assert [r.status_code for r in (claimed, progress, put, done)] == [200, 200, 201, 200]
    assert (claim_turns, progress_turns, put_turns, done_turns) == (1, 0, 1, 1)
    turns.clear()
    with app.app_context():
        assert dispatch.ProgressBatch.of(app).flush() == 1
    assert len(turns) == 1


@pytest.mark.postgres
def test_a_job_of_thousands_of_tasks_refreshes_postgresqls_statistics_so_claims_use_the_queue_order(tmp_path, postgres_url):
    """Without it the planner, still believing the table empty, sorted every queued task for each claim."""
    import io

    from webapp.services import accounts, jobs
    app = make_app(tmp_path, postgres_url)
    with app.app_context():
        try:
            owner = accounts.sign_up("big-job@example.com", "correct horse battery")
            jobs.submit_render_job(owner, {"type": "render", "name": "big", "frame_start": 1, "frame_end": 1500,
                                           "chunk": 1}, io.BytesIO(b"BLENDER-v300" + b"\0" * 200), "big.blend")
            estimated = db.session.execute(db.text("SELECT reltuples FROM pg_class WHERE relname = 'tasks'")).scalar()
            assert estimated >= 1500
        finally:
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


def _plan(statement, params: dict) -> list[str]:
    """SQLite's plan of a built statement: one line per step."""
    state = statement.compile(dialect=db.engine.dialect).construct_expanded_state(params)  # IN (...) as binds
    return [row[-1] for row in db.session.connection().exec_driver_sql(
        f"EXPLAIN QUERY PLAN {state.statement}", tuple(state.parameters[name] for name in state.positiontup))]


def test_a_completions_verified_peers_are_read_in_finishing_order_not_sorted_from_the_whole_job(app):
    """Sorting all of a job's completed tasks on each completion made a 2,000-task job quadratic: the
    last completions each read 2,000 rows and their ledger entries (bench/dispatch.py lost a third)."""
    from webapp.services import market
    with app.app_context():
        plan = _plan(market._peers_statement("sqlite"), {"job_id": 1, "type": "render", "task_id": 1, "worker_id": 1})
    assert any("ix_tasks_job_status_finished" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_a_budgeted_jobs_cost_is_summed_from_an_index_alone(app):
    """Each completion of a job with a budget sums its cost under the write lock: reading every entry's
    row took 3.9 ms at 963 entries (0.24 ms from the index), and grows with the job."""
    from webapp.services import ledger
    with app.app_context():
        plan = _plan(ledger._JOB_COST, {"job_id": 1})
    assert plan == ["SEARCH ledger_entries USING COVERING INDEX ix_ledger_job_cost (job_id=? AND kind=?)"], plan

"""Claiming under contention, on SQLite and PostgreSQL: 50 claimers, thousands of tasks, no task twice."""

import threading
import time
from collections import Counter

import pytest
import requests

from tests.conftest import LiveServer, make_app
from tests.webapp.dispatch_factories import auth, make_job, make_tasks_bulk, make_user
from webapp.clock import utcnow
from webapp.security import new_token, token_hash
from webapp.extensions import db
from webapp.models import Task, TaskEvent, TaskEventKind, TaskStatus, Worker
from webapp.services import dispatch, presence

CLAIMERS = 50


def _setup(app, tasks: int) -> list[list[tuple[int, str]]]:
    """CLAIMERS groups of workers, more workers than tasks in all: a worker runs one task at a time (one
    slot), so each claimer thread drives a group of them, the way many workers poll one portal."""
    per_claimer = 3 * tasks // CLAIMERS  # ample: a fast thread must not run out before the queue does
    with app.app_context():
        owner = make_user()
        rows = []
        for i in range(CLAIMERS * per_claimer):
            token = new_token("pwk")
            rows.append((Worker(owner_id=owner, name=f"racer-{i}", token_hash=token_hash(token), paired_at=utcnow(),
                                capabilities={"job_types": ["render"], "gpu": True, "devices": ["CPU"]},
                                gpus=[], renderers={}, compliance=[], mining_config={}, bench_details={},
                                bid_micros=500_000, last_heartbeat_at=utcnow(), earnings_micros=0,
                                compute_seconds=0.0), token))
        db.session.add_all([worker for worker, _ in rows])
        db.session.commit()
        workers = [(worker.id, token) for worker, token in rows]
        job_id, _ = make_job(tasks=0, input_bytes=None)
        make_tasks_bulk(job_id, tasks)
        return [workers[i::CLAIMERS] for i in range(CLAIMERS)]


def _run(threads) -> float:
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return time.monotonic() - started


def _check_database(app, claims: dict[int, list[int]], total: int) -> int:
    """Every task running on the worker whose claimer got it, with exactly one claim event."""
    with app.app_context():
        rows = dict(db.session.execute(
            db.select(Task.id, Task.worker_id).where(Task.status == TaskStatus.RUNNING)).all())
        assert len(rows) == total
        for worker_id, task_ids in claims.items():
            assert all(rows[task_id] == worker_id for task_id in task_ids)
        per_task = Counter(db.session.execute(
            db.select(TaskEvent.task_id).where(TaskEvent.kind == TaskEventKind.CLAIMED)).scalars())
        assert len(per_task) == total and set(per_task.values()) == {1}
        return db.session.execute(db.select(db.func.count()).select_from(Task)
                                  .where(Task.status == TaskStatus.QUEUED)).scalar_one()


def _report(capsys, what: str, backend: str, claimed: list[int], seconds: float) -> None:
    duplicates = len(claimed) - len(set(claimed))
    with capsys.disabled():
        print(f"\n[claim race] {what} on {backend}: {CLAIMERS} claimers, {len(claimed)} claims, "
              f"{duplicates} duplicates, {seconds:.1f} s ({len(claimed) / seconds:.0f} claims/s)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def race_app(request, tmp_path):
    """any_app with a connection for every claimer thread: with the default pool of 15, 35 threads would
    wait for a connection while 15 claim, and time out at 30 s on a slow machine: a pool test, not a race."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    app = make_app(tmp_path, url, SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "pool_size": CLAIMERS,
                                                             "max_overflow": 5})
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_concurrent_claims_through_the_service_never_share_a_task(race_app, capsys):
    any_app = race_app
    total = 2000
    groups = _setup(any_app, total)
    claims: dict[int, list[int]] = {worker_id: [] for group in groups for worker_id, _ in group}
    errors = []
    barrier = threading.Barrier(CLAIMERS)

    def claimer(group):
        try:
            with any_app.app_context():
                barrier.wait()
                for worker_id, _ in group:
                    task = dispatch.claim_task(db.session.get(Worker, worker_id))
                    if task is None:
                        break
                    claims[worker_id].append(task.id)
                db.session.remove()
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(repr(exc))

    seconds = _run([threading.Thread(target=claimer, args=(group,)) for group in groups])
    claimed = [task_id for ids in claims.values() for task_id in ids]
    _report(capsys, "service", any_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0], claimed, seconds)
    assert errors == []
    assert len(claimed) == total and len(set(claimed)) == total
    assert _check_database(any_app, claims, total) == 0
    assert sum(1 for ids in claims.values() if ids) > 1  # the claimers really competed


def test_concurrent_claims_over_http_never_share_a_task(any_app, capsys):
    total = 1000
    groups = _setup(any_app, total)
    server = LiveServer(any_app)
    with any_app.app_context():
        advised = str(presence.advised_intervals().poll_seconds)  # what a 204 tells the worker to wait
    claims: dict[int, list[int]] = {worker_id: [] for group in groups for worker_id, _ in group}
    statuses = Counter()
    errors = []
    barrier = threading.Barrier(CLAIMERS)

    def claimer(group):
        try:
            with requests.Session() as http:
                barrier.wait()
                for worker_id, token in group:
                    response = http.post(f"{server.url}/api/v1/worker/tasks/claim", headers=auth(token), timeout=60)
                    statuses[response.status_code] += 1
                    if response.status_code == 204:
                        assert response.headers["Retry-After"] == advised
                        break
                    assert response.status_code == 200, response.text
                    claims[worker_id].append(response.json()["id"])
        except Exception as exc:
            errors.append(repr(exc))

    try:
        seconds = _run([threading.Thread(target=claimer, args=(group,)) for group in groups])
    finally:
        server.stop()
    claimed = [task_id for ids in claims.values() for task_id in ids]
    _report(capsys, "HTTP", any_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0], claimed, seconds)
    assert errors == []
    assert set(statuses) == {200, 204} and statuses[204] == CLAIMERS
    assert len(claimed) == total and len(set(claimed)) == total
    assert _check_database(any_app, claims, total) == 0

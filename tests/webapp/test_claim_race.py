"""Claiming under contention, on SQLite and PostgreSQL: 50 claimers, thousands of tasks, no task twice."""

import threading
import time
from collections import Counter

import requests

from tests.conftest import LiveServer
from tests.webapp.dispatch_factories import auth, make_job, make_tasks_bulk, make_user, make_worker
from webapp.extensions import db
from webapp.models import Task, TaskEvent, TaskEventKind, TaskStatus, Worker
from webapp.services import dispatch

CLAIMERS = 50


def _setup(app, tasks: int) -> list[tuple[int, str]]:
    with app.app_context():
        owner = make_user()
        workers = [make_worker(owner, name=f"racer-{i}", bid="0.50") for i in range(CLAIMERS)]
        job_id, _ = make_job(tasks=0, input_bytes=None)
        make_tasks_bulk(job_id, tasks)
        return workers


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


def test_concurrent_claims_through_the_service_never_share_a_task(any_app, capsys):
    total = 2000
    workers = _setup(any_app, total)
    claims: dict[int, list[int]] = {worker_id: [] for worker_id, _ in workers}
    errors = []
    barrier = threading.Barrier(CLAIMERS)

    def claimer(worker_id):
        try:
            with any_app.app_context():
                barrier.wait()
                while True:
                    task = dispatch.claim_task(db.session.get(Worker, worker_id))
                    if task is None:
                        break
                    claims[worker_id].append(task.id)
                db.session.remove()
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(repr(exc))

    seconds = _run([threading.Thread(target=claimer, args=(worker_id,)) for worker_id, _ in workers])
    claimed = [task_id for ids in claims.values() for task_id in ids]
    _report(capsys, "service", any_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0], claimed, seconds)
    assert errors == []
    assert len(claimed) == total and len(set(claimed)) == total
    assert _check_database(any_app, claims, total) == 0
    assert sum(1 for ids in claims.values() if ids) > 1  # the claimers really competed


def test_concurrent_claims_over_http_never_share_a_task(any_app, capsys):
    total = 1000
    workers = _setup(any_app, total)
    server = LiveServer(any_app)
    claims: dict[int, list[int]] = {worker_id: [] for worker_id, _ in workers}
    statuses = Counter()
    errors = []
    barrier = threading.Barrier(CLAIMERS)

    def claimer(worker_id, token):
        try:
            with requests.Session() as http:
                http.headers.update(auth(token))
                barrier.wait()
                while True:
                    response = http.post(f"{server.url}/api/v1/worker/tasks/claim", timeout=60)
                    statuses[response.status_code] += 1
                    if response.status_code == 204:
                        assert response.headers["Retry-After"] == "5"
                        break
                    assert response.status_code == 200, response.text
                    claims[worker_id].append(response.json()["id"])
        except Exception as exc:
            errors.append(repr(exc))

    try:
        seconds = _run([threading.Thread(target=claimer, args=worker) for worker in workers])
    finally:
        server.stop()
    claimed = [task_id for ids in claims.values() for task_id in ids]
    _report(capsys, "HTTP", any_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0], claimed, seconds)
    assert errors == []
    assert set(statuses) == {200, 204} and statuses[204] == CLAIMERS
    assert len(claimed) == total and len(set(claimed)) == total
    assert _check_database(any_app, claims, total) == 0

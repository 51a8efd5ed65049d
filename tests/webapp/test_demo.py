"""`pictor-portal demo`: a living account with workers in every status and history the charts can show."""

from datetime import date

from webapp.extensions import db
from webapp.models import (Job, LedgerEntry, LedgerKind, MiningReport, PresenceInterval, Task, TaskStatus, Worker,
                           WorkerDailyStat, WorkerStatus)
from webapp.services import demo, stats
from webapp.services import workers as worker_service


def _count(model, *where):
    return db.session.execute(db.select(db.func.count()).select_from(model).where(*where)).scalar_one()


def test_demo_has_every_status_and_consistent_history(app):
    with app.app_context():
        user = demo.seed("demo@example.com", "demo-password", workers=12, days=40)
        counts = worker_service.status_counts(user.id)
        assert all(counts[s.value] >= 1 for s in WorkerStatus), counts
        assert sum(counts.values()) == 12
        ids = [w.id for w in db.session.scalars(db.select(Worker).where(Worker.owner_id == user.id))]
        assert _count(Task, Task.worker_id.in_(ids), Task.status == TaskStatus.COMPLETED) > 100
        assert _count(Task, Task.worker_id.in_(ids), Task.status == TaskStatus.RUNNING) == counts["busy"]
        assert _count(MiningReport, MiningReport.worker_id.in_(ids)) > 0
        assert _count(PresenceInterval, PresenceInterval.worker_id.in_(ids)) >= 12 - counts["pending"]
        # Earnings on the worker rows are the ledger's sums.
        for worker in db.session.scalars(db.select(Worker).where(Worker.owner_id == user.id)):
            ledger = db.session.execute(db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0)).where(
                LedgerEntry.worker_id == worker.id, LedgerEntry.kind == LedgerKind.TASK_REWARD)).scalar_one()
            assert worker.earnings_micros == ledger
        # The seeded daily rows are exactly what the roll-up computes from the same rows.
        before = {(r.worker_id, r.day): (r.tasks_completed, r.tasks_failed, r.task_earnings_micros,
                                         r.mining_earnings_micros) for r in db.session.scalars(db.select(WorkerDailyStat))}
        stats.rollup_days(sorted({date.fromisoformat(day) for _w, day in before})[-10:])
        db.session.expire_all()
        after = {(r.worker_id, r.day): (r.tasks_completed, r.tasks_failed, r.task_earnings_micros,
                                        r.mining_earnings_micros) for r in db.session.scalars(db.select(WorkerDailyStat))}
        assert after == before
        # Every status has a sensible page: pending has no hardware yet, error explains itself.
        error = next(w for w in db.session.scalars(db.select(Worker).where(Worker.owner_id == user.id))
                     if worker_service.status_of(w).value == "error")
        assert error.state_message


def test_demo_can_run_again_and_log_in(app, client, auth):
    with app.app_context():
        demo.seed("demo@example.com", "demo-password", workers=6, days=15)
        jobs = _count(Job)
        demo.seed("demo@example.com", "demo-password", workers=6, days=15)
        assert _count(Worker) == 6
        assert _count(Job) == jobs  # refreshed, not duplicated
    assert auth.login("demo@example.com", "demo-password").status_code == 302
    page = client.get("/workers").get_data(as_text=True)
    assert "badge-busy" in page and "badge-offline" in page
    with app.app_context():
        assert demo.pulse("demo@example.com") >= 1


def test_a_real_worker_beside_the_demo_claims_nothing_not_even_after_leases_expire(any_app, clock):
    """`make demo` next to real workers: the demo's queued and running tasks have no real inputs, so a
    real worker must never get one (each failure would count against it)."""
    from tests.webapp.dispatch_factories import auth, make_user, make_worker
    from webapp.services import dispatch
    app = any_app
    with app.app_context():
        demo.seed("demo@example.com", "demo-password", workers=12, days=20)
        queued = _count(Task, Task.status == TaskStatus.QUEUED)
        assert queued >= 40
        worker_id, token = make_worker(make_user("real@example.com"), name="real box")
    client = app.test_client()
    for _ in range(3):
        response = client.post("/api/v1/worker/tasks/claim", headers=auth(token))
        assert response.status_code in (200, 204), response.get_data(as_text=True)
        assert not (response.get_json(silent=True) or {}).get("task"), response.get_json()
    with app.app_context():
        # The demo's running tasks lose their lease (no --live): back in the queue, still nobody's.
        clock.advance(hours=2)
        dispatch.reap_expired_leases()
        assert _count(Task, Task.status == TaskStatus.QUEUED) > queued
        assert dispatch.claim_task(db.session.get(Worker, worker_id)) is None
        # Cheat: the demo account itself pairs a real worker. Demo jobs are still not work.
        owner = db.session.scalars(db.select(Worker.owner_id).where(Worker.demo.is_(True))).first()
        own_id, _ = make_worker(owner, name="demo owner's real box")
        assert dispatch.claim_task(db.session.get(Worker, own_id)) is None
        # A real job is claimed as usual, so the rule is about demo data, not about this worker.
        from tests.webapp.dispatch_factories import make_job
        _job, (task_id,) = make_job(make_user("creator@example.com"), tasks=1)
        assert dispatch.claim_task(db.session.get(Worker, worker_id)).id == task_id


def test_the_portal_keeps_the_demo_fleet_connected_without_live(app, clock):
    with app.app_context():
        user = demo.seed("demo@example.com", "demo-password", workers=12, days=20)
        before = worker_service.status_counts(user.id)
        clock.advance(minutes=9)
        idle = worker_service.status_counts(user.id)
        assert idle["offline"] == 12 - before["pending"] - before["suspended"]  # nothing kept them up
        assert demo.pulse_all() == 12 - before["pending"] - before["offline"]
        db.session.expire_all()
        assert worker_service.status_counts(user.id) == before
        # A real worker (not demo) is never heartbeated by the portal.
        from tests.webapp.dispatch_factories import make_worker
        real_id, _ = make_worker(name="real")
        clock.advance(minutes=9)
        demo.pulse_all()
        assert worker_service.status_of(db.session.get(Worker, real_id)).value == "offline"


def test_demo_names_match_their_gpus_and_big_gpus_earn_most(app):
    with app.app_context():
        user = demo.seed("demo@example.com", "demo-password", workers=36, days=60)
        rows = db.session.scalars(db.select(Worker).where(Worker.owner_id == user.id)).all()
        for worker in rows:
            for model in ("3090", "4080", "2070"):
                if model in worker.name:
                    assert worker.gpu_name and model in worker.gpu_name, (worker.name, worker.gpu_name)
        top = max(rows, key=lambda w: w.earnings_micros)
        assert top.gpus, f"{top.name} is CPU-only and the top earner"
        cpu_only = [w for w in rows if w.paired_at and not w.gpus]
        assert cpu_only and all(w.earnings_micros < top.earnings_micros / 3 for w in cpu_only)

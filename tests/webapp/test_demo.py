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

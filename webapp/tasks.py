"""Periodic work, listed as data, run by APScheduler in every portal process but exactly once per slot.

Each run first inserts a (job name, time slot) row into `periodic_runs`; the primary key lets only
one process win a slot, so several gunicorn processes or hosts can run the scheduler safely.
"""

import importlib
import logging
import os
import socket
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import IntegrityError

from .clock import utcnow
from .extensions import db
from .models import PeriodicRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    target: str  # "module:function" under webapp.services, called with no arguments
    seconds: int


JOBS = [
    PeriodicJob("lease_reaper", "dispatch:reap_expired_leases", 15),
    PeriodicJob("presence_sweep", "presence:close_stale_intervals", 60),
    PeriodicJob("daily_rollup", "stats:rollup_recent", 300),
    PeriodicJob("output_retention", "outputs:purge_old_outputs", 3600),
    PeriodicJob("scene_drafts", "scenes:expire_drafts", 600),  # before blob collection frees their files
    PeriodicJob("blob_collection", "outputs:collect_unreferenced_blobs", 3600),
    PeriodicJob("stray_blob_files", "storage:collect_stray_files", 3600),
    PeriodicJob("temp_sweep", "storage:sweep_temp_files", 3600),
    PeriodicJob("stale_disputes", "dispatch:decide_stale_disputes", 300),
    PeriodicJob("market_day", "market:compute_market_day", 600),
    PeriodicJob("account_limits", "limits:forget_old", 3600),
    PeriodicJob("demo_pulse", "demo:pulse_all", 30),  # demo workers have no app: the portal heartbeats them
    PeriodicJob("alert_detect", "alerts:detect", 30),  # a worker offline, in error or suspended (services/alerts.py)
    PeriodicJob("alert_deliver", "alerts:deliver_due", 15),
    PeriodicJob("alert_digest", "alerts:queue_digests", 3600),
]

RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}"


def _resolve(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(f"webapp.services.{module}"), func)


def claim_slot(job: PeriodicJob, runner: str = RUNNER_ID) -> PeriodicRun | None:
    """Win this job's current time slot, or None if another process already has it."""
    slot = int(utcnow().timestamp()) // job.seconds
    run = PeriodicRun(name=job.name, slot=slot, runner=runner)
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return run


def run_once(job: PeriodicJob, runner: str = RUNNER_ID) -> bool:
    """Run `job` if this process wins its slot; True when it ran here."""
    run = claim_slot(job, runner)
    if run is None:
        return False
    try:
        result = _resolve(job.target)()
        run.result = str(result)[:255] if result is not None else "ok"
    except Exception as exc:  # a periodic job must never kill the scheduler thread
        db.session.rollback()
        log.exception("periodic job %s failed", job.name)
        run = db.session.merge(run)
        run.result = f"error: {exc}"[:255]
    run.finished_at = utcnow()
    db.session.commit()
    return True


def start(app) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(daemon=True, timezone="UTC")

    def wrapped(job):
        with app.app_context():
            try:
                run_once(job)
            finally:
                db.session.remove()

    for job in JOBS:
        scheduler.add_job(wrapped, "interval", seconds=job.seconds, args=[job], id=job.name,
                          max_instances=1, coalesce=True)
    scheduler.start()
    app.extensions["pictor_scheduler"] = scheduler
    return scheduler

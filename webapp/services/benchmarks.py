"""The Bench Score the portal measures: benchmark tasks it issues, times and checks, never the app's word.

A worker that can render gets a **benchmark task** (type `benchmark`) at hello when it has no portal
score yet, or its score is older than SCORE_MAX_AGE: the Worker App builds the fixed reference scene
(tray_client/bench.py; Blender writes it) and renders it with a Cycles seed the portal draws for this
run, so a result can't be cached or reused. The portal times it itself, from claim to complete, checks
the frame like any result (exactly `frame_0001.png`, a whole 320x240 PNG), and always spot-checks it: a
worker of another provider re-renders crops with the same seed (services/verification.py). Only when
that check passes does the run count:

    Bench Score = round(1000 x PORTAL_REFERENCE_SECONDS / portal-observed seconds)

PORTAL_REFERENCE_SECONDS is what the reference machine — the project's 2-core CI box, Debian Blender
3.4.1, Cycles on the CPU — takes for a benchmark task claim to complete (the render and the upload;
the app builds the scene before it claims, told by hello's `bench_run_due`), so that box scores about
1000 here exactly as `pictor-worker bench` (which times the render alone against
tray_client.bench.REFERENCE_SECONDS) does. The app's own figure is kept as
`bench_score_reported` and shown as such; price and eligibility use only the portal's score (a worker
without one is priced as the reference machine, market.UNBENCHED_SCORE).

Benchmark tasks belong to one job of the network's own account, so they flow through the ordinary
claim, lease, result checks and verification; they are paid by the network (a `check_reward`), never
billed to a creator. Each one is for one worker only (`Task.for_worker_id`).
"""

import random
from datetime import datetime, timedelta

from ..extensions import db
from ..models import Job, JobStatus, JobType, Task, TaskStatus, User, Worker
from ..security import hash_password, new_token
from tray_client.bench import FRAME_SIZE, SCENE_VERSION

NETWORK_EMAIL = "network@pictor.invalid"  # the account that owns the network's own work; no one logs in
JOB_NAME = "Bench Score runs"
# tray_client.bench.REFERENCE_SECONDS (7.0 s, the render alone) x 1.03: with the scene built before the
# claim, what the portal times is the render plus a few round trips. Measured on the 2-core box (Dec 2026,
# two providers' real workers, tests/tray_client/test_e2e_loop.py, two runs): portal-timed runs of 4.84,
# 4.93, 5.19 and 5.10 s beside 4.86 and 4.91 s for `pictor-worker bench`'s render: 1.03 on average.
PORTAL_REFERENCE_SECONDS = 7.2
SCORE_MAX_AGE = timedelta(days=30)
BENCHMARK_PRIORITY = 90  # before creators' work (a price needs a score), after spot checks
FRAME_NAME = "frame_0001.png"

_random = random.SystemRandom()

# What result_checks needs to know about the scene (its settings are fixed in tray_client/bench.py).
SCENE = {"settings": {"scene": "Scene", "resolution_x": FRAME_SIZE[0], "resolution_y": FRAME_SIZE[1],
                      "percent": 100, "engine": "CYCLES", "frame_start": 1, "frame_end": 1, "use_border": False,
                      "use_crop_to_border": False, "border": [0.0, 1.0, 0.0, 1.0], "uses_compositor": False,
                      "uses_sequencer": False},
         "spot_checkable": True}


def score_for(seconds: float) -> int:
    """The Bench Score for a benchmark task the portal saw take `seconds` from claim to complete."""
    return max(1, round(1000 * PORTAL_REFERENCE_SECONDS / max(seconds, 0.001)))


def network_user() -> User:
    user = db.session.execute(db.select(User).where(User.email == NETWORK_EMAIL)).scalar_one_or_none()
    if user is None:
        user = User(email=NETWORK_EMAIL, password_hash=hash_password(new_token("locked")))
        db.session.add(user)
        db.session.flush()
    return user


def benchmark_job() -> Job:
    """The network's one job that holds every benchmark task (created on first use)."""
    owner = network_user()
    job = db.session.execute(db.select(Job).where(Job.owner_id == owner.id, Job.type == JobType.BENCHMARK)
                             ).scalars().first()
    if job is None:
        job = Job(owner_id=owner.id, name=JOB_NAME, type=JobType.BENCHMARK, status=JobStatus.QUEUED,
                  spec={"type": "benchmark", "format": "PNG", "scene": SCENE}, software="Blender · Cycles",
                  priority=BENCHMARK_PRIORITY, device="any", max_price_micros=None)
        db.session.add(job)
        db.session.flush()
    return job


def needs_run(worker: Worker, now: datetime) -> bool:
    if JobType.BENCHMARK.value not in (worker.capabilities or {}).get("job_types", []) or worker.suspended_at:
        return False
    return worker.bench_score is None or worker.benchmarked_at is None or now - worker.benchmarked_at > SCORE_MAX_AGE


def schedule(worker: Worker, now: datetime) -> Task | None:
    """Queue a benchmark task for the worker if it needs one and has none open (inside the caller's
    write transaction)."""
    if not needs_run(worker, now):
        return None
    open_run = db.session.execute(db.select(Task.id).where(
        Task.for_worker_id == worker.id, Task.type == JobType.BENCHMARK,
        Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING])).limit(1)).first()
    if open_run is not None:
        return None
    job = benchmark_job()
    task = Task(job_id=job.id, seq=0, type=JobType.BENCHMARK, for_worker_id=worker.id,
                params={"seed": _random.randint(1, 2**31 - 1), "scene_version": SCENE_VERSION},
                input_names=[], status=TaskStatus.QUEUED, priority=BENCHMARK_PRIORITY, device="any",
                max_price_micros=None, created_at=now)
    db.session.add(task)
    if job.status != JobStatus.RUNNING:
        job.status, job.finished_at = JobStatus.QUEUED, None
    return task


def record_score(task: Task, now: datetime) -> int:
    """A benchmark task's check passed: its portal-observed time becomes the worker's Bench Score."""
    worker = task.worker
    seconds = (task.finished_at - task.started_at).total_seconds()
    worker.bench_score = score_for(seconds)
    worker.benchmarked_at = now
    previous = (worker.bench_details or {}).get("portal") or {}
    slots = dict(previous.get("slots") or {})
    if task.slot and task.slot != "0":  # the device that ran it: its own score prices its tasks
        slots[task.slot] = {"score": worker.bench_score, "seconds": round(seconds, 3), "task_id": task.id}
    worker.bench_details = {**(worker.bench_details or {}), "portal": {
        "seconds": round(seconds, 3), "reference_seconds": PORTAL_REFERENCE_SECONDS, "task_id": task.id,
        "scene_version": task.params.get("scene_version"), "slots": slots}}
    return worker.bench_score


def slot_score(worker: Worker, slot) -> int | None:
    """The Bench Score a claim for `slot` is priced by: that device's own portal-measured score (the
    slot that ran a Bench Score run), else the worker's. Only the portal writes bench_details["portal"]
    (market.record_benchmark keeps the app's details apart)."""
    if isinstance(slot, str):
        measured = (((worker.bench_details or {}).get("portal") or {}).get("slots") or {}).get(slot)
        if isinstance(measured, dict) and type(measured.get("score")) is int:
            return measured["score"]
    return worker.bench_score

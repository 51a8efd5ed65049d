"""Honest queue status and projections: why a job waits (each reason true, then gone), what it will cost and when
it finishes, from real portal rows, presence and completed tasks."""

from datetime import timedelta

import pytest
from sqlalchemy import event

from tests.conftest import T0
from tests.webapp.dispatch_factories import frame_png, make_job, make_user, make_worker
from webapp import money
from webapp.extensions import db
from webapp.models import Job, JobStatus, Task, TaskOutput, TaskStatus, Worker, WorkerState
from webapp.services import dispatch, jobs, presence, projection, queue_status, storage


@pytest.fixture
def db_ctx(any_app, clock):
    with any_app.app_context():
        yield clock


@pytest.fixture
def sqlite_ctx(app, clock):
    with app.app_context():
        yield clock


def waiting(job_id):
    db.session.expire_all()
    return queue_status.waiting_for_jobs([db.session.get(Job, job_id)])[job_id]


def claim(worker_id):
    task = dispatch.claim_task(db.session.get(Worker, worker_id))
    return task.id if task else None


def set_max_price(job_id, price: str):
    """What a creator's raise of the maximum changes: the job's and its queued tasks' maximum."""
    micros = money.to_micros(price)
    db.session.get(Job, job_id).max_price_micros = micros
    db.session.execute(db.update(Task).where(Task.job_id == job_id).values(max_price_micros=micros))
    db.session.commit()


def finish(worker_id, task_id, seconds, frame):
    """Upload the frame a worker rendered and complete its task through the dispatcher."""
    data = frame_png(frame)
    stored = storage.put_bytes(data)
    db.session.flush()
    name = f"frame_{frame:04d}.png"
    db.session.add(TaskOutput(task_id=task_id, name=name, sha256=stored.sha256, size=stored.size))
    db.session.commit()
    return dispatch.complete_task(db.session.get(Worker, worker_id), task_id,
                                  [{"name": name, "sha256": stored.sha256, "size": stored.size}], seconds)


def test_each_reason_appears_when_true_and_goes_when_not(db_ctx):
    """The four reasons in the dispatcher's order; each fix makes the next one (or a claim) true."""
    provider = make_user("farm@example.com")
    job_id, task_ids = make_job(tasks=2, device="gpu", max_price="0.62")
    first = waiting(job_id)
    assert first.reason == queue_status.WaitingReason.NO_CAPABLE_WORKER
    assert first.message.startswith("No online worker offers rendering right now")

    upscaler, _ = make_worker(provider, "upscaler", job_types=["upscale"], gpu=True, bid="0.10")
    assert waiting(job_id).reason == queue_status.WaitingReason.NO_CAPABLE_WORKER  # wrong job type
    cpu_box, _ = make_worker(provider, "cpu box", job_types=["render"], gpu=False, bid="0.10")
    gpu = waiting(job_id)
    assert gpu.reason == queue_status.WaitingReason.GPU_REQUIRED and "1 online worker" in gpu.message
    assert claim(cpu_box) is None  # the dispatcher agrees

    dear, _ = make_worker(provider, "dear", gpu=True, bid="1.5824", bench_score=2000, slots=None)  # 0.7912/bench-h
    price = waiting(job_id)
    assert price.reason == queue_status.WaitingReason.PRICE_TOO_LOW
    assert price.message == ("1 online worker could run this, but its price is above your maximum of $0.62 per "
                             "bench-hour — raise it to $0.80 to reach it.")
    assert price.summary == "Waiting: your maximum is too low — $0.80 reaches 1 online worker"
    assert claim(dear) is None
    set_max_price(job_id, "0.79")  # a cent short of what the message said: still refused
    assert waiting(job_id).reason == queue_status.WaitingReason.PRICE_TOO_LOW and claim(dear) is None

    set_max_price(job_id, "0.80")
    _, (other_task,) = make_job(tasks=1, priority=5, name="someone else's", max_price="5")
    assert claim(dear) == other_task  # its one slot now runs another job
    busy = waiting(job_id)
    assert busy.reason == queue_status.WaitingReason.ALL_BUSY and "busy with another task" in busy.message

    free, _ = make_worker(provider, "free", gpu=True, bid="0.50")
    assert waiting(job_id) is None  # a free worker takes it at its next poll ...
    assert claim(free) in task_ids  # ... and really does
    assert waiting(job_id) is None  # running: nothing to explain
    assert queue_status.waiting_for_jobs([db.session.get(Job, job_id)])[job_id] is None


def test_who_counts_as_online(sqlite_ctx):
    """Offline, app-paused, portal-paused, suspended, deleted and demo workers take nothing, so they don't count."""
    clock = sqlite_ctx
    job_id, _ = make_job(tasks=1, type="upscale")
    stale, _ = make_worker(name="stale")
    clock.advance(seconds=600)  # its heartbeat is now far past the offline threshold
    rows = [make_worker(name=n)[0] for n in ("paused", "portal paused", "suspended", "deleted", "demo")]
    paused, portal_paused, suspended, deleted, demo = (db.session.get(Worker, i) for i in rows)
    paused.state = WorkerState.PAUSED
    portal_paused.paused_at = clock.now
    suspended.suspended_at = clock.now
    deleted.deleted_at = clock.now
    demo.demo = True
    db.session.commit()
    assert waiting(job_id).reason == queue_status.WaitingReason.NO_CAPABLE_WORKER
    paused.state = WorkerState.IDLE
    db.session.commit()
    assert waiting(job_id) is None


def test_a_worker_blocklisted_on_the_job_is_not_a_capable_one(sqlite_ctx):
    provider = make_user("flaky@example.com")
    flaky, _ = make_worker(provider, "flaky", job_types=["render"])
    job_id, task_ids = make_job(tasks=4)
    for _ in range(dispatch.BLOCKLIST_FAILURES):
        dispatch.fail_task(db.session.get(Worker, flaky), claim(flaky), "CUDA error")
    reason = waiting(job_id)
    assert reason.reason == queue_status.WaitingReason.NO_CAPABLE_WORKER and "failed its tasks" in reason.message
    assert claim(flaky) is None
    make_worker(make_user("steady@example.com"), "steady", job_types=["render"])
    assert waiting(job_id) is None


def test_a_page_of_jobs_costs_the_same_few_queries_however_many_jobs_and_workers(sqlite_ctx):
    statements = []

    def count(*_):
        statements.append(1)

    def queries(n_jobs):
        ids = [make_job(tasks=1, type="upscale", name=f"j{i}")[0] for i in range(n_jobs)]
        jobs_ = db.session.execute(db.select(Job).where(Job.id.in_(ids))).scalars().all()  # as a page loads them
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            result = queue_status.waiting_for_jobs(jobs_)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert all(w.reason == queue_status.WaitingReason.NO_CAPABLE_WORKER for w in result.values())
        return len(statements)

    make_worker(name="renderer", job_types=["render"])
    few = queries(2)
    for i in range(20):
        make_worker(name=f"r{i}", job_types=["render"])
    assert queries(25) == few <= 5


def test_api_json_and_pages_say_why(app, client, auth, clock):
    auth.signup("creator@example.com")
    with app.app_context():
        from webapp.services import accounts
        user = accounts.user_by_email("creator@example.com")
        token = accounts.create_api_token(user, "t")[1]
        job_id, _ = make_job(owner_id=user.id, tasks=1, type="upscale", name="Old scans")
        done_id, _ = make_job(owner_id=user.id, tasks=1, type="upscale", name="Nothing to say")
        db.session.execute(db.update(Task).where(Task.job_id == done_id).values(status=TaskStatus.CANCELED))
        db.session.get(Job, done_id).status = JobStatus.CANCELED
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
    assert body["waiting"] == {"reason": "no_capable_worker",
                               "message": "No online worker offers upscaling right now: the job starts when one "
                                          "connects."}
    assert body["projection"]["cost"] is None and body["projection"]["finish_at"] is None
    listed = {j["id"]: j for j in client.get("/api/v1/jobs", headers=headers).get_json()["items"]}
    assert listed[job_id]["waiting"]["reason"] == "no_capable_worker" and listed[done_id]["waiting"] is None
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-waiting" data-reason="no_capable_worker"' in page and "No online worker offers upscaling" in page
    listing = client.get("/jobs").get_data(as_text=True)
    assert listing.count('class="job-waiting small"') == 1
    assert ">Waiting: no online worker offers upscaling right now</span>" in listing  # one line, the rest on hover
    with app.app_context():
        make_worker(name="upscaler", job_types=["upscale"])
    assert client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()["waiting"] is None
    assert 'id="job-waiting"' not in client.get(f"/jobs/{job_id}").get_data(as_text=True)


# --- projection ----------------------------------------------------------------------------------

def test_projection_from_the_jobs_completed_tasks(db_ctx):
    clock = db_ctx
    provider = make_user("farm@example.com")
    fast, _ = make_worker(provider, "fast", job_types=["render"], bid="0.72", bench_score=2000, slots=None)
    slow, _ = make_worker(provider, "slow", job_types=["render"], bid="0.36", bench_score=1000, slots=None)
    job_id, task_ids = make_job(tasks=6, max_price="1.00")
    job = db.session.get(Job, job_id)
    assert jobs.serialize_job(job)["projection"]["basis"] is None  # nothing to go by yet: no range is invented

    first, second = claim(fast), claim(slow)
    clock.advance(seconds=100)
    finish(fast, first, 100, frame=1)  # 200 bench-seconds, $0.02
    clock.advance(seconds=100)
    finish(slow, second, 200, frame=2)  # 200 bench-seconds, $0.02
    third, fourth = claim(fast), claim(slow)
    clock.advance(seconds=50)
    dispatch.report_progress(fast, third, 0.5)
    db.session.expire_all()
    job = db.session.get(Job, job_id)
    result = projection.project(job, jobs.cost_summary(job))
    assert result["basis"] == "job"
    assert result["cost_micros"] == 40_000 + 20_000 * 4  # spent + mean task cost x tasks left
    # Left: half of one frame (100) + one frame on the slow worker (200, none reported) + 2 queued (400)
    # = 700 bench-seconds at 3 bench-seconds per second (never sooner than the slow one's 200 s).
    assert result["finish_at"] == clock.now + timedelta(seconds=700 / 3)
    body = jobs.serialize_job(job)["projection"]
    assert body["cost"] == "0.120000" and body["finish_at"] == result["finish_at"].isoformat()

    job.budget_micros = 100_000  # less than the projection: the cost stays within it, no finish is promised
    db.session.commit()
    capped = projection.project(job, jobs.cost_summary(job))
    assert capped["cost_micros"] == 100_000 and capped["over_budget"] and capped["finish_at"] is None
    assert "budget of $0.10" in capped["explanation"]


def test_projection_before_the_first_completion_is_a_range_from_similar_network_tasks(sqlite_ctx):
    clock = sqlite_ctx
    provider = make_user("farm@example.com")
    worker, _ = make_worker(provider, "rig", job_types=["render"], bid="0.36", bench_score=1000)
    earlier, earlier_tasks = make_job(tasks=3, name="earlier", max_price="1.00")
    for frame, seconds in zip((1, 2, 3), (100, 200, 300)):
        task_id = claim(worker)
        clock.advance(seconds=seconds)
        finish(worker, task_id, seconds, frame=frame)
    presence.record_heartbeat(db.session.get(Worker, worker), "idle")  # online now, and idle
    job_id, _ = make_job(tasks=2, name="new", max_price="1.00")  # same engine, samples and resolution
    job = db.session.get(Job, job_id)
    result = projection.project(job, jobs.cost_summary(job))
    assert result["basis"] == "network"
    # Quartiles of 100/200/300 bench-seconds per frame: 150, 200, 250; two frames; one 1000-score worker.
    for key, seconds in (("finish_low", 300), ("finish_at", 400), ("finish_high", 500)):
        assert (result[key] - clock.now).total_seconds() == pytest.approx(seconds)
    assert result["cost_low_micros"] == pytest.approx(30_000, abs=1)  # at its $0.36 price
    assert result["cost_micros"] == pytest.approx(40_000, abs=1)
    assert result["cost_high_micros"] == pytest.approx(138_888, abs=1)  # at most the job's $1.00 maximum
    other_engine = db.session.get(Job, make_job(tasks=1, name="eevee")[0])
    db.session.execute(db.update(Task).where(Task.job_id == other_engine.id)
                       .values(params={"frames": [1], "engine": "BLENDER_EEVEE", "samples": 16,
                                       "resolution_percent": 50, "format": "PNG"}))
    other_engine.spec = {"type": "render", "engine": "BLENDER_EEVEE"}
    db.session.commit()
    assert projection.project(other_engine, jobs.cost_summary(other_engine))["basis"] is None


def test_a_free_cpu_slot_does_not_take_a_gpu_only_job(sqlite_ctx):
    """The claim's slot rule (dispatch.slot_takes_gpu_tasks): with its GPU busy, a worker's CPU slot is free for
    an any-device job only."""
    rig, _ = make_worker(name="rig", job_types=["render"], gpu=True, slots=None)
    worker = db.session.get(Worker, rig)
    worker.capabilities = {**worker.capabilities, "slots": [
        {"id": "gpu0", "kind": "CUDA", "name": "RTX", "memory_mb": 8192},
        {"id": "cpu", "kind": "CPU", "name": "CPU", "memory_mb": None}]}
    db.session.commit()
    _, (busy_task,) = make_job(tasks=1, priority=9, name="first", device="gpu")
    assert dispatch.claim_task(db.session.get(Worker, rig), slot="gpu0").id == busy_task
    gpu_job, _ = make_job(tasks=1, device="gpu", name="gpu only")
    any_job, (any_task,) = make_job(tasks=1, device="any", name="anywhere")
    assert waiting(gpu_job).reason == queue_status.WaitingReason.ALL_BUSY
    assert waiting(any_job) is None
    assert dispatch.claim_task(db.session.get(Worker, rig), slot="cpu").id == any_task  # the dispatcher agrees

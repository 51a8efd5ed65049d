"""Dispatch: who gets which task, leases, failures and blocklists, idempotent completion, exactly-once rewards."""

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from tests.conftest import T0
from tests.webapp.dispatch_factories import frame_png, make_job, make_user, make_worker, sha
from webapp.extensions import db
from webapp.models import (Job, JobStatus, LedgerEntry, LedgerKind, Task, TaskEvent, TaskEventKind, TaskOutput,
                           TaskStatus, Worker, WorkerDailyStat)
from webapp.services import Conflict, NotFound, ServiceError, dispatch, ledger, storage


@pytest.fixture
def db_ctx(any_app, clock):
    with any_app.app_context():
        yield any_app


@pytest.fixture
def sqlite_ctx(app, clock):
    with app.app_context():
        yield app


def w(worker_id) -> Worker:
    return db.session.get(Worker, worker_id)


def claim(worker_id, now=None):
    task = dispatch.claim_task(w(worker_id), now=now)
    return task.id if task else None


def upload(task_id, name, data: bytes):
    stored = storage.put_bytes(data)
    db.session.flush()
    db.session.add(TaskOutput(task_id=task_id, name=name, sha256=stored.sha256, size=stored.size))
    db.session.commit()
    return {"name": name, "sha256": stored.sha256, "size": stored.size}


def events(task_id, kind):
    return db.session.execute(db.select(TaskEvent).where(TaskEvent.task_id == task_id, TaskEvent.kind == kind)
                              ).scalars().all()


# -- who gets what ---------------------------------------------------------------------------------

def test_highest_priority_first_then_oldest(db_ctx):
    worker, _ = make_worker()
    _, low = make_job(tasks=2, priority=0)
    _, high = make_job(tasks=2, priority=5)
    order = [claim(worker) for _ in range(5)]
    assert order == [high[0], high[1], low[0], low[1], None]


def test_claim_marks_the_task_running_with_lease_bid_and_event(db_ctx):
    worker, _ = make_worker(bid="0.80")
    job_id, (task_id,) = make_job()
    assert claim(worker) == task_id
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.RUNNING and task.worker_id == worker
    assert task.started_at == T0 and task.lease_expires_at == T0 + timedelta(seconds=60)
    assert task.bid_micros == 800_000 and task.attempts == 1
    assert [e.worker_id for e in events(task_id, TaskEventKind.CLAIMED)] == [worker]
    assert db.session.get(Job, job_id).status == JobStatus.RUNNING


def test_claim_filters_job_types_and_gpu(db_ctx):
    render_only, _ = make_worker(job_types=["render"], gpu=False)
    nothing, _ = make_worker(job_types=[])
    _, (upscale_task,) = make_job(type="upscale")
    _, (gpu_task,) = make_job(device="gpu")
    _, (any_task,) = make_job(device="any")
    assert claim(nothing) is None
    assert claim(render_only) == any_task  # not the upscale task, not the GPU-only render
    assert claim(render_only) is None
    gpu_worker, _ = make_worker(job_types=["render", "upscale"], gpu=True)
    assert {claim(gpu_worker), claim(gpu_worker)} == {upscale_task, gpu_task}


def test_claim_respects_max_price_per_bench_hour(db_ctx):
    _, (capped,) = make_job(max_price="0.40", priority=1)
    _, (uncapped,) = make_job(max_price=None)
    pricey, _ = make_worker(bid="0.50")  # no bench score: priced as 1000 -> 0.50 per bench-hour
    assert claim(pricey) == uncapped
    assert claim(pricey) is None
    fast, _ = make_worker(bid="0.50", bench_score=2000)  # 0.25 per bench-hour
    assert claim(fast) == capped


def test_price_at_exactly_the_maximum_is_admitted(db_ctx):
    _, (task,) = make_job(max_price="0.50")
    worker, _ = make_worker(bid="0.50", bench_score=1000)
    assert claim(worker) == task


def test_a_failed_task_never_returns_to_the_same_worker(db_ctx):
    first, _ = make_worker()
    second, _ = make_worker()
    _, (task_id,) = make_job()
    assert claim(first) == task_id
    assert dispatch.fail_task(w(first), task_id, "Blender crashed", "Segfault", retryable=True) == TaskStatus.QUEUED
    assert claim(first) is None
    assert claim(second) == task_id


def test_three_failures_of_a_job_blocklist_the_worker_for_that_job(db_ctx):
    flaky, _ = make_worker()
    job_a, tasks_a = make_job(tasks=4, priority=1)
    _, (task_b,) = make_job(tasks=1)
    for expected in tasks_a[:3]:
        assert claim(flaky) == expected
        dispatch.fail_task(w(flaky), expected, "out of memory", None, retryable=True)
    assert dispatch.is_blocklisted(flaky, job_a)
    assert claim(flaky) == task_b  # task 4 of job A is skipped, job B is fine
    other, _ = make_worker()
    assert claim(other) == tasks_a[0]


def provider(i: int) -> int:
    return make_user(f"provider{i}@example.com")


def test_failures_on_three_different_accounts_fail_the_task_and_job(db_ctx):
    _, (task_id,) = make_job()
    workers = [make_worker(provider(i), name=f"n{i}")[0] for i in range(3)]
    statuses = []
    for worker in workers:
        assert claim(worker) == task_id
        statuses.append(dispatch.fail_task(w(worker), task_id, "render error", "log...", retryable=True))
    assert statuses == [TaskStatus.QUEUED, TaskStatus.QUEUED, TaskStatus.FAILED]
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.FAILED and task.finished_at == T0 and task.log_tail == "log..."
    assert task.job.status == JobStatus.FAILED
    daily = db.session.get(WorkerDailyStat, (workers[0], "2024-05-10"))
    assert daily.tasks_failed == 1


def test_a_non_retryable_failure_fails_the_task_once_another_account_confirms_it(db_ctx):
    worker, _ = make_worker(provider(0))
    same_account, _ = make_worker(provider(0))
    other_account, _ = make_worker(provider(1))
    _, (task_id,) = make_job()
    claim(worker)
    assert dispatch.fail_task(w(worker), task_id, "bad .blend", "", retryable=False) == TaskStatus.QUEUED
    assert dispatch.fail_task(w(worker), task_id, "bad .blend", "", retryable=False) == TaskStatus.QUEUED
    task = db.session.get(Task, task_id)
    assert "to be confirmed on another provider's worker" in task.message
    assert claim(same_account) == task_id  # its word doesn't confirm its own account's
    assert dispatch.fail_task(w(same_account), task_id, "bad .blend", "", retryable=False) == TaskStatus.QUEUED
    assert claim(other_account) == task_id
    assert dispatch.fail_task(w(other_account), task_id, "bad .blend", "", retryable=False) == TaskStatus.FAILED
    # Repeating a fail the portal already recorded changes nothing.
    assert dispatch.fail_task(w(other_account), task_id, "bad .blend", "", retryable=False) == TaskStatus.FAILED
    assert len(events(task_id, TaskEventKind.FAILED)) == 3


def test_requeue_failed_gives_a_fresh_start_and_keeps_history(db_ctx):
    job_id, (task_id,) = make_job()
    workers = [make_worker(provider(i), name=f"n{i}")[0] for i in range(3)]
    for worker in workers:
        claim(worker)
        dispatch.fail_task(w(worker), task_id, "driver reset", None, retryable=True)
    assert db.session.get(Task, task_id).status == TaskStatus.FAILED
    assert dispatch.requeue_failed(db.session.get(Job, job_id)) == 1
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.QUEUED and task.worker_id is None and task.finished_at is None
    assert task.job.status == JobStatus.QUEUED or task.job.status == JobStatus.RUNNING
    assert len(events(task_id, TaskEventKind.FAILED)) == 3  # history kept
    # The record of who failed it still stands: none of them gets it again (a saboteur gets no second go)...
    assert [claim(worker) for worker in workers] == [None] * 3
    # ...while three new accounts are needed to fail it.
    fresh = [make_worker(provider(i), name=f"m{i}")[0] for i in range(3, 6)]
    statuses = []
    for worker in fresh:
        assert claim(worker) == task_id
        statuses.append(dispatch.fail_task(w(worker), task_id, "driver reset", None, retryable=True))
    assert statuses == [TaskStatus.QUEUED, TaskStatus.QUEUED, TaskStatus.FAILED]


def test_throwaway_workers_of_one_account_cannot_fail_a_victims_job(db_ctx):
    """The sabotage: many new workers of one account claim a victim's tasks and fail them, retryable
    or not. Each task goes back to the queue; after ACCOUNT_BLOCKLIST_FAILURES attempts the account's
    workers get none of the job, and an honest provider renders all of it."""
    job_id, tasks = make_job(tasks=4)
    saboteur = provider(66)
    throwaways = [make_worker(saboteur, name=f"t{i}")[0] for i in range(10)]
    failed_attempts = 0
    for index, worker in enumerate(throwaways):
        task_id = claim(worker)
        if task_id is None:
            break
        status = dispatch.fail_task(w(worker), task_id, "nope", None, retryable=bool(index % 2))
        assert status == TaskStatus.QUEUED
        failed_attempts += 1
    assert failed_attempts == dispatch.ACCOUNT_BLOCKLIST_FAILURES
    assert all(dispatch.is_blocklisted(worker, job_id) for worker in throwaways)
    assert {db.session.get(Task, t).status for t in tasks} == {TaskStatus.QUEUED}
    assert db.session.get(Job, job_id).status != JobStatus.FAILED
    honest, _ = make_worker(provider(1))
    assert sorted(claim(honest) for _ in tasks) == sorted(tasks)


def test_one_bad_node_of_a_farm_does_not_shut_the_farm_out_of_a_job(db_ctx):
    farm = provider(7)
    broken, healthy = make_worker(farm, name="broken")[0], make_worker(farm, name="healthy")[0]
    job_id, tasks = make_job(tasks=5)
    for _ in range(dispatch.BLOCKLIST_FAILURES):
        dispatch.fail_task(w(broken), claim(broken), "CUDA error", None, retryable=True)
    assert dispatch.is_blocklisted(broken, job_id) and not dispatch.is_blocklisted(healthy, job_id)
    assert claim(healthy) is not None


# -- leases ----------------------------------------------------------------------------------------

def test_expired_lease_puts_the_task_back_and_progress_extends_it(db_ctx, clock):
    worker, _ = make_worker()
    other, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    clock.set(T0 + timedelta(seconds=30))
    assert dispatch.report_progress(worker, task_id, 0.5, 20, "Sample 8/16") is True
    clock.set(T0 + timedelta(seconds=61))
    assert dispatch.reap_expired_leases() == 0  # progress at +30 s moved the lease to +90 s
    clock.set(T0 + timedelta(seconds=91))
    assert dispatch.reap_expired_leases() == 1
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.QUEUED and task.worker_id is None and task.progress == 0
    assert [e.worker_id for e in events(task_id, TaskEventKind.LEASE_EXPIRED)] == [worker]
    assert task.job.status == JobStatus.QUEUED
    # The old worker learns it lost the task; an expired lease is not a failure, so it may claim again.
    assert dispatch.report_progress(worker, task_id, 0.6) is False
    assert claim(other) == task_id


def test_lease_of_a_running_task_is_kept_until_it_expires(db_ctx, clock):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    clock.set(T0 + timedelta(seconds=60))
    assert dispatch.reap_expired_leases() == 0  # exactly at the deadline it still holds


# -- progress --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), float("inf"), True, "0.5", None])
def test_progress_must_be_between_0_and_1(sqlite_ctx, value):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    with pytest.raises(ServiceError) as exc:
        dispatch.report_progress(worker, task_id, value)
    assert exc.value.status == 400
    assert db.session.get(Task, task_id).progress == 0


def test_progress_on_someone_elses_task_is_not_found(sqlite_ctx):
    owner, _ = make_worker()
    stranger, _ = make_worker()
    _, (task_id,) = make_job()
    claim(owner)
    with pytest.raises(NotFound):
        dispatch.report_progress(stranger, task_id, 0.5)
    with pytest.raises(NotFound):
        dispatch.report_progress(stranger, 999_999, 0.5)


def test_cancel_tells_the_running_worker_to_stop(db_ctx):
    worker, _ = make_worker()
    job_id, (running, queued) = make_job(tasks=2)
    assert claim(worker) == running
    assert dispatch.cancel_job(db.session.get(Job, job_id)) == 2
    assert {db.session.get(Task, t).status for t in (running, queued)} == {TaskStatus.CANCELED}
    assert db.session.get(Job, job_id).status == JobStatus.CANCELED
    assert dispatch.report_progress(worker, running, 0.9) is False
    with pytest.raises(Conflict):
        dispatch.complete_task(w(worker), running, [{"name": "frame_0001.png", "sha256": "0" * 64, "size": 1}], 5)
    assert dispatch.cancel_job(db.session.get(Job, job_id)) == 0  # twice is harmless


# -- completion and rewards ------------------------------------------------------------------------

def test_complete_credits_bid_times_observed_hours_exactly_once(db_ctx, clock):
    worker, _ = make_worker(bid="0.50")
    job_id, (task_id,) = make_job()
    claim(worker)
    output = upload(task_id, "frame_0001.png", frame_png(1))
    clock.set(T0 + timedelta(minutes=30))
    # The worker claims an hour; the portal saw 30 minutes: 0.50 USD/h x 0.5 h.
    assert dispatch.complete_task(w(worker), task_id, [output], compute_seconds=3600) == 250_000
    # A repeated complete (lost response) returns the same reward and credits nothing more.
    clock.set(T0 + timedelta(minutes=40))
    assert dispatch.complete_task(w(worker), task_id, [output], compute_seconds=3600) == 250_000
    entries = db.session.execute(db.select(LedgerEntry)).scalars().all()
    assert [(e.kind, e.amount_micros, e.worker_id, e.job_id, e.task_id) for e in entries] == \
        [(LedgerKind.TASK_REWARD, 250_000, worker, job_id, task_id)]
    assert entries[0].provider_id == w(worker).owner_id
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.COMPLETED and task.reward_micros == 250_000 and task.compute_seconds == 1800
    assert task.finished_at == T0 + timedelta(minutes=30) and task.progress == 1
    assert task.job.status == JobStatus.COMPLETED
    assert w(worker).earnings_micros == 250_000 and w(worker).compute_seconds == 1800
    assert ledger.job_cost_micros(job_id) == 250_000 == ledger.worker_earnings(worker)
    daily = db.session.get(WorkerDailyStat, (worker, "2024-05-10"))
    assert (daily.task_earnings_micros, daily.tasks_completed, daily.compute_seconds) == (250_000, 1, 1800)
    assert len(events(task_id, TaskEventKind.COMPLETED)) == 1


def test_reward_is_bounded_by_what_the_worker_reports(db_ctx, clock):
    worker, _ = make_worker(bid="1.20")
    _, (task_id,) = make_job()
    claim(worker)
    output = upload(task_id, "frame_0001.png", frame_png())
    clock.set(T0 + timedelta(hours=2))
    assert dispatch.complete_task(w(worker), task_id, [output], compute_seconds=90) == 30_000  # 1.20 x 90/3600


def test_ledger_refuses_a_second_reward_row_for_a_task(db_ctx, clock):
    worker, _ = make_worker()
    job_id, (task_id,) = make_job()
    claim(worker)
    output = upload(task_id, "frame_0001.png", frame_png())
    clock.set(T0 + timedelta(seconds=10))
    dispatch.complete_task(w(worker), task_id, [output], 10)
    # One reward per delivery: the same task and attempt cannot be credited twice.
    db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=1, worker_id=worker, job_id=job_id,
                               task_id=task_id, attempt=db.session.get(Task, task_id).attempts))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # And the service itself returns the first entry instead of writing another.
    entry = ledger.credit_task_reward(db.session.get(Task, task_id), 999, available_at=None)
    assert entry.amount_micros == db.session.get(Task, task_id).reward_micros


def test_complete_requires_every_declared_output_with_its_hash_and_size(db_ctx):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    good = upload(task_id, "frame_0001.png", b"frame one")
    missing = {"name": "frame_0002.png", "sha256": sha(b"two"), "size": 3}
    with pytest.raises(ServiceError) as exc:
        dispatch.complete_task(w(worker), task_id, [good, missing], 5)
    assert exc.value.code == "missing_output" and "frame_0002.png" in exc.value.message
    wrong_hash = dict(good, sha256=sha(b"something else"))
    with pytest.raises(ServiceError) as exc:
        dispatch.complete_task(w(worker), task_id, [wrong_hash], 5)
    assert exc.value.code == "output_mismatch"
    with pytest.raises(ServiceError):
        dispatch.complete_task(w(worker), task_id, [dict(good, size=good["size"] + 1)], 5)
    for bad in ([], None, [dict(good, name="../etc/passwd")], [good, good], [dict(good, size=-1)],
                [dict(good, sha256="xyz")]):
        with pytest.raises(ServiceError):
            dispatch.complete_task(w(worker), task_id, bad, 5)
    with pytest.raises(ServiceError):
        dispatch.complete_task(w(worker), task_id, [good], -1)
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.RUNNING and task.reward_micros is None
    assert db.session.execute(db.select(db.func.count(LedgerEntry.id))).scalar_one() == 0


def test_undeclared_uploads_are_dropped_at_completion(sqlite_ctx):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    keep = upload(task_id, "frame_0001.png", frame_png())
    upload(task_id, "scratch.tmp", b"junk")
    dispatch.complete_task(w(worker), task_id, [keep], 1)
    assert [o.name for o in db.session.get(Task, task_id).outputs] == ["frame_0001.png"]


def test_another_worker_cannot_complete_or_fail_a_task(db_ctx):
    owner, _ = make_worker()
    stranger, _ = make_worker()
    _, (task_id,) = make_job()
    claim(owner)
    output = upload(task_id, "frame_0001.png", frame_png())
    with pytest.raises(NotFound):
        dispatch.complete_task(w(stranger), task_id, [output], 1)
    with pytest.raises(NotFound):
        dispatch.fail_task(w(stranger), task_id, "nope")
    assert db.session.get(Task, task_id).status == TaskStatus.RUNNING


def test_a_reassigned_task_cannot_be_completed_by_its_previous_worker(db_ctx, clock):
    first, _ = make_worker()
    second, _ = make_worker()
    _, (task_id,) = make_job()
    claim(first)
    clock.set(T0 + timedelta(seconds=61))
    dispatch.reap_expired_leases()
    assert claim(second) == task_id
    output = upload(task_id, "frame_0001.png", frame_png())
    with pytest.raises(Conflict):
        dispatch.complete_task(w(first), task_id, [output], 1)
    assert db.session.get(Task, task_id).worker_id == second


def test_requeue_worker_tasks_hands_back_without_counting_a_failure(db_ctx):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    upload(task_id, "frame_0001.png", b"partial")
    assert dispatch.requeue_worker_tasks(w(worker), "worker deleted") == 1
    task = db.session.get(Task, task_id)
    assert task.status == TaskStatus.QUEUED and task.outputs == []
    assert [e.reason for e in events(task_id, TaskEventKind.HANDED_BACK)] == ["worker deleted"]
    assert claim(worker) == task_id  # handing back is not failing


def test_hand_back_of_a_task_that_is_not_running_here_conflicts(sqlite_ctx):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    dispatch.hand_back_task(w(worker), task_id, "shutting down")
    with pytest.raises(Conflict):
        dispatch.hand_back_task(w(worker), task_id, "again")


def test_record_output_stores_the_blob_row_once_and_replaces_by_name(db_ctx):
    worker, _ = make_worker()
    _, (task_id,) = make_job()
    claim(worker)
    for content in (b"first render", b"second render", b"second render"):
        stored = storage.put_bytes(content)
        digest, size = stored.sha256, stored.size
        db.session.rollback()  # as the API does: the row is written inside record_output's transaction
        dispatch.record_output(w(worker), task_id, "frame_0001.png", digest, size)
    (row,) = db.session.execute(db.select(TaskOutput).where(TaskOutput.task_id == task_id)).scalars().all()
    assert (row.sha256, row.size) == (sha(b"second render"), len(b"second render"))
    with pytest.raises(ServiceError):
        dispatch.record_output(w(worker), task_id, "../escape", digest, size)


# -- one task per device slot ------------------------------------------------------------------------

def test_a_worker_runs_one_task_per_slot(db_ctx):
    worker, _ = make_worker(slots=None)
    make_job(tasks=4)
    first = dispatch.claim_task(w(worker))
    assert first is not None and first.slot == "0"
    assert dispatch.claim_task(w(worker)) is None  # the one default slot is busy: 204
    # A farm box that reported two GPUs runs two tasks at once, one per GPU, and no more.
    w(worker).capabilities = dict(w(worker).capabilities, slots=[{"id": "gpu0", "kind": "gpu"},
                                                                {"id": "gpu1", "kind": "gpu"}])
    db.session.commit()
    assert dispatch.claim_task(w(worker), slot="gpu1").slot == "gpu1"
    assert dispatch.claim_task(w(worker), slot="gpu1") is None
    assert dispatch.claim_task(w(worker)).slot == "gpu0"  # no slot named: the first free one
    assert dispatch.claim_task(w(worker)) is None
    with pytest.raises(ServiceError) as exc:
        dispatch.claim_task(w(worker), slot="gpu7")
    assert exc.value.code == "invalid_slot"


def test_the_database_refuses_a_second_running_task_on_a_slot(db_ctx):
    worker, _ = make_worker(slots=None)
    _, (a, b) = make_job(tasks=2)
    dispatch.claim_task(w(worker))
    other = db.session.get(Task, b)
    other.status, other.worker_id, other.slot = TaskStatus.RUNNING, worker, "0"  # what a racing claim would write
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

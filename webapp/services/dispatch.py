"""Dispatch: workers claim queued tasks atomically, hold them on a lease, finish or fail them.

Every function here that changes tasks runs in its own write transaction and commits: on SQLite the
transaction starts with BEGIN IMMEDIATE (one writer at a time, so a claim's read and write can never
be overtaken); on PostgreSQL task rows are locked (`FOR UPDATE`, claims with `SKIP LOCKED` so
concurrent claimers take different rows instead of queueing behind one).

Failure accounting reads the TaskEvent history. A FAILED event counts (for "never again to this
worker", "three different workers fail it -> the task fails" and "three failed tasks of a job ->
blocklisted for the job") until the task is requeued by `requeue_failed`, which writes a REQUEUED
event: the creator asked for a fresh start, so earlier failures stay in the history but stop counting.
"""

import dataclasses
import functools
import math
import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ..clock import utcnow
from ..database import begin_read_transaction, begin_write_transaction, commit, dialect_insert, holds_write_lock
from ..extensions import db
from ..models import (Job, JobInput, JobStatus, JobType, LedgerEntry, LedgerKind, StoredFile, Task, TaskEvent, TaskEventKind,
                      TaskOutput, TaskStatus, Verification, VerificationState, Worker, job_work)
from . import Conflict, ServiceError
from . import benchmarks, credit, demo, ledger, market, permissions, quotas, result_checks, storage, verification
from .write_behind import WriteBehind

MAX_TASK_FAILURES = 3  # different provider accounts failing one task: the task fails
BLOCKLIST_FAILURES = 3  # tasks of one job failed by one worker: no more of that job for it
# Failures of one job by all of one account's workers: no more of that job for any of them. Twice the
# worker's figure, so one broken node doesn't shut its farm out, while throwaway workers of one
# account can't add up to more than this many failed attempts on someone's job.
ACCOUNT_BLOCKLIST_FAILURES = 6
MAX_OUTPUTS = 1000
MESSAGE_MAX = 500
REASON_MAX = 500
LOG_TAIL_MAX = 64 * 1024
MAX_ETA_SECONDS = 366 * 24 * 3600
OUTPUT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REAP_BATCH = 500

FINISHED_JOB = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


def lease_seconds() -> int:
    return int(current_app.config["LEASE_SECONDS"])


# -- failure accounting ----------------------------------------------------------------------------
#
# Every failure is a FAILED event under its worker and its provider account. Two records are kept apart:
# - what fails a task: failures by MAX_TASK_FAILURES different accounts since the creator last
#   requeued it (a fresh start), and a non-retryable failure only once another account's worker
#   confirms it — so no one account, however many workers it makes, can fail someone's task;
# - who may take work: a worker never gets a task it failed, nor a job it failed BLOCKLIST_FAILURES
#   tasks of; an account's workers get none of a job they failed ACCOUNT_BLOCKLIST_FAILURES times.
#   This record is never wiped: a creator's requeue would otherwise hand saboteurs another go.

def _record_failure(task: Task, worker_id: int, reason: str, now: datetime, final: bool = False) -> None:
    provider_id = db.session.execute(db.select(Worker.owner_id).where(Worker.id == worker_id)).scalar_one()
    db.session.add(TaskEvent(task_id=task.id, job_id=task.job_id, worker_id=worker_id, provider_id=provider_id,
                             kind=TaskEventKind.FAILED, final=final, reason=reason[:REASON_MAX], created_at=now))
    db.session.flush()


def _failures_that_count(event):
    """FAILED `event` rows not followed by a REQUEUED event of the same task: what fails a task."""
    requeued = aliased(TaskEvent)
    return db.and_(
        event.kind == TaskEventKind.FAILED,
        ~db.select(requeued.id).where(requeued.task_id == event.task_id, requeued.kind == TaskEventKind.REQUEUED,
                                      requeued.id > event.id).exists(),
    )


def _task_fails_now(task: Task, final: bool) -> bool:
    """Whether the failure just recorded fails the task: MAX_TASK_FAILURES accounts failed it since its
    last fresh start, or it was final and another account's worker called it final too. A task meant
    for one worker only (a Bench Score run) fails at once: no one else may take it, and a new run is
    issued at the worker's next hello."""
    if task.for_worker_id is not None:
        return True
    failed = aliased(TaskEvent)
    counting = db.and_(failed.task_id == task.id, _failures_that_count(failed))
    accounts = db.session.execute(db.select(db.func.count(db.distinct(failed.provider_id))).where(counting)).scalar_one()
    if accounts >= MAX_TASK_FAILURES:
        return True
    if not final:
        return False
    finals = db.session.execute(db.select(db.func.count(db.distinct(failed.provider_id)))
                                .where(counting, failed.final.is_(True))).scalar_one()
    return finals >= 2


@functools.cache
def _claim_statement(gpu: bool):
    """UPDATE the first queued task a worker may take to running on its slot, RETURNING its id and job's:
    the first found FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent claims take different rows.

    Built once per GPU flag with bind parameters (worker_id, owner_id, price, types, and the claim's
    values), so each claim reuses the compiled SQL. Eligible: one of the worker's job types, GPU only for GPU workers, a maximum price
    per bench-hour at or over the worker's price (NULL: any), not a task the worker failed, not a job
    the worker is blocklisted on. Highest priority first, then oldest.
    """
    worker_id = db.bindparam("worker_id")
    conditions = [Task.status == TaskStatus.QUEUED, Task.type.in_(db.bindparam("types", expanding=True)),
                  db.or_(Task.max_price_micros.is_(None), Task.max_price_micros >= db.bindparam("price"))]
    if not gpu:
        conditions.append(Task.device != "gpu")
    failed = aliased(TaskEvent)
    conditions.append(~db.select(failed.id).where(
        failed.task_id == Task.id, failed.worker_id == worker_id, failed.kind == TaskEventKind.FAILED).exists())
    conditions.append(~_blocklisted(worker_id, db.bindparam("owner_id"), Task.job_id))
    conditions.append(db.or_(Task.for_worker_id.is_(None), Task.for_worker_id == worker_id))
    conditions.append(demo.claimable(Task.job_id))  # demo data (services/demo.py) is shown, never worked on
    conditions.append(credit.claimable(Task.job_id))  # money (services/credit.py): a job at its budget pauses
    # A verification task never goes to the account whose result it checks.
    conditions.append(db.or_(Task.type != JobType.VERIFY, ~db.select(Verification.id).where(
        Verification.verify_task_id == Task.id,
        db.or_(Verification.provider_id == db.bindparam("owner_id"),
               Verification.other_provider_id == db.bindparam("owner_id"))).exists()))
    first = (db.select(Task.id).where(*conditions).order_by(Task.priority.desc(), Task.id).limit(1)
             .with_for_update(of=Task, skip_locked=True).correlate(None).scalar_subquery())
    # One statement takes it: Core, since the write lock is held while it runs; the claimed row is loaded
    # as a Task after the commit.
    return (db.update(Task).where(Task.id == first).values(
        status=TaskStatus.RUNNING, worker_id=worker_id, slot=db.bindparam("slot"), bid_micros=db.bindparam("bid"),
        started_at=db.bindparam("now"), progress_at=db.bindparam("now"), bench_score=db.bindparam("score"),
        lease_expires_at=db.bindparam("lease_expires_at"), attempts=db.func.coalesce(Task.attempts, 0) + 1,
        progress=0.0, eta_seconds=None, message=None).returning(Task.id, Task.job_id))


# The hot path's statements, built once (a claim's and a completion's write transactions run them).
_EVENT = db.insert(TaskEvent.__table__).values(
    task_id=db.bindparam("task_id"), job_id=db.bindparam("job_id"), worker_id=db.bindparam("worker_id"),
    kind=db.bindparam("kind"), created_at=db.bindparam("now"))
_JOB_STATUS = db.select(Job.status).where(Job.id == db.bindparam("job_id"))
_BUSY_SLOTS = db.select(Task.slot).where(Task.worker_id == db.bindparam("worker_id"), Task.status == TaskStatus.RUNNING)


@functools.cache
def _waiting_statement(gpu: bool):
    """Whether any queued task has one of the worker's types, its device and a price it accepts: an index
    probe (ix_tasks_queued_type), a superset of what _claim_statement may give it."""
    conditions = [Task.status == TaskStatus.QUEUED, Task.type.in_(db.bindparam("types", expanding=True)),
                  db.or_(Task.max_price_micros.is_(None), Task.max_price_micros >= db.bindparam("price")),
                  db.or_(Task.for_worker_id.is_(None), Task.for_worker_id == db.bindparam("worker_id"))]
    if not gpu:
        conditions.append(Task.device != "gpu")
    return db.select(Task.id).where(*conditions).limit(1)


def _work_waiting(worker_id: int, types: list, gpu: bool, price: int) -> bool:
    return db.session.execute(_waiting_statement(gpu), {"types": types, "price": price,
                                                        "worker_id": worker_id}).first() is not None


def _failed_here(worker_id: int, task_id: int) -> bool:
    failed = aliased(TaskEvent)
    return db.session.execute(
        db.select(failed.id).where(failed.task_id == task_id, failed.worker_id == worker_id,
                                   failed.kind == TaskEventKind.FAILED).limit(1)
    ).first() is not None


def _blocklisted(worker_id, owner_id, job_id):
    """SQL truth of "this worker failed BLOCKLIST_FAILURES attempts at this job, or its account's workers
    ACCOUNT_BLOCKLIST_FAILURES" (values or SQL expressions)."""
    by_worker, by_account = aliased(TaskEvent), aliased(TaskEvent)
    worker_count = db.select(db.func.count(by_worker.id)).where(
        by_worker.job_id == job_id, by_worker.worker_id == worker_id,
        by_worker.kind == TaskEventKind.FAILED).scalar_subquery()
    account_count = db.select(db.func.count(by_account.id)).where(
        by_account.job_id == job_id, by_account.provider_id == owner_id,
        by_account.kind == TaskEventKind.FAILED).scalar_subquery()
    return db.or_(worker_count >= BLOCKLIST_FAILURES, account_count >= ACCOUNT_BLOCKLIST_FAILURES)


def is_blocklisted(worker_id: int, job_id: int) -> bool:
    owner_id = db.session.execute(db.select(Worker.owner_id).where(Worker.id == worker_id)).scalar_one()
    return bool(db.session.execute(db.select(_blocklisted(worker_id, owner_id, job_id))).scalar_one())


# -- ownership: permissions.task_of_worker answers which tasks a worker token reaches ---------------

def _not_yours() -> Conflict:
    return Conflict("task_not_running", "This task is no longer running on this worker (it was canceled, "
                                        "finished or given to another worker): stop working on it.")


def running_task_of(worker: Worker, task_id: int, lock: bool = False) -> Task:
    """The worker's own running task; 404 for tasks it never held, 409 for ones it no longer holds."""
    task = permissions.task_of_worker(worker.id, task_id, lock=lock)
    if task.status != TaskStatus.RUNNING or task.worker_id != worker.id:
        raise _not_yours()
    return task


# -- a job's status follows its tasks -------------------------------------------------------------

def _job_has(job_id: int, *statuses: TaskStatus) -> bool:
    """Whether any of the job's work tasks is in one of `statuses`: one probe of ix_tasks_job_status_finished."""
    return db.session.connection().execute(_job_has_statement(statuses), {"job_id": job_id}).first() is not None


@functools.cache
def _job_has_statement(statuses: tuple[TaskStatus, ...]):
    return db.select(Task.id).where(Task.job_id == db.bindparam("job_id"), Task.status.in_(statuses), job_work()).limit(1)


def roll_up_status(job: Job) -> JobStatus:
    """A job's status follows its tasks: any running -> running; all done -> completed/failed/canceled."""
    if job.status == JobStatus.RUNNING and (_job_has(job.id, TaskStatus.RUNNING) or (
            _job_has(job.id, TaskStatus.QUEUED) and _job_has(job.id, TaskStatus.COMPLETED, TaskStatus.FAILED))):
        # Still running, as it is after nearly every claim and completion: no need to count 30,000 tasks.
        credit.sync_hold(job)
        return job.status
    counts = dict(db.session.execute(
        db.select(Task.status, db.func.count()).where(Task.job_id == job.id, job_work()).group_by(Task.status)
    ).all())
    active = counts.get(TaskStatus.QUEUED, 0) + counts.get(TaskStatus.RUNNING, 0)
    if job.status == JobStatus.CANCELED:
        status = JobStatus.CANCELED
    elif active:
        started = counts.get(TaskStatus.RUNNING, 0) or any(
            counts.get(s, 0) for s in (TaskStatus.COMPLETED, TaskStatus.FAILED))
        status = JobStatus.RUNNING if started else JobStatus.QUEUED
    elif counts.get(TaskStatus.FAILED, 0):
        status = JobStatus.FAILED
    elif counts.get(TaskStatus.COMPLETED, 0):
        status = JobStatus.COMPLETED
    else:
        status = JobStatus.CANCELED
    if status != job.status:
        job.status = status
        job.finished_at = utcnow() if status in FINISHED_JOB else None
    credit.sync_hold(job)  # money (services/credit.py): a budget is held while the job runs, released when it ends
    return status


# -- the task lifecycle ----------------------------------------------------------------------------

DEFAULT_SLOT = "0"  # a worker that reports no slots runs one task at a time

# What a worker brings to a claim, read from its hello; services/queue_status.py asks the same questions
# of every online worker to say why a job waits, so each answer lives here once.


def claim_types(worker: Worker) -> list[JobType]:
    """The job types the worker may claim: those it reported that this portal knows."""
    known = {t.value for t in JobType}
    return [JobType(t) for t in (worker.capabilities or {}).get("job_types") or () if t in known]


def has_gpu(worker: Worker) -> bool:
    """Whether the worker may take GPU-only tasks (its hello said it has a GPU)."""
    return bool((worker.capabilities or {}).get("gpu"))


def reported_slots(worker: Worker) -> list[str]:
    """The worker's device slots from hello; one, DEFAULT_SLOT, when it reported none."""
    return [s["id"] for s in (worker.capabilities or {}).get("slots") or []] or [DEFAULT_SLOT]


def slot_kind(worker: Worker, slot: str) -> str | None:
    """The kind the worker reported for one of its slots (CUDA, CPU...); None for the implicit one."""
    return next((s.get("kind") for s in (worker.capabilities or {}).get("slots") or [] if s.get("id") == slot), None)


def slot_takes_gpu_tasks(worker: Worker, slot: str) -> bool:
    """Whether a slot may run GPU-only tasks: the worker has a GPU and this is not its CPU slot (the app
    shows the renders of its CPU slot no GPU)."""
    return has_gpu(worker) and slot_kind(worker, slot) != "CPU"


blocklisted = _blocklisted  # the SQL predicate, for queue_status's grouped question over a page of jobs


def slot_of(worker: Worker, slot) -> str | None:
    """The claim's device slot: the one named (it must be one the worker reported in hello), else its first
    free one; None when every slot is busy. A worker that reports no slots has one, DEFAULT_SLOT."""
    reported = reported_slots(worker)
    if slot is not None:
        if isinstance(slot, bool) or not isinstance(slot, (str, int)) or str(slot) not in reported:
            raise ServiceError("invalid_slot", f"'slot' must be one of the slots this worker reported in hello "
                                               f"({', '.join(reported)}).")
        candidates = [str(slot)]
    else:
        candidates = reported
    busy = set(db.session.connection().execute(_BUSY_SLOTS, {"worker_id": worker.id}).scalars())
    return next((s for s in candidates if s not in busy), None)


def claim_task(worker: Worker, now: datetime | None = None, slot=None) -> Task | None:
    """Give the worker the first eligible queued task (highest priority, then oldest) for one of its
    device slots, or None.

    Eligible: a job type it reported, GPU when the task requires one, a price per bench-hour at or
    under the task's maximum, a task it has not failed, a job it is not blocklisted on. A slot runs one
    task at a time: a claim for a busy slot gets None (the unique running-slot index makes it hold under
    racing claims too).
    """
    now = now or utcnow()
    worker_id = worker.id
    if worker.suspended_at is not None:
        return None  # a failed spot check: no more work until the operator looks at it
    if worker.paused_at is not None:
        return None  # paused from the portal (services/fleet.py): the app may not have heard it yet
    types = claim_types(worker)
    if not types:
        return None
    average = None if worker.bid_micros is not None else market.average_bid_micros(now)
    bid = market.effective_bid_micros(worker, now, average)
    # A slot named for which the portal measured its own Bench Score is priced by that device's score.
    score = benchmarks.slot_score(worker, slot)
    price = market.price_per_bench_hour_micros(bid, score or market.UNBENCHED_SCORE)
    # Most claims of a large network find nothing: they ask without the write lock (the worker API began
    # a read transaction), and only a claim that may find work queues for it.
    if not holds_write_lock(db.session):
        if not _work_waiting(worker_id, types, has_gpu(worker), price):
            if slot is not None:
                slot_of(worker, slot)  # a slot it never reported is still a 4xx
            db.session.commit()
            return None
        # The worker as the read loaded it a moment ago is what the claim goes by: no need to load it again.
        begin_write_transaction(db.session, keep_loaded=True)
    slot = slot_of(worker, slot)
    if slot is None:  # every slot busy
        db.session.commit()
        return None
    connection = db.session.connection()
    try:
        # Now, not at the commit: on PostgreSQL a racing claim for this slot waits here for the winner's
        # commit and then fails the unique running-slot index; that claim is a 204.
        claimed = connection.execute(_claim_statement(slot_takes_gpu_tasks(worker, slot)), {
            "worker_id": worker_id, "owner_id": worker.owner_id, "price": price, "types": types, "slot": slot,
            "bid": bid, "now": now, "score": score, "lease_expires_at": now + timedelta(seconds=lease_seconds())}).first()
    except IntegrityError:
        db.session.rollback()
        return None
    if claimed is None:
        db.session.commit()
        return None
    task_id, job_id = claimed
    connection.execute(_EVENT, {"task_id": task_id, "job_id": job_id, "worker_id": worker_id,
                                "kind": TaskEventKind.CLAIMED, "now": now})
    # A claim can only move a job from queued to running; once running, rolling up (a count over all
    # of the job's tasks) would change nothing, so the hot path skips it.
    if connection.execute(_JOB_STATUS, {"job_id": job_id}).scalar_one() != JobStatus.RUNNING:
        roll_up_status(db.session.get(Job, job_id, populate_existing=True))
    try:
        db.session.commit()
    except IntegrityError:  # another claim for this slot won the race
        db.session.rollback()
        return None
    return db.session.get(Task, task_id, populate_existing=True)  # read after the commit: no writer waits on it


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ServiceError(f"invalid_{name}", f"'{name}' must be a number from {low:g} to {high:g}.")
    return float(value)


_ADVANCED = Task.progress < db.bindparam("new_progress")
_PROGRESS = db.update(Task).where(
    Task.id == db.bindparam("task_id"), Task.worker_id == db.bindparam("by_worker"), Task.status == TaskStatus.RUNNING,
).values(progress=db.bindparam("new_progress"), eta_seconds=db.bindparam("eta_s"), message=db.bindparam("new_message"),
         progress_at=db.case((_ADVANCED, db.bindparam("now")), else_=Task.progress_at),
         lease_expires_at=db.case((db.or_(_ADVANCED, Task.progress_at >= db.bindparam("stalled_before")),
                                   db.bindparam("lease_until")), else_=Task.lease_expires_at))


def report_progress(worker_id: int, task_id: int, progress, eta_s=None, message=None,
                    now: datetime | None = None) -> bool:
    """Record progress (0..1) and extend the lease, with this process's ProgressBatch. False when the task
    is no longer the worker's running task (canceled, finished or reassigned): the app must stop it."""
    now = now or utcnow()
    progress = _number(progress, "progress", 0, 1)
    if eta_s is not None:
        eta_s = int(_number(eta_s, "eta_s", 0, MAX_ETA_SECONDS))
    if message is not None and not isinstance(message, str):
        raise ServiceError("invalid_message", "'message' must be a string.")
    message = (message or "").strip()[:MESSAGE_MAX] or None
    task_id = permissions.valid_id(task_id, "task")
    running = db.session.connection().execute(_RUNNING_HERE, {"task_id": task_id, "worker_id": worker_id}).first()
    if running is None:
        try:
            permissions.task_of_worker(worker_id, task_id)  # 404 when it was never this worker's
        finally:
            db.session.commit()
        return False
    db.session.commit()
    ProgressBatch.of(current_app._get_current_object()).add((task_id, worker_id), _Report(progress, eta_s, message, now))
    return True


@dataclasses.dataclass(frozen=True)
class _Report:
    progress: float
    eta_s: int | None
    message: str | None
    at: datetime


class ProgressBatch(WriteBehind):
    """This process's progress reports not yet written, kept per task and worker (the latest wins) and
    written together. A running task reports every couple of seconds (the app: PROGRESS_REPORT_S), so a
    network of 10,000 busy workers sends thousands a second, far more than a writer turn each could take.
    What a report answers (go on, or stop) is read at once; what it writes lands within
    PROGRESS_BATCH_SECONDS, a lease being a minute or more. A crash loses that many seconds of progress,
    which the next report brings again."""
    SETTING = "PROGRESS_BATCH_SECONDS"
    WHAT = "progress reports"

    def merge(self, before: _Report, report: _Report) -> _Report:
        return report if report.at >= before.at else before

    def write(self, reports: dict[tuple[int, int], _Report]) -> None:
        # Each row's conditional UPDATE (_PROGRESS), as a report on its own would run it: it lands only
        # while the task is still that worker's running task, and extends the lease only while the task
        # moves forward or stalled less than STALL_SECONDS, so pinging the same progress forever holds
        # no task (nor bills its time).
        stall = timedelta(seconds=int(current_app.config["STALL_SECONDS"]))
        lease = timedelta(seconds=lease_seconds())
        db.session.connection().execute(_PROGRESS, [
            {"task_id": task_id, "by_worker": worker_id, "new_progress": r.progress, "eta_s": r.eta_s,
             "new_message": r.message, "now": r.at, "stalled_before": r.at - stall, "lease_until": r.at + lease}
            for (task_id, worker_id), r in reports.items()])


def parse_outputs(outputs) -> list[dict]:
    if not isinstance(outputs, list) or not outputs:
        raise ServiceError("invalid_outputs", "'outputs' must be a non-empty list of {name, sha256, size}.")
    if len(outputs) > MAX_OUTPUTS:
        raise ServiceError("invalid_outputs", f"A task can declare at most {MAX_OUTPUTS} outputs.")
    parsed, seen = [], set()
    for i, item in enumerate(outputs):
        if not isinstance(item, dict):
            raise ServiceError("invalid_outputs", f"outputs[{i}] must be an object {{name, sha256, size}}.")
        name, sha256, size = item.get("name"), item.get("sha256"), item.get("size")
        check_output_name(name)
        if not isinstance(sha256, str) or not SHA256_RE.match(sha256.lower()):
            raise ServiceError("invalid_outputs", f"outputs[{i}].sha256 must be 64 hex digits.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ServiceError("invalid_outputs", f"outputs[{i}].size must be a whole number of bytes.")
        if name in seen:
            raise ServiceError("invalid_outputs", f"Output {name!r} is declared twice.")
        seen.add(name)
        parsed.append({"name": name, "sha256": sha256.lower(), "size": size})
    return parsed


def check_output_name(name) -> str:
    """Output names become download names: short, plain, no paths."""
    if not isinstance(name, str) or not OUTPUT_NAME_RE.match(name) or ".." in name:
        raise ServiceError("invalid_name", "Output names are 1-128 letters, digits, '.', '_' or '-', start "
                                           "with a letter or digit, and contain no '..'.")
    return name


def complete_task(worker: Worker, task_id: int, outputs, compute_seconds, now: datetime | None = None) -> int:
    """Finish the worker's running task once its declared outputs are all uploaded; returns the reward.

    Compute time is what the portal observed (claim to now), bounded by what the worker reported.
    A repeated complete by the same worker (a lost response) returns the same reward and changes nothing.
    """
    now = now or utcnow()
    declared = parse_outputs(outputs)
    reported = _number(compute_seconds, "compute_seconds", 0, 10 * 366 * 24 * 3600)
    worker_id = worker.id
    read = _read_pass(worker_id, task_id, declared)
    begin_write_transaction(db.session)
    try:
        task = _same_attempt_locked(read, worker_id, task_id) or permissions.task_of_worker(worker_id, task_id, lock=True)
        if task.status == TaskStatus.COMPLETED and task.worker_id == worker_id:
            reward = task.reward_micros or 0
            db.session.commit()
            return reward
        if task.status != TaskStatus.RUNNING or task.worker_id != worker_id:
            raise _not_yours()
        uploaded = {row.name: row for row in db.session.connection().execute(_UPLOADED, {"task_id": task_id})}
        for item in declared:
            have = uploaded.get(item["name"])
            if have is None:
                raise ServiceError("missing_output", f"Output {item['name']!r} was not uploaded: PUT it to "
                                                     f"/api/v1/worker/tasks/{task_id}/outputs/{item['name']} first.")
            if have.sha256 != item["sha256"] or have.size != item["size"]:
                raise ServiceError("output_mismatch", f"Output {item['name']!r} was uploaded with SHA-256 "
                                                      f"{have.sha256} and {have.size} bytes, not what was declared: "
                                                      "upload it again.")
        names = {item["name"] for item in declared}
        undeclared = [row.id for name, row in uploaded.items() if name not in names]
        if undeclared:  # uploaded but not declared: not part of the result
            db.session.execute(db.delete(TaskOutput).where(TaskOutput.id.in_(undeclared)))
        same_attempt = read is not None and read.task is task
        try:
            if task.type == JobType.VERIFY:
                verification.check_verifier_outputs(task, declared)
            elif not (same_attempt and read.files_pass):
                check_result(task, declared)
        except result_checks.InvalidOutput as exc:
            _refuse_result(task, worker_id, f"Invalid output: {exc.name} {exc.rule}", now)
            db.session.commit()
            raise ServiceError("invalid_output", f"{exc.name} {exc.rule}. The result was refused and counts as a "
                                                 "failed attempt; the task went to another worker.", 422) from None

        observed = max(0.0, (now - task.started_at).total_seconds()) if task.started_at else 0.0
        seconds = min(reported, observed, read.billable_bound if same_attempt else market.billable_seconds_bound(task))
        bid = task.bid_micros if task.bid_micros is not None else market.effective_bid_micros(worker, now)
        reward = min(ledger.task_reward_micros(bid, seconds), market.price_cap_micros(task, seconds))
        job = task.job  # held, so the cap's locked read refreshes this row and the roll-up and the check use it
        reward = credit.cap_reward(task, reward, now)  # money (services/credit.py): never past the job's budget
        task.status = TaskStatus.COMPLETED
        task.progress = 1.0
        task.eta_seconds = None
        task.lease_expires_at = None
        task.finished_at = now
        task.compute_seconds = seconds
        # SQL, so concurrent completes add up; flushed with the credit's row and the earnings beside it.
        task.worker.compute_seconds = Worker.compute_seconds + seconds
        if task.type == JobType.VERIFY:
            ledger.credit_task_reward(task, reward, now + verification.settle_delay(), kind=LedgerKind.CHECK_REWARD)
            _act_on_verdict(verification.judge(task, declared, now), now)
        else:
            # The network pays for its own work (Bench Score runs); creators pay for theirs.
            kind = LedgerKind.CHECK_REWARD if task.type == JobType.BENCHMARK else LedgerKind.TASK_REWARD
            ledger.credit_task_reward(task, reward, verification.maybe_check(task, worker, now), kind=kind)
        ledger.bump_daily(worker_id, ledger.day_of(now), task_earnings_micros=reward, tasks_completed=1,
                          compute_seconds=seconds)
        db.session.connection().execute(_EVENT, {"task_id": task_id, "job_id": task.job_id, "worker_id": worker_id,
                                                 "kind": TaskEventKind.COMPLETED, "now": now})
        roll_up_status(job)
        db.session.commit()
        return reward
    except IntegrityError:
        # Another transaction credited this task first (the unique ledger row): answer with its result.
        db.session.rollback()
        task = db.session.get(Task, task_id)
        if task is not None and task.status == TaskStatus.COMPLETED and task.worker_id == worker_id:
            return task.reward_micros or 0
        raise _not_yours() from None
    except Exception:
        db.session.rollback()
        raise


_UPLOADED = db.select(TaskOutput.id, TaskOutput.name, TaskOutput.sha256, TaskOutput.size).where(
    TaskOutput.task_id == db.bindparam("task_id"))


@dataclasses.dataclass(frozen=True)
class _ReadPass:
    """What complete_task learns of a running attempt before it takes the write lock."""
    task: Task  # as loaded then, with its job
    files_pass: bool  # the declared files pass check_result
    billable_bound: float  # market.billable_seconds_bound, from the job's other verified results


_ATTEMPT = db.select(Task.status, Task.worker_id, Task.attempts).where(Task.id == db.bindparam("task_id")).with_for_update()


def _same_attempt_locked(read: "_ReadPass | None", worker_id: int, task_id: int) -> Task | None:
    """The read pass's task, when its row (locked now) shows the same attempt still running on this worker:
    a running attempt's other columns were set by its claim and stay as they are until it ends (progress
    aside, which completing overwrites), so the task needs no loading again under the lock."""
    if read is None:
        return None
    row = db.session.connection().execute(_ATTEMPT, {"task_id": task_id}).first()
    if row is None or (row.status, row.worker_id, row.attempts) != (TaskStatus.RUNNING, worker_id, read.task.attempts):
        return None
    return read.task


def _read_pass(worker_id: int, task_id: int, declared: list[dict]) -> _ReadPass | None:
    """The reads of a completion that need no write lock, done before it: decoding the images and the
    billing bound's median over peers held up every other writer. The declared names and SHA-256s are
    checked against the uploads under the lock, and stored blobs never change, so the file check holds;
    other results completing meanwhile move the peers' median by nothing that matters. None when the
    task is not this worker's running one: the locked pass finds that and answers."""
    begin_read_transaction(db.session)
    try:
        task = permissions.task_of_worker(worker_id, task_id)
        if task.status != TaskStatus.RUNNING or task.worker_id != worker_id:
            return None
        # A check's outputs are verification's to judge, under the lock.
        passed = task.type != JobType.VERIFY and _result_passes(task, declared)
        return _ReadPass(task, passed, market.billable_seconds_bound(task))
    except ServiceError:
        return None
    finally:
        # Kept loaded: the locked pass reads the task and its job afresh, and of the worker only what never
        # changes (its id and account).
        commit(db.session, keep_loaded=True)


def _result_passes(task: Task, declared: list[dict]) -> bool:
    try:
        check_result(task, declared)
        return True
    except (ServiceError, result_checks.InvalidOutput, OSError, ValueError):
        return False


def check_result(task: Task, declared: list[dict]) -> None:
    """A job task's declared outputs must be exactly the files it should produce (quotas.expected_outputs,
    the same names its uploads were held to), each a whole image of the job's format at the expected
    size (result_checks.InvalidOutput otherwise)."""
    expected, size = quotas.expected_outputs(task)
    fmt = task.params["format"] if task.type == JobType.RENDER else "PNG"
    result_checks.check_output_names([item["name"] for item in declared], expected)
    for item in declared:
        path = storage.path_for(item["sha256"])
        # A scene the portal could not read (not a real Blender file) has no known size: the frame
        # must still decode in full as the job's format.
        result_checks.check_output_file(path, fmt=fmt, expected_size=size or result_checks.image_size(path, item["name"]),
                                        name=item["name"])


def _refuse_result(task: Task, worker_id: int, reason: str, now: datetime) -> None:
    """A result that is not acceptable: a failure of this worker (it never gets the task again), the
    task back in the queue or failed, its outputs gone so the creator never sees them, and its checks
    still waiting called off."""
    for check in verification.open_checks(task):
        waiting = check.verify_task
        if waiting.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            db.session.add(TaskEvent(task_id=waiting.id, job_id=waiting.job_id, worker_id=waiting.worker_id,
                                     kind=TaskEventKind.CANCELED, created_at=now))
            waiting.status, waiting.finished_at, waiting.lease_expires_at = TaskStatus.CANCELED, now, None
        check.state, check.decided_at, check.reason = VerificationState.NONE, now, "the result was taken back"
    _record_failure(task, worker_id, reason, now)
    if task.type != JobType.VERIFY and _task_fails_now(task, final=False):
        task.status, task.finished_at, task.lease_expires_at, task.message = TaskStatus.FAILED, now, None, reason[:MESSAGE_MAX]
        db.session.execute(db.delete(TaskOutput).where(TaskOutput.task_id == task.id))
    else:
        _requeue(task)
        task.message = f"Retrying: {reason}"[:MESSAGE_MAX]
    ledger.bump_daily(worker_id, ledger.day_of(now), tasks_failed=1)
    roll_up_status(task.job)


def _act_on_verdict(check: Verification, now: datetime) -> None:
    """What a decided check does: a pass makes the reward available; a first "no match" asks a second
    opinion; a failure takes the result back and suspends its worker; a second opinion that matches
    overrules the first verifier, whose check reward is taken back and who is suspended."""
    if check.round == 1 and check.state == VerificationState.FAILED:
        verification.ask_second_opinion(check, now)
        return
    if check.round == 2 and check.state in (VerificationState.PASSED, VerificationState.FAILED):
        first = verification.first_round(check)
        first.state, first.decided_at = VerificationState.NONE, now  # superseded: the second opinion counts
        if check.state == VerificationState.PASSED:
            liar = db.session.get(Task, first.verify_task_id)
            entry = ledger.reward_of(liar.id, liar.attempts)
            if entry is not None:
                ledger.reverse(entry, "A second opinion contradicted this check", now)
            suspend_worker(liar.worker, f"Its spot check of task {check.task_id} was contradicted by a second "
                                        "opinion from another provider.", now)
    if check.state == VerificationState.PASSED:
        entry = ledger.reward_of(check.task_id, check.attempt)
        if entry is not None:
            ledger.settle(entry, now)
        checked = db.session.get(Task, check.task_id)
        if checked.type == JobType.BENCHMARK:
            benchmarks.record_score(checked, now)
    elif check.state == VerificationState.FAILED:
        suspend_worker(db.session.get(Worker, check.worker_id), check.reason, now)


def decide_stale_disputes(now: datetime | None = None) -> int:
    """Periodic: a dispute no third account took up in time is decided by the first verdict; commits."""
    now = now or utcnow()
    begin_write_transaction(db.session)
    decided = 0
    for second in verification.stale_disputes(now):
        first = verification.first_round(second)
        waiting = db.session.get(Task, second.verify_task_id)
        if waiting.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            waiting.status, waiting.finished_at, waiting.lease_expires_at = TaskStatus.CANCELED, now, None
        second.state, second.decided_at, second.reason = VerificationState.NONE, now, "no third provider in time"
        first.state, first.decided_at = VerificationState.FAILED, now
        first.reason = (first.reason or "").replace("Disputed, a second opinion is asked: ", "", 1)
        checked = db.session.get(Task, first.task_id)
        if checked.status == TaskStatus.COMPLETED and checked.attempts == first.attempt:
            suspend_worker(db.session.get(Worker, first.worker_id), first.reason, now)
        decided += 1
    db.session.commit()
    return decided


def _take_back(task: Task, reason: str, now: datetime) -> None:
    """Reverse the reward of the task's current attempt and refuse its result."""
    entry = ledger.reward_of(task.id, task.attempts)
    if entry is not None:
        ledger.reverse(entry, reason, now)
    _refuse_result(task, task.worker_id, reason, now)


def suspend_worker(worker: Worker, reason: str, now: datetime) -> None:
    """Stop a worker caught delivering a wrong result: no more tasks, and every result of it whose money
    has not settled yet is taken back and rendered again by someone else (inside the caller's transaction)."""
    worker.suspended_at, worker.suspended_reason = now, reason[:500]
    pending = db.session.execute(
        db.select(Task).join(LedgerEntry, db.and_(LedgerEntry.task_id == Task.id, LedgerEntry.attempt == Task.attempts))
        .where(Task.worker_id == worker.id, Task.status == TaskStatus.COMPLETED, job_work(),
               LedgerEntry.kind == LedgerKind.TASK_REWARD,
               db.or_(LedgerEntry.available_at.is_(None), LedgerEntry.available_at > now))
        .with_for_update(of=Task).execution_options(populate_existing=True)).scalars().all()
    for task in pending:
        _take_back(task, f"Result taken back: {reason}", now)
    for running in db.session.execute(db.select(Task).where(
            Task.worker_id == worker.id, Task.status == TaskStatus.RUNNING)).scalars():
        _hand_back(running, worker.id, "worker suspended", now)
        roll_up_status(running.job)


def _requeue(task: Task) -> None:
    """Back to the queue as a fresh attempt: the next worker starts from nothing."""
    task.status = TaskStatus.QUEUED
    task.worker_id = None
    task.slot = None
    task.lease_expires_at = None
    task.started_at = None
    task.finished_at = None
    task.bid_micros = None
    task.progress = 0.0
    task.eta_seconds = None
    task.message = None
    db.session.execute(db.delete(TaskOutput).where(TaskOutput.task_id == task.id))


def fail_task(worker: Worker, task_id: int, reason, log_tail=None, retryable=True,
              now: datetime | None = None) -> TaskStatus:
    """The worker could not finish its task. The task goes back to the queue (never to this worker
    again) until MAX_TASK_FAILURES accounts have failed it, or a non-retryable failure is confirmed
    by another account's worker (see failure accounting above). Repeating a fail the portal already
    recorded changes nothing. Returns the task's new status."""
    now = now or utcnow()
    if not isinstance(reason, str) or not reason.strip():
        raise ServiceError("invalid_reason", "'reason' must say in one line why the task failed.")
    if log_tail is not None and not isinstance(log_tail, str):
        raise ServiceError("invalid_log_tail", "'log_tail' must be a string.")
    if not isinstance(retryable, bool):
        raise ServiceError("invalid_retryable", "'retryable' must be true or false.")
    reason = reason.strip()[:REASON_MAX]
    log_tail = log_tail[-LOG_TAIL_MAX:] if log_tail else None
    worker_id = worker.id
    begin_write_transaction(db.session)
    try:
        task = permissions.task_of_worker(worker_id, task_id, lock=True)
        if task.status != TaskStatus.RUNNING or task.worker_id != worker_id:
            if _failed_here(worker_id, task_id):
                status = task.status
                db.session.commit()
                return status
            raise _not_yours()
        _record_failure(task, worker_id, reason, now, final=not retryable)
        task.log_tail = log_tail
        if _task_fails_now(task, final=not retryable):
            task.status = TaskStatus.FAILED
            task.lease_expires_at = None
            task.eta_seconds = None
            task.finished_at = now
            task.message = reason
        else:
            _requeue(task)
            confirm = "" if retryable else " (to be confirmed on another provider's worker)"
            task.message = f"Retrying after a failure{confirm}: {reason}"[:MESSAGE_MAX]
        ledger.bump_daily(worker_id, ledger.day_of(now), tasks_failed=1)
        roll_up_status(task.job)
        status = task.status
        db.session.commit()
        return status
    except Exception:
        db.session.rollback()
        raise


def hand_back_task(worker: Worker, task_id: int, reason: str | None = None, now: datetime | None = None) -> None:
    """The worker gives its running task back unfinished (clean shutdown): no failure is counted."""
    now = now or utcnow()
    worker_id = worker.id
    begin_write_transaction(db.session)
    try:
        task = running_task_of(worker, task_id, lock=True)
        _hand_back(task, worker_id, reason if isinstance(reason, str) else None, now)
        roll_up_status(task.job)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def _hand_back(task: Task, worker_id: int, reason: str | None, now: datetime) -> None:
    db.session.add(TaskEvent(task_id=task.id, job_id=task.job_id, worker_id=worker_id,
                             kind=TaskEventKind.HANDED_BACK, reason=(reason or "")[:REASON_MAX] or None,
                             created_at=now))
    _requeue(task)


def requeue_worker_tasks(worker: Worker, reason: str, now: datetime | None = None) -> int:
    """Hand back every task the worker is running (it was deleted or went away); commits."""
    now = now or utcnow()
    worker_id = worker.id
    begin_write_transaction(db.session)
    tasks = db.session.execute(
        db.select(Task).where(Task.worker_id == worker_id, Task.status == TaskStatus.RUNNING)
        .with_for_update(of=Task).execution_options(populate_existing=True)
    ).scalars().all()
    for task in tasks:
        _hand_back(task, worker_id, reason, now)
    for job in {task.job for task in tasks}:
        roll_up_status(job)
    db.session.commit()
    return len(tasks)


def reap_expired_leases(now: datetime | None = None) -> int:
    """Put running tasks whose lease ran out back in the queue (the periodic lease reaper)."""
    now = now or utcnow()
    begin_write_transaction(db.session)
    tasks = db.session.execute(
        db.select(Task).where(Task.status == TaskStatus.RUNNING, Task.lease_expires_at < now)
        .order_by(Task.id).limit(REAP_BATCH)
        .with_for_update(of=Task, skip_locked=True).execution_options(populate_existing=True)
    ).scalars().all()
    for task in tasks:
        db.session.add(TaskEvent(task_id=task.id, job_id=task.job_id, worker_id=task.worker_id,
                                 kind=TaskEventKind.LEASE_EXPIRED, created_at=now,
                                 reason=f"No progress for {lease_seconds()} s"))
        _requeue(task)
    for job in {task.job for task in tasks}:
        roll_up_status(job)
    db.session.commit()
    return len(tasks)


def cancel_job(job: Job, now: datetime | None = None) -> int:
    """Cancel a job's queued and running tasks (running workers learn it at their next progress report).
    A finished job is left as it is. Returns how many tasks were canceled; commits."""
    now = now or utcnow()
    job_id = job.id
    begin_write_transaction(db.session)
    job = db.session.execute(db.select(Job).where(Job.id == job_id).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one()
    if job.status in FINISHED_JOB:
        db.session.commit()
        return 0
    tasks = db.session.execute(
        db.select(Task).where(Task.job_id == job_id, Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]),
                              job_work())
        .with_for_update(of=Task).execution_options(populate_existing=True)
    ).scalars().all()
    for task in tasks:
        db.session.add(TaskEvent(task_id=task.id, job_id=job_id, worker_id=task.worker_id,
                                 kind=TaskEventKind.CANCELED, created_at=now))
        task.status = TaskStatus.CANCELED
        task.lease_expires_at = None
        task.eta_seconds = None
        task.finished_at = now
    job.status = JobStatus.CANCELED
    job.finished_at = now
    roll_up_status(job)
    db.session.commit()
    return len(tasks)


def cancel(job: Job, now: datetime | None = None) -> int:
    """The creator's Cancel: like cancel_job, but a finished job is a Conflict (there is nothing to cancel)."""
    if job.status in FINISHED_JOB:
        raise Conflict("job_finished", f"The job is already {job.status.value}: there is nothing to cancel.")
    return cancel_job(job, now)


def requeue_failed(job: Job, now: datetime | None = None) -> int:
    """Give the job's failed tasks a fresh start; returns how many; commits.

    Each gets a REQUEUED event, after which its earlier failures no longer fail it: MAX_TASK_FAILURES
    accounts must fail it anew. Who failed what still decides who may take it (a worker never gets a
    task it failed; blocklists stand), so a requeue gives no saboteur another go.
    """
    now = now or utcnow()
    job_id = job.id
    begin_write_transaction(db.session)
    job = db.session.execute(db.select(Job).where(Job.id == job_id).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one()
    if job.status == JobStatus.CANCELED:
        db.session.rollback()
        raise Conflict("job_canceled", "The job was canceled; submit it again instead of requeueing.")
    tasks = db.session.execute(
        db.select(Task).where(Task.job_id == job_id, Task.status == TaskStatus.FAILED, job_work())
        .with_for_update(of=Task).execution_options(populate_existing=True)
    ).scalars().all()
    if not tasks:
        db.session.rollback()
        raise Conflict("nothing_to_requeue", "The job has no failed tasks.")
    for task in tasks:
        db.session.add(TaskEvent(task_id=task.id, job_id=job_id, worker_id=None,
                                 kind=TaskEventKind.REQUEUED, created_at=now))
        _requeue(task)
    roll_up_status(job)
    db.session.commit()
    return len(tasks)


# -- outputs and estimates -------------------------------------------------------------------------

def store_output(worker: Worker, task_id: int, name: str, stream, sha256: str, max_bytes: int) -> tuple[str, int]:
    """Receive one output of the worker's running task: refused before a byte is read when the task is
    not its own, stored content-addressed with its SHA-256 checked, then attached by record_output.
    Returns the SHA-256 and size stored."""
    check_output_name(name)
    # Only the files the task delivers, each no larger than its image can be (409 / 413 before reading).
    max_bytes = quotas.output_allowance(running_task_of(worker, task_id), name, max_bytes)
    commit(db.session, keep_loaded=True)  # end the read transaction: the upload may take minutes
    digest, size = storage.store_blob(stream, max_bytes, sha256.lower())
    record_output(worker, task_id, name, digest, size)
    return digest, size


def record_output(worker: Worker, task_id: int, name: str, sha256: str, size: int) -> None:
    """Attach an uploaded blob to the worker's running task under `name` (replacing an earlier upload)."""
    check_output_name(name)
    begin_write_transaction(db.session, keep_loaded=True)  # the worker's id is all it reads of the worker
    try:
        connection = db.session.connection()
        if connection.execute(_RUNNING_HERE_LOCKED, {"task_id": task_id, "worker_id": worker.id}).first() is None:
            running_task_of(worker, task_id)  # not its running task: which answer, 404 or 409
        storage.keep_row(sha256, size)  # two workers may upload the same bytes at once
        connection.execute(_output_upsert(connection.dialect.name),
                           {"task_id": task_id, "name": name, "sha256": sha256, "size": size, "created_at": utcnow()})
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


_RUNNING_HERE = db.select(Task.id).where(Task.id == db.bindparam("task_id"), Task.worker_id == db.bindparam("worker_id"),
                                         Task.status == TaskStatus.RUNNING)
_RUNNING_HERE_LOCKED = _RUNNING_HERE.with_for_update()


@functools.cache
def _output_upsert(dialect: str):
    """record_output's one statement (a second upload of a name replaces the first, racing ones too)."""
    table = TaskOutput.__table__
    stmt = dialect_insert(dialect)(table)
    return stmt.on_conflict_do_update(index_elements=[table.c.task_id, table.c.name],
                                      set_={c: stmt.excluded[c] for c in ("sha256", "size", "created_at")})


def task_inputs(task: Task) -> dict[str, tuple[str, int]]:
    """name -> (sha256, size) of the files a task needs: the job's inputs, or a verification's own tile."""
    names = list(task.input_names or [])
    if task.type == JobType.VERIFY and task.params.get("kind") == "upscale":
        check = verification.verification_of(task)
        stored = db.session.get(StoredFile, check.input_sha256)
        return {task.params["image"]: (stored.sha256, stored.size)}
    rows = db.session.execute(
        db.select(JobInput).where(JobInput.job_id == task.job_id, JobInput.name.in_(names))).scalars().all() if names else []
    by_name = {row.name: (row.sha256, row.size) for row in rows}
    return {name: by_name[name] for name in names if name in by_name}


ESTIMATE_SAMPLE = 200  # completed tasks an estimate averages: enough for a mean, and a claim never reads 30,000


def reward_estimate_micros(task: Task) -> int | None:
    """bid x the mean compute time of (up to ESTIMATE_SAMPLE of) the job's completed tasks; None before
    any has completed."""
    if task.bid_micros is None:
        return None
    mean = db.session.connection().execute(_ESTIMATE_MEAN, {"job_id": task.job_id}).scalar_one()
    return None if mean is None else ledger.task_reward_micros(task.bid_micros, float(mean))


# Built once (every claim's payload asks it): the latest of the job's completed tasks, read in index order.
_ESTIMATE_SAMPLE = (db.select(Task.compute_seconds).where(Task.job_id == db.bindparam("job_id"),
                                                          Task.status == TaskStatus.COMPLETED)
                    .order_by(Task.finished_at.desc()).limit(ESTIMATE_SAMPLE).subquery())
_ESTIMATE_MEAN = db.select(db.func.avg(_ESTIMATE_SAMPLE.c.compute_seconds))

"""The ledger: every movement of money is a signed micro-USD row, and every total is a sum of rows.

A task's reward is one `task_reward` row per attempt: the unique (task_id, attempt) makes a second
credit for the same delivery impossible. A job's cost is the sum of its tasks' reward rows and their
reversals, so the creator pays exactly what workers keep and nothing for a result that failed its
check. A verification task's reward is a `check_reward` row: the network pays it, the creator never.

Money follows verification (services/verification.py): a row's `available_at` is NULL while its
result waits for a spot check, else the moment it may be paid out (now + a settling delay for a
result that was not sampled). A failed check takes a reward back with a `reversal` row pointing at
it; nothing is ever deleted or rewritten except `available_at` when a check passes.

`Worker.earnings_micros` and the per-day `WorkerDailyStat` rows are running copies kept in the
same transaction as the rows they sum, so lists and charts never need to aggregate the ledger.
"""

import functools
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.orm import aliased

from ..clock import utcnow
from ..database import dialect_insert
from ..extensions import db
from ..models import LedgerEntry, LedgerKind, MiningReport, Task, Worker, WorkerDailyStat


# What counts as a worker's earnings (credited minus reversed). Mining is an estimate the portal makes
# and is shown separately.
EARNING_KINDS = (LedgerKind.TASK_REWARD, LedgerKind.CHECK_REWARD, LedgerKind.REVERSAL, LedgerKind.ADJUSTMENT)


def day_of(moment: datetime) -> str:
    """The UTC day a moment belongs to, as WorkerDailyStat keys it."""
    return moment.strftime("%Y-%m-%d")


def bump_daily(worker_id: int, day: str, *, task_earnings_micros: int = 0, mining_earnings_micros: int = 0,
               tasks_completed: int = 0, tasks_failed: int = 0, compute_seconds: float = 0.0) -> None:
    """Add to one worker's row for one day, creating it if needed (an upsert: no read-modify-write)."""
    connection = db.session.connection()  # Core: nothing the session holds needs flushing for it
    connection.execute(_daily_upsert(connection.dialect.name), {
        "worker_id": worker_id, "day": day,
        "task_earnings_micros": task_earnings_micros, "mining_earnings_micros": mining_earnings_micros,
        "tasks_completed": tasks_completed, "tasks_failed": tasks_failed, "compute_seconds": compute_seconds,
    })


_DAILY_SUMS = ("task_earnings_micros", "mining_earnings_micros", "tasks_completed", "tasks_failed", "compute_seconds")


@functools.cache
def _daily_upsert(dialect: str):
    """bump_daily's statement for one database, built once (every completed task runs it)."""
    insert = dialect_insert(dialect)
    table = WorkerDailyStat.__table__
    stmt = insert(table)
    return stmt.on_conflict_do_update(index_elements=[table.c.worker_id, table.c.day],
                                      set_={name: table.c[name] + stmt.excluded[name] for name in _DAILY_SUMS})


def task_reward_micros(bid_micros: int, compute_seconds: float) -> int:
    """A task's reward: bid (USD/hour) x compute hours, rounded half up to a whole micro-USD."""
    seconds = Decimal(repr(float(compute_seconds)))
    return int((Decimal(bid_micros) * seconds / 3600).to_integral_value(rounding=ROUND_HALF_UP))


_REWARD_OF = db.select(LedgerEntry.id).where(LedgerEntry.task_id == db.bindparam("task_id"),
                                             LedgerEntry.attempt == db.bindparam("attempt"))


def credit_task_reward(task: Task, amount_micros: int, available_at: datetime | None,
                       kind: LedgerKind = LedgerKind.TASK_REWARD) -> LedgerEntry:
    """Credit the task's worker with its reward for this attempt, once: a second call returns the first
    entry unchanged. `available_at` None holds the money until a spot check decides.

    Runs inside the caller's transaction (the caller commits). The unique (task_id, attempt) on the
    ledger is the last line of defence: if two transactions race past the check, the second one's
    flush fails with IntegrityError, and its rollback takes back the totals it moved with it.
    """
    # Core: the caller's pending changes are flushed below, with the row, in one go.
    existing = db.session.connection().execute(_REWARD_OF, {"task_id": task.id, "attempt": task.attempts}).scalar()
    if existing is not None:
        return db.session.get(LedgerEntry, existing)
    if amount_micros < 0:
        raise ValueError("a reward cannot be negative")
    worker = task.worker
    if worker is None:
        raise ValueError("a task without a worker earns nobody anything")
    entry = LedgerEntry(kind=kind, amount_micros=amount_micros, worker_id=worker.id, provider_id=worker.owner_id,
                        job_id=task.job_id, task_id=task.id, attempt=task.attempts, available_at=available_at,
                        memo=f"Task {task.id} of job {task.job_id}")
    db.session.add(entry)
    task.reward_micros = amount_micros
    # An SQL expression, not a Python sum: concurrent credits to one worker must not lose updates.
    worker.earnings_micros = Worker.earnings_micros + amount_micros
    # A second credit of this attempt fails here, on the unique (task_id, attempt), and the caller's
    # rollback takes back the copies with it.
    db.session.flush()
    return entry


def reward_of(task_id: int, attempt: int) -> LedgerEntry | None:
    """The reward row of one attempt of a task, if it was credited."""
    return db.session.execute(db.select(LedgerEntry).where(
        LedgerEntry.task_id == task_id, LedgerEntry.attempt == attempt)).scalar_one_or_none()


def reverse(entry: LedgerEntry, reason: str, now: datetime | None = None) -> LedgerEntry:
    """Take an entry back with a negative row of its own (once; a second call returns the first).

    The reversal carries the original's job, so the job's cost drops by the same amount, and its
    `available_at`, so a pending reward and its reversal cancel inside "pending".
    """
    now = now or utcnow()
    existing = db.session.execute(db.select(LedgerEntry).where(LedgerEntry.reverses_id == entry.id)).scalar_one_or_none()
    if existing is not None:
        return existing
    reversal = LedgerEntry(kind=LedgerKind.REVERSAL, amount_micros=-entry.amount_micros, worker_id=entry.worker_id,
                           provider_id=entry.provider_id, job_id=entry.job_id, reverses_id=entry.id,
                           available_at=entry.available_at, memo=reason[:255], created_at=now)
    db.session.add(reversal)
    db.session.flush()
    if entry.worker_id is not None:
        db.session.execute(db.update(Worker).where(Worker.id == entry.worker_id)
                           .values(earnings_micros=Worker.earnings_micros - entry.amount_micros))
        bump_daily(entry.worker_id, day_of(now), task_earnings_micros=-entry.amount_micros)
    return reversal


def settle(entry: LedgerEntry, at: datetime) -> None:
    """Make a held reward available from `at` (its check passed)."""
    entry.available_at = at


def _earned(condition) -> int:
    return int(db.session.execute(
        db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0))
        .where(condition, LedgerEntry.kind.in_(list(EARNING_KINDS)))
    ).scalar_one())


def earnings_split(worker_id: int, now: datetime | None = None) -> dict[str, int]:
    """A worker's earnings (credited minus reversed), split into pending (held for a check or still
    settling) and available (may be paid out)."""
    now = now or utcnow()
    mine = LedgerEntry.worker_id == worker_id
    pending = _earned(db.and_(mine, db.or_(LedgerEntry.available_at.is_(None), LedgerEntry.available_at > now)))
    available = _earned(db.and_(mine, LedgerEntry.available_at <= now))
    return {"total": pending + available, "pending": pending, "available": available}


def book_mining(worker: Worker, report: MiningReport) -> None:
    """Book an accepted mining report's estimate: its MINING ledger row and its day's total, apart from
    task earnings (services/mining.py accepted it; the caller commits)."""
    db.session.add(LedgerEntry(kind=LedgerKind.MINING, amount_micros=report.earnings_micros, worker_id=worker.id,
                               provider_id=worker.owner_id, memo=f"Mining {report.coin} on {report.pool} (estimate)"[:255],
                               available_at=report.reported_at, created_at=report.reported_at))
    bump_daily(worker.id, day_of(report.reported_at), mining_earnings_micros=report.earnings_micros)


# What a job bills its creator: its tasks' reward rows, less their reversals (a result that failed its
# check costs nothing). Check rewards carry the job's id too but are the network's cost, not the creator's.
JOB_COST_KINDS = (LedgerKind.TASK_REWARD, LedgerKind.REVERSAL)


def job_billing(job_id: int) -> tuple[int, int]:
    """(how many of the job's task rewards stand, what the job cost its creator in micro-USD)."""
    total = job_cost_micros(job_id)
    reversal = aliased(LedgerEntry)
    standing = db.session.execute(
        db.select(db.func.count(LedgerEntry.id)).where(
            LedgerEntry.job_id == job_id, LedgerEntry.kind == LedgerKind.TASK_REWARD,
            ~db.select(reversal.id).where(reversal.reverses_id == LedgerEntry.id).exists())).scalar_one()
    return int(standing), total


def job_cost_micros(job_id: int) -> int:
    """What a job cost its creator: the sum of its tasks' reward entries (and their reversals)."""
    # A budgeted job's completions each ask it under the write lock: one sum read from ix_ledger_job_cost
    # alone. Through the Session, so entries this transaction added are flushed and counted.
    return int(db.session.execute(_JOB_COST, {"job_id": job_id}).scalar_one())


_JOB_COST = db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0)).where(
    LedgerEntry.job_id == db.bindparam("job_id"), LedgerEntry.kind.in_(JOB_COST_KINDS))


def job_costs_micros(job_ids: list[int]) -> dict[int, int]:
    """job_cost_micros for a page of jobs in one query; jobs without rewards cost 0."""
    if not job_ids:
        return {}
    rows = db.session.execute(
        db.select(LedgerEntry.job_id, db.func.sum(LedgerEntry.amount_micros))
        .where(LedgerEntry.job_id.in_(job_ids), LedgerEntry.kind.in_(JOB_COST_KINDS))
        .group_by(LedgerEntry.job_id)
    ).all()
    costs = {job_id: 0 for job_id in job_ids}
    costs.update({job_id: int(total) for job_id, total in rows})
    return costs


def worker_earnings(worker_id: int, kinds=EARNING_KINDS) -> int:
    """A worker's earnings from the ledger (task rewards and adjustments; pass kinds=(MINING,) for mining)."""
    return int(db.session.execute(
        db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0))
        .where(LedgerEntry.worker_id == worker_id, LedgerEntry.kind.in_(list(kinds)))
    ).scalar_one())

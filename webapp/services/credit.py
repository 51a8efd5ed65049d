"""A creator's credit and their jobs' budgets, on the ledger.

The operator adds credit (`credit` rows, account_id = the creator). A job submitted with a budget holds
it from the credit at once (`reserve`, key "hold:<job>:1"): a job can't be submitted beyond the
available credit (402 insufficient_credit). Its tasks' rewards are its spend; the spend never passes
the budget: a task's reward is cut to what is left, and the job pauses (no more claims) when nothing
is left. When the job ends, what it did not spend comes back (`release`). A requeued job holds its
budget again. The figures:

    available = credit + holds                 (what a new job may hold)
    reserved  = for each running job, its hold less its spend so far
    balance   = available + reserved           (= credit added - spend of budgeted jobs)

Jobs without a budget are billed on account (no credit needed) unless CREDIT_REQUIRED is on, when a job
without a budget holds all the available credit.
"""

import uuid
from datetime import datetime, timedelta

from flask import current_app

from .. import money
from ..clock import utcnow
from ..extensions import db
from ..models import Job, JobStatus, JobType, LedgerEntry, LedgerKind, Task, User
from . import ServiceError, ledger, statements

HOLD_KINDS = (LedgerKind.RESERVE, LedgerKind.RELEASE)
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
MAX_CREDIT_MICROS = 1_000_000 * money.MICROS  # one operator entry, not a typo's worth of zeros
MAX_BUDGET_MICROS = 1_000_000 * money.MICROS


class InsufficientCredit(ServiceError):
    """402: the budget asked for is more than the available credit."""
    status = 402
    field = "budget"  # the New job form shows it under its Budget field

    def __init__(self, needed: int, available: int):
        super().__init__("insufficient_credit", f"This job's budget of {money.usd(needed)} is more than your available "
                                                f"credit of {money.usd(available)}: lower the budget, or ask for credit.")
        self.needed, self.available = needed, available


def credit_required() -> bool:
    return bool(current_app.config.get("CREDIT_REQUIRED"))


def _sum(condition) -> int:
    return int(db.session.execute(
        db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0)).where(condition)).scalar_one())


def available_micros(user_id: int) -> int:
    return _sum(db.and_(LedgerEntry.account_id == user_id,
                        LedgerEntry.kind.in_([LedgerKind.CREDIT, *HOLD_KINDS])))


def _holds(job_ids: list[int]) -> dict[int, int]:
    """What each job holds now (positive), from its reserve and release rows."""
    if not job_ids:
        return {}
    rows = db.session.execute(db.select(LedgerEntry.job_id, db.func.sum(LedgerEntry.amount_micros))
                              .where(LedgerEntry.job_id.in_(job_ids), LedgerEntry.kind.in_(list(HOLD_KINDS)))
                              .group_by(LedgerEntry.job_id)).all()
    holds = dict.fromkeys(job_ids, 0)
    holds.update({job_id: -int(total) for job_id, total in rows})
    return holds


def summary(user_id: int) -> dict[str, int]:
    """{balance, reserved, available, spent, credited} in micro-USD (see the module docstring)."""
    available = available_micros(user_id)
    active = list(db.session.execute(db.select(Job.id).where(
        Job.owner_id == user_id, Job.budget_micros.is_not(None), Job.status.not_in(FINISHED))).scalars())
    holds, costs = _holds(active), ledger.job_costs_micros(active)
    reserved = sum(max(0, holds[j] - costs[j]) for j in active)
    credited = _sum(db.and_(LedgerEntry.account_id == user_id, LedgerEntry.kind == LedgerKind.CREDIT))
    balance = available + reserved
    return {"balance": balance, "reserved": reserved, "available": available, "credited": credited,
            "spent": credited - balance}


def serialize_summary(figures: dict[str, int]) -> dict:
    return {name: money.fmt(value) for name, value in figures.items()}


def add_credit(user: User, amount, memo: str | None = None, key: str | None = None,
               now: datetime | None = None) -> LedgerEntry:
    """The operator adds credit to a creator's account (a payment provider can call this later); commits.

    `key` makes a retried top-up count once (a payment provider's own payment id, say)."""
    try:
        micros = money.to_micros(amount)
    except ValueError:
        raise ServiceError("invalid_amount", f"{str(amount)[:32]!r} is not a decimal amount in USD.") from None
    if not 0 < micros <= MAX_CREDIT_MICROS:
        raise ServiceError("invalid_amount", f"Credit must be more than zero and at most {money.usd(MAX_CREDIT_MICROS)}.")
    now = now or utcnow()
    from ..database import begin_write_transaction
    begin_write_transaction(db.session)
    entry = statements.post_once(f"credit:{key or uuid.uuid4().hex}"[:80], kind=LedgerKind.CREDIT,
                                 amount_micros=micros, account_id=user.id, available_at=now, created_at=now,
                                 memo=(memo or "Credit added by the operator")[:255])
    db.session.commit()
    return entry


# --- budgets ----------------------------------------------------------------------------------------

def parse_budget(value, errors: dict) -> str | None:
    """Validate the spec's optional "budget" (USD decimal string); returns its JSON form or None."""
    if value in (None, ""):
        return None
    try:
        micros = money.to_micros(value)
    except ValueError:
        errors["budget"] = f"Must be a decimal amount in USD as a string, like \"25.00\" (got {str(value)[:32]!r})."
        return None
    if not 0 < micros <= MAX_BUDGET_MICROS:
        errors["budget"] = f"Must be more than zero and at most {money.usd(MAX_BUDGET_MICROS)}."
        return None
    return money.fmt(micros)


def _lock_account(user_id: int) -> None:
    """One hold at a time per creator (PostgreSQL; SQLite's submission already holds the write lock).

    FOR NO KEY UPDATE, not FOR UPDATE: the submission has already inserted its job, whose owner key
    holds a KEY SHARE lock on the user row; FOR UPDATE would wait on the other submission's KEY SHARE
    while it waits on ours (a deadlock, found by test_racing_submissions_never_hold_more_than_the_credit)."""
    db.session.execute(db.select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def reserve_for(job: Job) -> None:
    """At submission, inside its transaction: hold the job's budget from the creator's credit, or refuse
    with 402. Without a budget: billed on account, or (CREDIT_REQUIRED) the whole available credit."""
    if job.budget_micros is None and not credit_required():
        return
    db.session.flush()  # the job's id; on SQLite this write also takes the lock before credit is read
    _lock_account(job.owner_id)
    available = available_micros(job.owner_id)
    if job.budget_micros is None:
        if available <= 0:
            raise InsufficientCredit(1, available)
        job.budget_micros = available
        job.spec = dict(job.spec, budget=money.fmt(available))
    if job.budget_micros > available:
        raise InsufficientCredit(job.budget_micros, available)
    sync_hold(job)


def sync_hold(job: Job) -> None:
    """Make the job's hold what it should be: its budget while it runs, exactly its spend once it ended
    (the rest released). Called at submission and whenever a job's status is rolled up; one row per change,
    each keyed "hold:<job>:<n>" so a change is written once."""
    if job.budget_micros is None:
        return
    rows = db.session.execute(db.select(db.func.count(LedgerEntry.id), db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0))
                              .where(LedgerEntry.job_id == job.id, LedgerEntry.kind.in_(list(HOLD_KINDS)))).one()
    count, current = int(rows[0]), int(rows[1])
    target = -ledger.job_cost_micros(job.id) if job.status in FINISHED else -job.budget_micros
    change = target - current
    if change == 0:
        return
    kind = LedgerKind.RESERVE if change < 0 else LedgerKind.RELEASE
    memo = (f"Budget of job {job.id} held" if kind == LedgerKind.RESERVE
            else f"Unspent budget of job {job.id} released")
    statements.post_once(f"hold:{job.id}:{count + 1}", kind=kind, amount_micros=change, account_id=job.owner_id,
                         job_id=job.id, available_at=utcnow(), created_at=utcnow(), memo=memo)


def cap_reward(task: Task, reward: int, now: datetime) -> int:
    """At a task's completion (dispatch.complete_task, in its transaction): the reward cut to what is left
    of its job's budget; the job pauses once nothing is left. Network work (checks, Bench Score) is
    not the creator's and passes unchanged."""
    if task.type in (JobType.VERIFY, JobType.BENCHMARK):
        return reward
    # Read afresh under a lock: a job this transaction loaded before may have changed its budget since.
    # On PostgreSQL, FOR KEY SHARE first: raise_budget (FOR UPDATE) waits for the completions under way and
    # they for it, so a budget can't appear beside an uncapped reward, while the completions of a job
    # without a budget, and the claims of its tasks, don't wait for each other.
    job = db.session.execute(db.select(Job).where(Job.id == task.job_id).with_for_update(read=True, key_share=True)
                             .execution_options(populate_existing=True)).scalar_one()
    if job.budget_micros is None:
        return reward
    # A budget: the job's completions take turns at it (FOR NO KEY UPDATE), each reading the spend afresh.
    job = db.session.execute(db.select(Job).where(Job.id == task.job_id).with_for_update(key_share=True)
                             .execution_options(populate_existing=True)).scalar_one()
    left = max(0, job.budget_micros - ledger.job_cost_micros(job.id))
    capped = min(reward, left)
    if capped >= left and job.paused_at is None:
        job.paused_at = now
        job.paused_reason = (f"Paused: its spend reached its budget of {money.usd(job.budget_micros)}. "
                             "Raise the budget to go on, or cancel the job.")[:255]
    return capped


def claimable(task_job_id):
    """SQL for the claim query: a task of a paused job is not handed out (its checks still are)."""
    paused = db.select(Job.id).where(Job.id == task_job_id, Job.paused_at.is_not(None)).exists()
    return db.or_(Task.type == JobType.VERIFY, ~paused)


def raise_budget(job: Job, value) -> None:
    """The creator raises a job's budget (by holding more credit); a paused job resumes; commits."""
    errors: dict = {}
    new = parse_budget(value, errors)
    if errors or new is None:
        raise ServiceError("invalid_budget", errors.get("budget", "Send the new budget, e.g. \"40.00\"."))
    micros = money.to_micros(new)
    if job.status in FINISHED:
        raise ServiceError("job_finished", f"The job is {job.status.value}: there is nothing left to spend on.", 409)
    from ..database import begin_write_transaction
    job_id = job.id
    begin_write_transaction(db.session)
    job = db.session.execute(db.select(Job).where(Job.id == job_id).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one()
    old = job.budget_micros or 0
    spent = ledger.job_cost_micros(job.id)
    if micros < max(old, spent):
        db.session.rollback()
        raise ServiceError("invalid_budget", f"The new budget must be at least the current one ({money.usd(old)}).")
    _lock_account(job.owner_id)
    available = available_micros(job.owner_id)
    if micros - old > available:
        db.session.rollback()
        raise InsufficientCredit(micros - old, available)
    job.budget_micros = micros
    job.spec = dict(job.spec, budget=new)
    job.paused_at = job.paused_reason = None
    sync_hold(job)
    db.session.commit()


def job_rows(user_id: int, page: int = 1, per_page: int = 25):
    """The Spend page's per-job table: each job's budget, spend, hold; newest first."""
    from . import Page
    where = Job.owner_id == user_id
    total = db.session.execute(db.select(db.func.count(Job.id)).where(where)).scalar_one()
    jobs = list(db.session.execute(db.select(Job).where(where).order_by(Job.created_at.desc(), Job.id.desc())
                                   .limit(per_page).offset((page - 1) * per_page)).scalars())
    ids = [j.id for j in jobs]
    costs, holds = ledger.job_costs_micros(ids), _holds(ids)
    items = [{"job": j, "spent_micros": costs[j.id], "budget_micros": j.budget_micros,
              "held_micros": max(0, holds[j.id] - costs[j.id]) if j.status not in FINISHED else 0} for j in jobs]
    return Page(items=items, page=page, pages=max(1, -(-total // per_page)), total=int(total), per_page=per_page)


def spend_series(user_id: int, period: str, start=None, end=None, now: datetime | None = None, zone=None):
    """The creator's spend per day (or month) over a period, in the viewer's zone, from the same rows as
    the statement (a task's reward is spend, its reversal a refund). Drawn as the "spend" chart."""
    from .. import timezones
    from . import stats
    zone = zone or timezones.UTC
    result = stats.series(0, period, start, end, now=now, zone=zone)  # the empty buckets of the period
    result.worker_id = -1_000_000_000 - user_id  # the chart cache's key: not a worker's, not a provider's
    index = {b.label: b for b in result.buckets}
    lo = timezones.day_start(result.start, zone)
    hi = timezones.day_start(result.end, zone) + timedelta(days=1)
    own_budgeted = db.select(Job.id).where(Job.owner_id == user_id, Job.budget_micros.is_not(None))
    for at, amount in db.session.execute(db.select(LedgerEntry.created_at, LedgerEntry.amount_micros).where(
            LedgerEntry.job_id.in_(own_budgeted), LedgerEntry.kind.in_(list(ledger.JOB_COST_KINDS)),
            LedgerEntry.created_at >= lo, LedgerEntry.created_at < hi)):
        day = timezones.to_local(at, zone).date().isoformat()
        bucket = index.get(day if result.unit == "day" else day[:7])
        if bucket is not None:
            bucket.task_earnings_micros += int(amount)
    return result

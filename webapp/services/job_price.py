"""A submitted job's maximum price per bench-hour, raised by its creator to reach workers priced above it.

Queue status (services/queue_status.py) tells a creator whose job waits on price what maximum reaches
the online workers; this is how they act on it. Only a raise: the job's queued tasks take the new
maximum at once (dispatch compares it at the next claim), running ones keep the one they were claimed
under. The budget still bounds the spend (services/credit.py), and every task still bills at most its
maximum x its bench-hours (market.price_cap_micros), so a raise can never cost more than the creator
agreed to here.
"""

from decimal import Decimal, InvalidOperation

from .. import money
from ..database import begin_write_transaction
from ..extensions import db
from ..models import Job, JobStatus, Task, TaskStatus, job_work
from . import ServiceError, jobs

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


def parse_max_price(value) -> int:
    """A maximum price per bench-hour as sent by a form or the API: a decimal string in USD, at most
    6 decimals, more than zero and at most jobs.MAX_PRICE_CAP_MICROS."""
    if isinstance(value, (float, bool)) or not isinstance(value, (str, int)):
        raise ServiceError("invalid_max_price", "Send the maximum price as a decimal string in USD per bench-hour, "
                                                "e.g. \"0.80\".")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ServiceError("invalid_max_price", f"{str(value)[:32]!r} is not an amount: send e.g. \"0.80\".") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -6:
        raise ServiceError("invalid_max_price", "Use a plain amount with at most 6 decimals, e.g. \"0.80\".")
    micros = money.to_micros(amount)
    if not 0 < micros <= jobs.MAX_PRICE_CAP_MICROS:
        raise ServiceError("invalid_max_price", f"The maximum price must be more than zero and at most "
                                                f"{money.usd(jobs.MAX_PRICE_CAP_MICROS)} per bench-hour.")
    return micros


def raise_max_price(job: Job, value) -> int:
    """Raise the job's maximum price per bench-hour (the job and its queued tasks); returns the new
    maximum in micro-USD; commits. 409 once the job has ended, 400 for an amount not above the current."""
    micros = parse_max_price(value)
    job_id = job.id
    begin_write_transaction(db.session)
    try:
        job = db.session.execute(db.select(Job).where(Job.id == job_id).with_for_update()
                                 .execution_options(populate_existing=True)).scalar_one()
        if job.status in FINISHED:
            raise ServiceError("job_finished", f"The job is {job.status.value}: no more tasks will start.", 409)
        if job.max_price_micros is not None and micros <= job.max_price_micros:
            raise ServiceError("invalid_max_price", f"The new maximum must be more than the current "
                                                    f"{money.usd_exact(job.max_price_micros)} per bench-hour.")
        job.max_price_micros = micros
        job.spec = dict(job.spec, max_price=money.fmt(micros))
        db.session.execute(db.update(Task).where(Task.job_id == job_id, Task.status == TaskStatus.QUEUED, job_work())
                           .values(max_price_micros=micros))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return micros

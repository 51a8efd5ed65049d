"""Per-account limits on making workers: how many an account may create, and pair, per hour.

Throwaway workers are the raw material of sabotage and of a fake "network": the limits keep one
account from minting them faster than a real farm deploys nodes. They are counted in the database
(one AccountAction row per action, counted over the last hour) rather than in a process's memory, so
every portal process behind a load balancer sees the same count; the account's row is locked while
counting, so two processes can't both take the last one. The per-IP limits on /pair and sign-up
(flask-limiter, shared through Redis where configured) are a separate, coarser guard.
"""

from datetime import datetime, timedelta

from ..clock import utcnow
from ..extensions import db
from ..models import AccountAction, AccountActionKind, User
from . import ServiceError

WINDOW = timedelta(hours=1)
SETTINGS = {AccountActionKind.WORKER_CREATED: "WORKERS_CREATED_PER_HOUR",
            AccountActionKind.WORKER_PAIRED: "WORKERS_PAIRED_PER_HOUR"}
WHAT = {AccountActionKind.WORKER_CREATED: "create", AccountActionKind.WORKER_PAIRED: "pair"}


class LimitReached(ServiceError):
    status = 429

    def __init__(self, kind: AccountActionKind, limit: int, retry_after: int):
        super().__init__("account_limit", f"This account may {WHAT[kind]} at most {limit} workers per hour; "
                                          f"try again in {max(1, retry_after // 60)} minutes, or ask the portal's "
                                          "operator to raise the limit for your farm.")
        self.retry_after = retry_after


def limit_of(kind: AccountActionKind) -> int:
    from flask import current_app
    return int(current_app.config[SETTINGS[kind]])


def take(user_id: int, kind: AccountActionKind, now: datetime | None = None) -> None:
    """Count one `kind` action of the account, or LimitReached when it took its hourly limit already.
    Runs inside the caller's write transaction, which the caller commits or rolls back."""
    now = now or utcnow()
    limit = limit_of(kind)
    # PostgreSQL: the account row's lock serialises its counts (SQLite's write lock already does).
    db.session.execute(db.select(User.id).where(User.id == user_id).with_for_update())
    since = now - WINDOW
    recent = db.select(AccountAction.created_at).where(
        AccountAction.user_id == user_id, AccountAction.kind == kind, AccountAction.created_at > since)
    count = db.session.execute(db.select(db.func.count()).select_from(recent.subquery())).scalar_one()
    if count >= limit:
        oldest = db.session.execute(recent.order_by(AccountAction.created_at).limit(1)).scalar_one()
        raise LimitReached(kind, limit, int((oldest + WINDOW - now).total_seconds()) + 1)
    db.session.add(AccountAction(user_id=user_id, kind=kind, created_at=now))


def forget_old(now: datetime | None = None) -> int:
    """Periodic: drop actions older than the window (nothing counts them any more); commits."""
    now = now or utcnow()
    gone = db.session.execute(db.delete(AccountAction).where(AccountAction.created_at <= now - WINDOW)).rowcount
    db.session.commit()
    return gone

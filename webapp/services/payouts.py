"""A provider's money across all their workers: earnings (pending vs available), the balance they can
withdraw, payout requests and the operator's decisions on them — every figure a sum of ledger rows.

A payout request takes its amount out of the balance at once (a `payout` row keyed "payout:<id>"), so
two requests can never spend the same money; the operator then marks it paid (with the transaction
reference) or rejects it, which returns the money (a `payout_return` row keyed "payout-return:<id>").
Requests are serialised per provider (the user row locked on PostgreSQL, one writer on SQLite), and a
form or script that sends the same idempotency key twice gets the first request back.
"""

import re
import uuid
from datetime import datetime
from decimal import Decimal

from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import money
from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import LedgerEntry, LedgerKind, Payout, PayoutState, User, Worker
from . import Conflict, NotFound, Page, ServiceError, ledger, statements

BALANCE_KINDS = (LedgerKind.PAYOUT, LedgerKind.PAYOUT_RETURN)
KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REFERENCE_MAX = 255


def minimum_micros() -> int:
    """The smallest payout (PAYOUT_MINIMUM, USD): each one costs the operator a transfer."""
    return money.to_micros(current_app.config.get("PAYOUT_MINIMUM", "5.00"))


def _sum(condition) -> int:
    return int(db.session.execute(
        db.select(db.func.coalesce(db.func.sum(LedgerEntry.amount_micros), 0)).where(condition)).scalar_one())


def earnings(user_id: int, now: datetime | None = None) -> dict[str, int]:
    """The provider's figures in micro-USD, all from the ledger:

    total = pending + available (task and check rewards less reversals, every worker, deleted ones too);
    paid = payouts marked paid; requested = payouts waiting for the operator;
    balance = available - paid - requested (what a new payout may take); mining = estimates, apart.
    """
    now = now or utcnow()
    mine = LedgerEntry.provider_id == user_id
    earned = db.and_(mine, LedgerEntry.kind.in_(list(ledger.EARNING_KINDS)))
    available = _sum(db.and_(earned, LedgerEntry.available_at <= now))
    pending = _sum(db.and_(earned, db.or_(LedgerEntry.available_at.is_(None), LedgerEntry.available_at > now)))
    paid_ids = db.select(Payout.id).where(Payout.provider_id == user_id, Payout.state == PayoutState.PAID)
    paid = -_sum(db.and_(mine, LedgerEntry.kind == LedgerKind.PAYOUT, LedgerEntry.payout_id.in_(paid_ids)))
    out = -_sum(db.and_(mine, LedgerEntry.kind.in_(list(BALANCE_KINDS))))  # paid + still requested
    mining = _sum(db.and_(mine, LedgerEntry.kind == LedgerKind.MINING))
    return {"total": pending + available, "pending": pending, "available": available, "paid": paid,
            "requested": out - paid, "balance": available - out, "mining": mining}


def serialize_earnings(figures: dict[str, int]) -> dict:
    return {name: money.fmt(value) for name, value in figures.items()} | {"minimum_payout": money.fmt(minimum_micros())}


def per_worker(user_id: int) -> list[dict]:
    """Each worker's share of the total (its running copy, Worker.earnings_micros), largest first.

    Deleted workers are summed into one row, so the rows add up to the Earnings page's total."""
    rows = db.session.execute(
        db.select(Worker.id, Worker.name, Worker.earnings_micros, Worker.compute_seconds, Worker.deleted_at)
        .where(Worker.owner_id == user_id).order_by(Worker.earnings_micros.desc(), Worker.id)).all()
    live = [{"id": r.id, "name": r.name, "earnings_micros": int(r.earnings_micros or 0),
             "compute_seconds": float(r.compute_seconds or 0)} for r in rows if r.deleted_at is None]
    gone = [r for r in rows if r.deleted_at is not None]
    if gone:
        live.append({"id": None, "name": f"Deleted workers ({len(gone)})",
                     "earnings_micros": sum(int(r.earnings_micros or 0) for r in gone),
                     "compute_seconds": sum(float(r.compute_seconds or 0) for r in gone)})
    return live


# --- payout requests ---------------------------------------------------------------------------------

def _lock_user(user_id: int) -> User:
    """Serialise one provider's payout requests: one writer on SQLite, the user row locked on PostgreSQL."""
    # NO KEY UPDATE (as credit._lock_account): rows inserted meanwhile that name this user don't block it.
    return db.session.execute(db.select(User).where(User.id == user_id).with_for_update(key_share=True)
                              .execution_options(populate_existing=True)).scalar_one()


def parse_amount(value, balance: int | None = None) -> int | None:
    """The amount asked for: a decimal string in USD, or None/"" for the whole balance."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > 32:
        raise ServiceError("invalid_amount", "'amount' must be a decimal string in USD, like \"12.50\".")
    try:
        micros = money.to_micros(value)
    except ValueError:
        raise ServiceError("invalid_amount", f"'amount' {value[:32]!r} is not a decimal amount in USD.") from None
    if micros <= 0:
        raise ServiceError("invalid_amount", "'amount' must be more than zero.")
    if Decimal(value.strip()).as_tuple().exponent < -6:
        raise ServiceError("invalid_amount", "'amount' has at most 6 decimal places (one micro-dollar).")
    return micros


def clean_key(key) -> str:
    """The client's idempotency key, or a fresh one (a request without one is never merged with another)."""
    if key is None or key == "":
        return "auto-" + uuid.uuid4().hex
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ServiceError("invalid_idempotency_key", "An idempotency key is 1-64 letters, digits, '.', '_', ':' or '-'.")
    return key


def request_payout(user: User, amount=None, idempotency_key=None, now: datetime | None = None) -> tuple[Payout, bool]:
    """Ask for `amount` (None: the whole balance) to be paid to the account's wallet; commits.

    Returns (payout, created): a repeated idempotency key returns the first request, created=False.
    Refused: no_wallet, below_minimum, exceeds_balance (each a 4xx with what to do).
    """
    now = now or utcnow()
    key = clean_key(idempotency_key)
    requested = parse_amount(amount)
    user_id = user.id
    begin_write_transaction(db.session)
    try:
        user = _lock_user(user_id)
        existing = db.session.execute(db.select(Payout).where(
            Payout.provider_id == user_id, Payout.idempotency_key == key)).scalar_one_or_none()
        if existing is not None:
            db.session.commit()
            return existing, False
        if not user.wallet_address:
            raise ServiceError("no_wallet", "Set a wallet address on your Account page first: payouts are sent there.",
                               409)
        balance = earnings(user_id, now)["balance"]
        amount_micros = balance if requested is None else requested
        minimum = minimum_micros()
        if amount_micros < minimum:
            raise ServiceError("below_minimum", f"The smallest payout is {money.usd_exact(minimum)}; "
                                                f"{'your balance is' if requested is None else 'you asked for'} "
                                                f"{money.usd_exact(amount_micros)}.", 422)
        if amount_micros > balance:
            raise ServiceError("exceeds_balance", f"You asked for {money.usd_exact(amount_micros)} but your balance is "
                                                  f"{money.usd_exact(balance)} (pending earnings become available once "
                                                  "checked or settled).", 422)
        payout = Payout(provider_id=user_id, amount_micros=amount_micros, wallet_address=user.wallet_address,
                        state=PayoutState.PENDING, idempotency_key=key, created_at=now)
        db.session.add(payout)
        db.session.flush()
        statements.post_once(f"payout:{payout.id}", kind=LedgerKind.PAYOUT, amount_micros=-amount_micros,
                             provider_id=user_id, payout_id=payout.id, available_at=now, created_at=now,
                             memo=f"Payout #{payout.id} to {user.wallet_address}"[:255])
        db.session.commit()
        return payout, True
    except IntegrityError as exc:
        # The same key sent twice at once: the first one won; answer with it.
        db.session.rollback()
        if not statements.unique_violation(exc):
            raise
        existing = db.session.execute(db.select(Payout).where(
            Payout.provider_id == user_id, Payout.idempotency_key == key)).scalar_one_or_none()
        if existing is None:
            raise
        return existing, False
    except Exception:
        db.session.rollback()
        raise


def list_payouts(user_id: int | None = None, state: PayoutState | str | None = None, page: int = 1,
                 per_page: int = 25) -> Page:
    """Payouts newest first: one provider's (user_id) or everyone's (the operator's CLI)."""
    where = []
    if user_id is not None:
        where.append(Payout.provider_id == user_id)
    if state:
        try:
            where.append(Payout.state == PayoutState(state))
        except ValueError:
            raise ServiceError("invalid_state", "state is one of pending, paid, rejected.") from None
    total = db.session.execute(db.select(db.func.count(Payout.id)).where(*where)).scalar_one()
    items = list(db.session.execute(db.select(Payout).where(*where).order_by(Payout.created_at.desc(), Payout.id.desc())
                                    .limit(per_page).offset((page - 1) * per_page)).scalars())
    return Page(items=items, page=page, pages=max(1, -(-total // per_page)), total=int(total), per_page=per_page)


def _decide(payout_id: int, now: datetime | None) -> Payout:
    begin_write_transaction(db.session)
    payout = db.session.execute(db.select(Payout).where(Payout.id == payout_id).with_for_update()
                                .execution_options(populate_existing=True)).scalar_one_or_none()
    if payout is None:
        db.session.rollback()
        raise NotFound("payout")
    if payout.state != PayoutState.PENDING:
        db.session.rollback()
        raise Conflict("payout_decided", f"Payout #{payout.id} is already {payout.state.value}.")
    return payout


def _text(value, name: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > REFERENCE_MAX or any(ord(c) < 32 for c in value):
        raise ServiceError(f"invalid_{name}", f"Give a {name} of 1 to {REFERENCE_MAX} characters on one line.")
    return value


def mark_paid(payout_id: int, reference: str, now: datetime | None = None) -> Payout:
    """The operator sent the money: record the transaction reference; commits."""
    reference = _text(reference, "reference")
    now = now or utcnow()
    payout = _decide(payout_id, now)
    payout.state, payout.reference, payout.decided_at = PayoutState.PAID, reference, now
    db.session.commit()
    return payout


def reject(payout_id: int, reason: str, now: datetime | None = None) -> Payout:
    """The operator refuses a payout: its money goes back to the balance (once); commits."""
    reason = _text(reason, "reason")
    now = now or utcnow()
    payout = _decide(payout_id, now)
    payout.state, payout.reason, payout.decided_at = PayoutState.REJECTED, reason, now
    statements.post_once(f"payout-return:{payout.id}", kind=LedgerKind.PAYOUT_RETURN,
                         amount_micros=payout.amount_micros, provider_id=payout.provider_id, payout_id=payout.id,
                         available_at=now, created_at=now, memo=f"Payout #{payout.id} rejected: {reason}"[:255])
    db.session.commit()
    return payout


def serialize_payout(payout: Payout) -> dict:
    return {"id": payout.id, "amount": money.fmt(payout.amount_micros), "wallet_address": payout.wallet_address,
            "state": payout.state.value, "reference": payout.reference, "reason": payout.reason,
            "created_at": payout.created_at.isoformat(),
            "decided_at": payout.decided_at.isoformat() if payout.decided_at else None}


# --- the Earnings page's chart -----------------------------------------------------------------------

def account_series(user_id: int, period: str, start=None, end=None, now: datetime | None = None, zone=None):
    """The provider's figures across all their workers over a period, bucketed as a worker's charts are
    (stats.series per worker, summed bucket by bucket). Its worker_id is -user_id: the chart cache's key."""
    from . import stats
    ids = list(db.session.execute(db.select(Worker.id).where(Worker.owner_id == user_id)).scalars())
    total = stats.series(0, period, start, end, now=now, zone=zone)
    total.worker_id = -user_id
    for worker_id in ids:
        one = stats.series(worker_id, period, start, end, now=now, zone=zone)
        for mine, theirs in zip(total.buckets, one.buckets):
            for name in ("task_earnings_micros", "mining_earnings_micros", "tasks_completed", "tasks_failed",
                         "compute_seconds"):
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
    return total


def payout_wallet(worker: Worker) -> dict:
    """What the app shows as "paid to": payouts are per account, so the account's wallet; a worker's own
    wallet (settings) is kept for its mining and said to be so. {payout_wallet, payout_wallet_source}."""
    owner = db.session.get(User, worker.owner_id)
    if owner is not None and owner.wallet_address:
        return {"payout_wallet": owner.wallet_address, "payout_wallet_source": "account"}
    return {"payout_wallet": None, "payout_wallet_source": None}

"""Statements: the ledger rows an account may see (a provider's earnings and payouts, a creator's credit
and spend), searched and paged for pages and the API, and written as CSV; and `post_once`, the one way
money rows other than task rewards are written (a unique key makes each movement happen once)."""

import csv
import io
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from .. import money
from ..clock import utcnow
from ..extensions import db
from ..models import Job, LedgerEntry, LedgerKind
from . import Page, ServiceError, ledger

PER_PAGE_MAX = 200
Q_MAX = 100

# What a provider's statement lists: everything paid to them or taken out of their balance. Mining is
# an estimate the app reports (the pool pays it, not the portal): listed, but never in the balance.
PROVIDER_KINDS = (*ledger.EARNING_KINDS, LedgerKind.PAYOUT, LedgerKind.PAYOUT_RETURN, LedgerKind.MINING)
KIND_LABELS = {
    LedgerKind.TASK_REWARD: "Task reward", LedgerKind.CHECK_REWARD: "Check reward",
    LedgerKind.REVERSAL: "Reversal", LedgerKind.ADJUSTMENT: "Adjustment", LedgerKind.MINING: "Mining (estimate)",
    LedgerKind.PAYOUT: "Payout", LedgerKind.PAYOUT_RETURN: "Payout returned", LedgerKind.CREDIT: "Credit added",
    LedgerKind.RESERVE: "Budget held", LedgerKind.RELEASE: "Budget released",
}

# The same rows as a creator reads them: a task's reward is what it cost them, its reversal a refund.
CREATOR_LABELS = KIND_LABELS | {LedgerKind.TASK_REWARD: "Task cost", LedgerKind.REVERSAL: "Refund"}


def post_once(key: str, **fields) -> LedgerEntry:
    """Add the ledger row named `key`, or return the one already there (inside the caller's transaction).

    The unique key is what makes a payout, a credit or a hold happen once, even when two requests race
    past the check: the loser's flush fails, and the caller's transaction is rolled back whole.
    """
    existing = db.session.execute(db.select(LedgerEntry).where(LedgerEntry.key == key)).scalar_one_or_none()
    if existing is not None:
        return existing
    entry = LedgerEntry(key=key, **fields)
    db.session.add(entry)
    db.session.flush()
    return entry


def _clean_q(q) -> str:
    q = (q or "").strip()
    if len(q) > Q_MAX:
        raise ServiceError("invalid_q", f"Search text is at most {Q_MAX} characters.")
    return q


def _search(q: str):
    """Part of the memo, a kind ("payout"), or an entry, job or task number ("#12")."""
    if not q:
        return db.true()
    number = q.lstrip("#")
    conditions = [LedgerEntry.memo.ilike(f"%{q}%"), LedgerEntry.kind.in_(
        [k for k, label in KIND_LABELS.items() if q.lower() in label.lower() or q.lower() in k.value])]
    if number.isdigit() and len(number) < 10:
        n = int(number)
        conditions += [LedgerEntry.id == n, LedgerEntry.job_id == n, LedgerEntry.task_id == n]
    return db.or_(*conditions)


def provider_rows(user_id: int):
    """SQL condition: the provider's own statement rows."""
    return db.and_(LedgerEntry.provider_id == user_id, LedgerEntry.kind.in_(list(PROVIDER_KINDS)))


def creator_rows(user_id: int):
    """SQL condition: what moved a creator's credit balance: credit added, and the spend of their budgeted
    jobs (task rewards less reversals). Holds (reserve/release) are not in it: they move money between
    "available" and "reserved", not out of the balance (the Spend page shows them per job)."""
    own_budgeted = db.select(Job.id).where(Job.owner_id == user_id, Job.budget_micros.is_not(None))
    return db.or_(db.and_(LedgerEntry.account_id == user_id, LedgerEntry.kind == LedgerKind.CREDIT),
                  db.and_(LedgerEntry.job_id.in_(own_budgeted), LedgerEntry.kind.in_(list(ledger.JOB_COST_KINDS))))


def statement(condition, q=None, page: int = 1, per_page: int = 25) -> Page:
    """One page of rows (newest first) matching `condition` and the search text."""
    q = _clean_q(q)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1 or page > 10**6:
        raise ServiceError("invalid_page", "page must be a whole number from 1.")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= PER_PAGE_MAX:
        raise ServiceError("invalid_per_page", f"per_page must be a whole number from 1 to {PER_PAGE_MAX}.")
    where = db.and_(condition, _search(q))
    total = db.session.execute(db.select(db.func.count(LedgerEntry.id)).where(where)).scalar_one()
    pages = max(1, -(-total // per_page))
    items = list(db.session.execute(db.select(LedgerEntry).where(where)
                                    .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
                                    .limit(per_page).offset((page - 1) * per_page)).scalars())
    return Page(items=items, page=page, pages=pages, total=int(total), per_page=per_page)


def signed_for_creator(entry: LedgerEntry) -> int:
    """A row's effect on the creator's balance: credit adds, a task's reward is spend (its reversal refunds)."""
    return entry.amount_micros if entry.kind == LedgerKind.CREDIT else -entry.amount_micros


def state_of(entry: LedgerEntry, now: datetime | None = None) -> str:
    """pending (held for a check or settling), available, or done (payouts, credit, estimates)."""
    if entry.kind not in ledger.EARNING_KINDS:
        return ""
    now = now or utcnow()
    return "available" if entry.available_at is not None and entry.available_at <= now else "pending"


def serialize(entry: LedgerEntry, creator: bool = False, now: datetime | None = None) -> dict:
    amount = signed_for_creator(entry) if creator else entry.amount_micros
    labels = CREATOR_LABELS if creator else KIND_LABELS
    return {"id": entry.id, "kind": entry.kind.value, "label": labels.get(entry.kind, entry.kind.value),
            "amount": money.fmt(amount), "created_at": entry.created_at.isoformat(),
            "available_at": entry.available_at.isoformat() if entry.available_at else None,
            "state": "" if creator else state_of(entry, now),
            "worker_id": entry.worker_id, "job_id": entry.job_id, "task_id": entry.task_id,
            "payout_id": entry.payout_id, "memo": entry.memo or ""}


CSV_COLUMNS = ["id", "created_at", "kind", "amount", "state", "available_at", "worker_id", "job_id", "task_id",
               "payout_id", "memo"]


def _csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: a leading =, +, - or @ would be read as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _is_number(text)) else text


def _is_number(text: str) -> bool:
    try:
        money.to_micros(text)
        return True
    except ValueError:
        return False


def csv_lines(condition, q=None, creator: bool = False, now: datetime | None = None):
    """The whole statement (search applied) as CSV text, yielded in chunks of rows."""
    q = _clean_q(q)
    now = now or utcnow()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    rows = db.session.execute(db.select(LedgerEntry).where(db.and_(condition, _search(q)))
                              .order_by(LedgerEntry.created_at, LedgerEntry.id)
                              .execution_options(yield_per=500)).scalars()
    for n, entry in enumerate(rows, start=1):
        data = serialize(entry, creator=creator, now=now)
        writer.writerow([_csv_cell(data[c]) for c in CSV_COLUMNS])
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def unique_violation(exc: IntegrityError) -> bool:
    """True for a unique-key race (the other request did it first), not another integrity problem."""
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text

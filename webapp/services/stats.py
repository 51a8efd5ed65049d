"""Worker statistics: the daily roll-up the charts read, period series bucketed by day or month, totals."""

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from .. import money
from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import (LedgerEntry, LedgerKind, MiningReport, Task, TaskEvent, TaskEventKind, TaskStatus,
                      Worker, WorkerDailyStat)
from . import ServiceError, ledger, verification

PERIODS = ("week", "month", "year", "custom")
DAY_BUCKETS_MAX = 92  # a custom range up to about a quarter is shown per day, longer ones per month
MAX_SPAN_DAYS = 3 * 365 + 1  # three years, leap day included
ROLLUP_DAYS = 2  # today and yesterday: late reports land within a day
_CHUNK = 500  # worker ids per IN (...) list


# ---------------------------------------------------------------------------------------------------
# Roll-up

def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _chunks(ids: list[int]):
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def _day_values(worker_ids: list[int], day: date) -> dict[int, dict]:
    """Recompute one UTC day's figures for these workers from the rows they summarise."""
    lo, hi = _day_bounds(day)
    values: dict[int, dict] = {}

    def slot(worker_id):
        return values.setdefault(worker_id, {"task_earnings_micros": 0, "mining_earnings_micros": 0,
                                             "tasks_completed": 0, "tasks_failed": 0, "compute_seconds": 0.0})

    for ids in _chunks(worker_ids):
        # A completed task counts for the worker that completed it, on the day it finished.
        for worker_id, count, seconds in db.session.execute(
                db.select(Task.worker_id, db.func.count(), db.func.coalesce(db.func.sum(Task.compute_seconds), 0.0))
                .where(Task.worker_id.in_(ids), Task.status == TaskStatus.COMPLETED,
                       Task.finished_at >= lo, Task.finished_at < hi)
                .group_by(Task.worker_id)):
            row = slot(worker_id)
            row["tasks_completed"], row["compute_seconds"] = int(count), float(seconds)
        # A failure counts for the worker that failed the attempt, even when another worker later
        # completed the task: the task row only remembers its last worker, the events remember all.
        for worker_id, count in db.session.execute(
                db.select(TaskEvent.worker_id, db.func.count())
                .where(TaskEvent.worker_id.in_(ids), TaskEvent.kind == TaskEventKind.FAILED,
                       TaskEvent.created_at >= lo, TaskEvent.created_at < hi)
                .group_by(TaskEvent.worker_id)):
            slot(worker_id)["tasks_failed"] = int(count)
        # Earnings are what the ledger credited that day (the ledger is the money's truth).
        for worker_id, total in db.session.execute(
                db.select(LedgerEntry.worker_id, db.func.sum(LedgerEntry.amount_micros))
                .where(LedgerEntry.worker_id.in_(ids), LedgerEntry.kind == LedgerKind.TASK_REWARD,
                       LedgerEntry.created_at >= lo, LedgerEntry.created_at < hi)
                .group_by(LedgerEntry.worker_id)):
            slot(worker_id)["task_earnings_micros"] = int(total or 0)
        for worker_id, total in db.session.execute(
                db.select(MiningReport.worker_id, db.func.sum(MiningReport.earnings_micros))
                .where(MiningReport.worker_id.in_(ids), MiningReport.reported_at >= lo,
                       MiningReport.reported_at < hi)
                .group_by(MiningReport.worker_id)):
            slot(worker_id)["mining_earnings_micros"] = int(total or 0)
    return values


def rollup_days(days: list[date], worker_ids: list[int] | None = None) -> int:
    """Recompute the WorkerDailyStat rows of these days (all workers, or the given ones); returns rows written.

    The rows are overwritten with values recomputed from tasks, task events, the ledger and mining
    reports, so running it again changes nothing, and it corrects whatever a live increment missed.
    """
    begin_write_transaction(db.session)  # SQLite: no live increment can slip between read and write
    keys = [d.isoformat() for d in days]
    if worker_ids is None:
        # Only a worker that was seen can have done anything; plus rows that exist (to correct them).
        since = _day_bounds(min(days))[0] - timedelta(hours=1)
        seen = db.session.scalars(db.select(Worker.id).where(Worker.last_heartbeat_at >= since)).all()
        existing = db.session.scalars(
            db.select(WorkerDailyStat.worker_id).where(WorkerDailyStat.day.in_(keys)).distinct()).all()
        worker_ids = sorted(set(seen) | set(existing))
    written = 0
    for day, key in zip(days, keys):
        values = _day_values(worker_ids, day)
        rows = {}
        for ids in _chunks(worker_ids):
            rows.update({r.worker_id: r for r in db.session.scalars(
                db.select(WorkerDailyStat).where(WorkerDailyStat.day == key, WorkerDailyStat.worker_id.in_(ids)))})
        for worker_id in worker_ids:
            figures = values.get(worker_id)
            row = rows.get(worker_id)
            if row is None:
                if figures is None:
                    continue  # nothing happened and nothing was recorded: no row needed
                row = WorkerDailyStat(worker_id=worker_id, day=key)
                db.session.add(row)
            figures = figures or dict.fromkeys(("task_earnings_micros", "mining_earnings_micros",
                                                "tasks_completed", "tasks_failed"), 0) | {"compute_seconds": 0.0}
            for name, value in figures.items():
                if getattr(row, name) != value:
                    setattr(row, name, value)
            written += 1
    db.session.commit()
    return written


def rollup_recent(now: datetime | None = None) -> int:
    """The periodic target: recompute today's and yesterday's rows for every worker seen lately."""
    today = (now or utcnow()).astimezone(timezone.utc).date()
    return rollup_days([today - timedelta(days=i) for i in range(ROLLUP_DAYS - 1, -1, -1)])


# ---------------------------------------------------------------------------------------------------
# Series for the charts

@dataclass
class Bucket:
    start: date
    label: str  # "2024-05-06" for a day, "2024-05" for a month
    task_earnings_micros: int = 0
    mining_earnings_micros: int = 0
    tasks_completed: int = 0
    tasks_failed: int = 0
    compute_seconds: float = 0.0


@dataclass
class Series:
    worker_id: int
    period: str
    unit: str  # "day" | "month"
    start: date  # first day covered
    end: date  # last day covered (inclusive)
    buckets: list[Bucket] = field(default_factory=list)

    def total(self, name: str):
        return sum(getattr(b, name) for b in self.buckets)

    @property
    def version(self) -> str:
        """A short digest of the figures: a chart drawn from equal figures is the same chart."""
        digest = hashlib.sha256(repr((self.period, self.unit, self.start, self.end,
                                      [tuple(asdict(b).values()) for b in self.buckets])).encode())
        return digest.hexdigest()[:16]

    def to_dict(self) -> dict:
        """The JSON shape (money as decimal USD strings)."""
        return {
            "period": self.period, "unit": self.unit,
            "from": self.start.isoformat(), "to": self.end.isoformat(),
            "buckets": [{
                "start": b.start.isoformat(), "label": b.label,
                "task_earnings": money.fmt(b.task_earnings_micros),
                "mining_earnings": money.fmt(b.mining_earnings_micros),
                "tasks_completed": b.tasks_completed, "tasks_failed": b.tasks_failed,
                "compute_seconds": round(b.compute_seconds, 3),
            } for b in self.buckets],
            "totals": {
                "task_earnings": money.fmt(self.total("task_earnings_micros")),
                "mining_earnings": money.fmt(self.total("mining_earnings_micros")),
                "tasks_completed": self.total("tasks_completed"),
                "tasks_failed": self.total("tasks_failed"),
                "compute_seconds": round(self.total("compute_seconds"), 3),
            },
        }


def _parse_day(value, what: str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value or "").strip())
    except ValueError:
        raise ServiceError("invalid_date", f"The '{what}' date must look like 2024-05-31.") from None


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_range(period: str, start=None, end=None, now: datetime | None = None) -> tuple[date, date, str]:
    """(first day, last day, bucket unit) of a period; raises ServiceError (400) on a bad choice."""
    today = (now or utcnow()).astimezone(timezone.utc).date()
    period = (period or "week").lower()
    if period == "week":
        return today - timedelta(days=6), today, "day"
    if period == "month":
        return today - timedelta(days=29), today, "day"
    if period == "year":
        return _add_months(today.replace(day=1), -11), today, "month"
    if period != "custom":
        raise ServiceError("invalid_period", "Choose a period: week, month, year or custom.")
    if not start or not end:
        raise ServiceError("invalid_date", "A custom period needs both a 'from' and a 'to' date.")
    first, last = _parse_day(start, "from"), _parse_day(end, "to")
    if first > last:
        raise ServiceError("invalid_date", "The 'from' date must be on or before the 'to' date.")
    if (last - first).days + 1 > MAX_SPAN_DAYS:
        raise ServiceError("invalid_date", "A custom period can span at most three years.")
    return first, last, "day" if (last - first).days + 1 <= DAY_BUCKETS_MAX else "month"


def series(worker_id: int, period: str, start=None, end=None, now: datetime | None = None) -> Series:
    """The worker's figures over a period, one bucket per day (week, month, short custom ranges) or per
    month (year, long custom ranges); empty buckets are kept so the charts show gaps honestly."""
    first, last, unit = period_range(period, start, end, now)
    result = Series(worker_id=worker_id, period=(period or "week").lower(), unit=unit, start=first, end=last)
    index: dict[str, Bucket] = {}
    if unit == "day":
        day = first
        while day <= last:
            index[day.isoformat()] = Bucket(start=day, label=day.isoformat())
            day += timedelta(days=1)
    else:
        month = first.replace(day=1)
        while month <= last:
            key = month.isoformat()[:7]
            index[key] = Bucket(start=max(month, first), label=key)
            month = _add_months(month, 1)
    result.buckets = list(index.values())
    # One primary-key range scan: at most ~1,100 rows for the longest allowed range.
    rows = db.session.execute(
        db.select(WorkerDailyStat.day, WorkerDailyStat.task_earnings_micros, WorkerDailyStat.mining_earnings_micros,
                  WorkerDailyStat.tasks_completed, WorkerDailyStat.tasks_failed, WorkerDailyStat.compute_seconds)
        .where(WorkerDailyStat.worker_id == worker_id, WorkerDailyStat.day >= first.isoformat(),
               WorkerDailyStat.day <= last.isoformat()))
    for day, task_micros, mining_micros, completed, failed, seconds in rows:
        bucket = index.get(day if unit == "day" else day[:7])
        if bucket is None:
            continue
        bucket.task_earnings_micros += int(task_micros or 0)
        bucket.mining_earnings_micros += int(mining_micros or 0)
        bucket.tasks_completed += int(completed or 0)
        bucket.tasks_failed += int(failed or 0)
        bucket.compute_seconds += float(seconds or 0.0)
    return result


# ---------------------------------------------------------------------------------------------------
# Totals for the Statistics tab

def summary(worker: Worker, now: datetime | None = None) -> dict:
    """Lifetime totals and uptime of one worker, as the Statistics tab shows them."""
    from . import presence  # the presence service owns uptime arithmetic

    now = now or utcnow()
    completed, failed, mining = db.session.execute(
        db.select(db.func.coalesce(db.func.sum(WorkerDailyStat.tasks_completed), 0),
                  db.func.coalesce(db.func.sum(WorkerDailyStat.tasks_failed), 0),
                  db.func.coalesce(db.func.sum(WorkerDailyStat.mining_earnings_micros), 0))
        .where(WorkerDailyStat.worker_id == worker.id)).one()
    percent = presence.uptime_percent([worker.id], now=now).get(worker.id, 0.0)
    split = ledger.earnings_split(worker.id, now)
    return {
        "earnings_micros": int(worker.earnings_micros or 0),
        "pending_micros": split["pending"],
        "available_micros": split["available"],
        "record": verification.record_of(worker),
        "mining_earnings_micros": int(mining),
        "compute_seconds": float(worker.compute_seconds or 0.0),
        "tasks_completed": int(completed),
        "tasks_failed": int(failed),
        "uptime_seconds": int(presence.current_uptime_seconds(worker, now=now)),
        "uptime_percent_30d": float(percent),
    }

"""Worker statistics: the daily roll-up the charts read, period series bucketed by day or month, totals."""

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import literal

from .. import money, timezones
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


def _sources(worker_ids) -> list[tuple]:
    """What each figure counts, as (worker column, time column, {figure: value}, conditions): the one
    statement of these rules, read by the UTC roll-up (summed per worker and day) and by a series in
    another zone (row by row, bucketed by that zone's days)."""
    return [
        # A completed task counts for the worker that completed it, on the day it finished.
        (Task.worker_id, Task.finished_at,
         {"tasks_completed": literal(1), "compute_seconds": db.func.coalesce(Task.compute_seconds, 0.0)},
         [Task.worker_id.in_(worker_ids), Task.status == TaskStatus.COMPLETED]),
        # A failure counts for the worker that failed the attempt, even when another worker later
        # completed the task: the task row only remembers its last worker, the events remember all.
        (TaskEvent.worker_id, TaskEvent.created_at, {"tasks_failed": literal(1)},
         [TaskEvent.worker_id.in_(worker_ids), TaskEvent.kind == TaskEventKind.FAILED]),
        # Earnings are what the ledger credited that day (the ledger is the money's truth).
        (LedgerEntry.worker_id, LedgerEntry.created_at, {"task_earnings_micros": LedgerEntry.amount_micros},
         [LedgerEntry.worker_id.in_(worker_ids), LedgerEntry.kind == LedgerKind.TASK_REWARD]),
        (MiningReport.worker_id, MiningReport.reported_at, {"mining_earnings_micros": MiningReport.earnings_micros},
         [MiningReport.worker_id.in_(worker_ids)]),
    ]


def _empty_figures() -> dict:
    return {"task_earnings_micros": 0, "mining_earnings_micros": 0, "tasks_completed": 0, "tasks_failed": 0,
            "compute_seconds": 0.0}


def _cast(name: str, value):
    return float(value or 0.0) if name == "compute_seconds" else int(value or 0)


def _day_values(worker_ids: list[int], day: date) -> dict[int, dict]:
    """Recompute one UTC day's figures for these workers from the rows they summarise."""
    lo, hi = _day_bounds(day)
    values: dict[int, dict] = {}
    for ids in _chunks(worker_ids):
        for worker_col, time_col, figures, conditions in _sources(ids):
            names = list(figures)
            for worker_id, *sums in db.session.execute(
                    db.select(worker_col, *[db.func.sum(figures[n]) for n in names])
                    .where(*conditions, time_col >= lo, time_col < hi).group_by(worker_col)):
                row = values.setdefault(worker_id, _empty_figures())
                for name, total in zip(names, sums):
                    row[name] = _cast(name, total)
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
    zone: str = "UTC"  # whose midnights bound the days (webapp/timezones.py)

    def total(self, name: str):
        return sum(getattr(b, name) for b in self.buckets)

    @property
    def version(self) -> str:
        """A short digest of the figures: a chart drawn from equal figures is the same chart."""
        digest = hashlib.sha256(repr((self.period, self.unit, self.start, self.end, self.zone,
                                      [tuple(asdict(b).values()) for b in self.buckets])).encode())
        return digest.hexdigest()[:16]

    def to_dict(self) -> dict:
        """The JSON shape (money as decimal USD strings)."""
        return {
            "period": self.period, "unit": self.unit, "time_zone": self.zone,
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


def period_range(period: str, start=None, end=None, now: datetime | None = None,
                 zone: ZoneInfo | None = None) -> tuple[date, date, str]:
    """(first day, last day, bucket unit) of a period, "today" being the zone's (UTC by default);
    raises ServiceError (400) on a bad choice."""
    today = timezones.today(now or utcnow(), zone or timezones.UTC)
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


def series(worker_id: int, period: str, start=None, end=None, now: datetime | None = None,
           zone: ZoneInfo | None = None) -> Series:
    """The worker's figures over a period, one bucket per day (week, month, short custom ranges) or per
    month (year, long custom ranges); empty buckets are kept so the charts show gaps honestly.

    Days are the zone's (UTC by default): in UTC the roll-up rows answer; elsewhere the rows they sum
    are read again and bucketed by that zone's midnights, so a bar is the viewer's day."""
    zone = zone or timezones.UTC
    first, last, unit = period_range(period, start, end, now, zone)
    result = Series(worker_id=worker_id, period=(period or "week").lower(), unit=unit, start=first, end=last,
                    zone=str(zone.key))
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
    if zone.key != "UTC":
        _fill_in_zone(index, worker_id, first, last, unit, zone)
        return result
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


def _fill_in_zone(index: dict, worker_id: int, first: date, last: date, unit: str, zone: ZoneInfo) -> None:
    lo, hi = timezones.day_start(first, zone), timezones.day_start(last + timedelta(days=1), zone)
    for _worker_col, time_col, figures, conditions in _sources([worker_id]):
        names = list(figures)
        for at, *values in db.session.execute(
                db.select(time_col, *[figures[n] for n in names]).where(*conditions, time_col >= lo, time_col < hi)):
            day = timezones.to_local(at, zone).date()
            bucket = index.get(day.isoformat() if unit == "day" else day.isoformat()[:7])
            if bucket is None:
                continue
            for name, value in zip(names, values):
                setattr(bucket, name, getattr(bucket, name) + _cast(name, value))


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

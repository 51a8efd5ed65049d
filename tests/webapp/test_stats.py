"""Worker statistics: period ranges, day/month bucketing, the daily roll-up and the Statistics tab totals."""

from datetime import date, datetime, timedelta, timezone

import pytest

from webapp.extensions import db
from webapp.models import (Job, JobType, LedgerEntry, LedgerKind, MiningReport, PresenceInterval, Task,
                           TaskEvent, TaskEventKind, TaskStatus, User, Worker, WorkerDailyStat, WorkerState)
from webapp.services import ServiceError, stats

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def worker(ctx, clock):
    clock.set(NOW)
    user = User(email="ada@example.com", password_hash="x")
    db.session.add(user)
    db.session.flush()
    w = Worker(owner_id=user.id, name="Studio PC", created_at=NOW - timedelta(days=400), gpus=[], renderers={},
               capabilities={}, compliance=[], mining_config={}, bench_details={}, earnings_micros=0,
               compute_seconds=0.0, last_heartbeat_at=NOW - timedelta(seconds=5), state=WorkerState.IDLE)
    db.session.add(w)
    db.session.commit()
    return w


def day_row(worker, day, **values):
    db.session.add(WorkerDailyStat(worker_id=worker.id, day=day, **{
        "task_earnings_micros": 0, "mining_earnings_micros": 0, "tasks_completed": 0, "tasks_failed": 0,
        "compute_seconds": 0.0, **values}))


# --- periods --------------------------------------------------------------------------------------

def test_week_month_year_ranges_end_today():
    assert stats.period_range("week", now=NOW) == (date(2024, 5, 9), date(2024, 5, 15), "day")
    assert stats.period_range("month", now=NOW) == (date(2024, 4, 16), date(2024, 5, 15), "day")
    # A year is the last 12 calendar months, this one included, one bucket each.
    assert stats.period_range("year", now=NOW) == (date(2023, 6, 1), date(2024, 5, 15), "month")


def test_custom_ranges_pick_day_or_month_buckets():
    assert stats.period_range("custom", "2024-01-01", "2024-04-01", now=NOW)[2] == "day"  # 92 days
    assert stats.period_range("custom", "2024-01-01", "2024-04-02", now=NOW)[2] == "month"  # 93 days
    assert stats.period_range("custom", date(2021, 5, 16), date(2024, 5, 15), now=NOW)[:2] == (
        date(2021, 5, 16), date(2024, 5, 15))


@pytest.mark.parametrize("period, start, end, words", [
    ("custom", "2024-05-10", "2024-05-01", "on or before"),
    ("custom", "2020-01-01", "2024-01-01", "three years"),
    ("custom", "2024-13-01", "2024-12-01", "2024-05-31"),
    ("custom", None, "2024-12-01", "both"),
    ("decade", None, None, "week, month, year or custom"),
])
def test_bad_periods_are_400_with_a_reason(period, start, end, words):
    with pytest.raises(ServiceError) as err:
        stats.period_range(period, start, end, now=NOW)
    assert err.value.status == 400
    assert words in err.value.message


# --- series bucketing -----------------------------------------------------------------------------

def test_week_series_has_seven_day_buckets_with_gaps_kept(worker):
    day_row(worker, "2024-05-08", task_earnings_micros=9_000_000, tasks_completed=9)  # before the week
    day_row(worker, "2024-05-09", task_earnings_micros=1_500_000, tasks_completed=3, tasks_failed=1)
    day_row(worker, "2024-05-15", task_earnings_micros=250_000, tasks_completed=1, mining_earnings_micros=70_000)
    day_row(worker, "2024-05-16", task_earnings_micros=7_000_000, tasks_completed=7)  # tomorrow: not shown
    db.session.commit()

    series = stats.series(worker.id, "week")
    assert [b.label for b in series.buckets] == [f"2024-05-{d:02d}" for d in range(9, 16)]
    assert series.buckets[0].task_earnings_micros == 1_500_000
    assert (series.buckets[0].tasks_completed, series.buckets[0].tasks_failed) == (3, 1)
    assert all(b.tasks_completed == 0 for b in series.buckets[1:6])
    assert series.buckets[-1].mining_earnings_micros == 70_000
    assert series.total("task_earnings_micros") == 1_750_000
    body = series.to_dict()
    assert body["totals"]["task_earnings"] == "1.750000"
    assert body["buckets"][0]["task_earnings"] == "1.500000"
    assert (body["from"], body["to"], body["unit"]) == ("2024-05-09", "2024-05-15", "day")


def test_month_series_has_thirty_days(worker):
    day_row(worker, "2024-04-16", tasks_completed=2)
    day_row(worker, "2024-04-15", tasks_completed=50)
    db.session.commit()
    series = stats.series(worker.id, "month")
    assert len(series.buckets) == 30
    assert series.buckets[0].label == "2024-04-16"
    assert series.total("tasks_completed") == 2


def test_year_series_sums_days_into_twelve_months(worker):
    day_row(worker, "2023-05-31", task_earnings_micros=5)  # the month before the window
    day_row(worker, "2023-06-01", task_earnings_micros=100, tasks_completed=1)
    day_row(worker, "2023-06-30", task_earnings_micros=200, tasks_completed=2, compute_seconds=30.5)
    day_row(worker, "2024-05-02", task_earnings_micros=1000, tasks_failed=4)
    db.session.commit()
    series = stats.series(worker.id, "year")
    assert series.unit == "month"
    assert [b.label for b in series.buckets][:2] == ["2023-06", "2023-07"]
    assert len(series.buckets) == 12 and series.buckets[-1].label == "2024-05"
    assert series.buckets[0].task_earnings_micros == 300
    assert series.buckets[0].tasks_completed == 3
    assert series.buckets[0].compute_seconds == pytest.approx(30.5)
    assert series.buckets[-1].tasks_failed == 4
    assert series.total("task_earnings_micros") == 1300


def test_long_custom_series_is_monthly_and_clipped_to_the_range(worker):
    day_row(worker, "2024-01-10", tasks_completed=1)  # before 'from', same month
    day_row(worker, "2024-01-20", tasks_completed=2)
    day_row(worker, "2024-04-30", tasks_completed=4)
    db.session.commit()
    series = stats.series(worker.id, "custom", "2024-01-15", "2024-04-30")
    assert series.unit == "month"
    assert [b.label for b in series.buckets] == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert series.buckets[0].start == date(2024, 1, 15)
    assert [b.tasks_completed for b in series.buckets] == [2, 0, 0, 4]


def test_series_version_changes_with_the_figures(worker):
    day_row(worker, "2024-05-14", tasks_completed=1)
    db.session.commit()
    before = stats.series(worker.id, "week").version
    assert stats.series(worker.id, "week").version == before
    db.session.get(WorkerDailyStat, (worker.id, "2024-05-14")).tasks_completed = 2
    db.session.commit()
    assert stats.series(worker.id, "week").version != before


# --- the roll-up ----------------------------------------------------------------------------------

def _job(owner_id):
    job = Job(owner_id=owner_id, name="Forest", type=JobType.RENDER, spec={}, software="Blender · Cycles")
    db.session.add(job)
    db.session.flush()
    return job


def _completed(worker, job, finished, reward, seconds):
    task = Task(job_id=job.id, seq=0, type=JobType.RENDER, params={}, status=TaskStatus.COMPLETED,
                worker_id=worker.id, started_at=finished - timedelta(seconds=seconds), finished_at=finished,
                compute_seconds=seconds, reward_micros=reward)
    db.session.add(task)
    db.session.flush()
    db.session.add(LedgerEntry(kind=LedgerKind.TASK_REWARD, amount_micros=reward, worker_id=worker.id,
                               job_id=job.id, task_id=task.id, created_at=finished))
    db.session.add(TaskEvent(task_id=task.id, job_id=job.id, worker_id=worker.id, kind=TaskEventKind.COMPLETED,
                             created_at=finished))
    return task


def test_rollup_recomputes_today_and_yesterday_from_the_source_rows(worker):
    job = _job(worker.owner_id)
    today, yesterday, older = NOW - timedelta(hours=1), NOW - timedelta(days=1), NOW - timedelta(days=3)
    _completed(worker, job, today, 400_000, 600)
    _completed(worker, job, today - timedelta(hours=2), 100_000, 300)
    _completed(worker, job, yesterday, 50_000, 60)
    _completed(worker, job, older, 999, 1)
    failed = _completed(worker, job, yesterday, 0, 1)
    failed.status = TaskStatus.FAILED  # not completed: it counts through its event only
    db.session.add(TaskEvent(task_id=failed.id, job_id=job.id, worker_id=worker.id, kind=TaskEventKind.FAILED,
                             created_at=yesterday))
    db.session.add(MiningReport(worker_id=worker.id, coin="ETC", pool="p", hashrate=1.0, period_seconds=60,
                                earnings_micros=30_000, reported_at=today))
    # A live increment that went wrong (counted twice) and a stale row with nothing behind it.
    day_row(worker, "2024-05-15", tasks_completed=4, task_earnings_micros=1)
    day_row(worker, "2024-05-13", tasks_completed=7)
    db.session.commit()

    assert stats.rollup_recent() == 2
    rows = {r.day: r for r in db.session.scalars(db.select(WorkerDailyStat).where(WorkerDailyStat.worker_id == worker.id))}
    assert (rows["2024-05-15"].tasks_completed, rows["2024-05-15"].task_earnings_micros) == (2, 500_000)
    assert rows["2024-05-15"].compute_seconds == pytest.approx(900)
    assert rows["2024-05-15"].mining_earnings_micros == 30_000
    assert (rows["2024-05-14"].tasks_completed, rows["2024-05-14"].tasks_failed) == (1, 1)
    assert rows["2024-05-14"].task_earnings_micros == 50_000
    assert rows["2024-05-13"].tasks_completed == 7  # outside the window: left alone

    snapshot = {d: (r.tasks_completed, r.task_earnings_micros, r.tasks_failed) for d, r in rows.items()}
    stats.rollup_recent()  # idempotent
    db.session.expire_all()
    again = {r.day: (r.tasks_completed, r.task_earnings_micros, r.tasks_failed)
             for r in db.session.scalars(db.select(WorkerDailyStat).where(WorkerDailyStat.worker_id == worker.id))}
    assert again == snapshot


def test_rollup_zeroes_a_row_whose_source_rows_are_gone(worker):
    day_row(worker, "2024-05-15", tasks_completed=3, task_earnings_micros=10)
    db.session.commit()
    stats.rollup_recent()
    row = db.session.get(WorkerDailyStat, (worker.id, "2024-05-15"))
    assert (row.tasks_completed, row.task_earnings_micros) == (0, 0)


def test_rollup_agrees_with_the_live_increments_of_the_dispatcher(worker):
    """What complete_task/fail_task add to the day row is exactly what the roll-up recomputes."""
    from webapp.services import ledger
    job = _job(worker.owner_id)
    task = _completed(worker, job, NOW, 120_000, 90)
    ledger.bump_daily(worker.id, ledger.day_of(NOW), task_earnings_micros=120_000, tasks_completed=1,
                      compute_seconds=90)
    db.session.add(TaskEvent(task_id=task.id, job_id=job.id, worker_id=worker.id, kind=TaskEventKind.FAILED,
                             created_at=NOW))
    ledger.bump_daily(worker.id, ledger.day_of(NOW), tasks_failed=1)
    db.session.commit()
    live = db.session.get(WorkerDailyStat, (worker.id, "2024-05-15"))
    live = (live.tasks_completed, live.tasks_failed, live.task_earnings_micros, live.compute_seconds)
    stats.rollup_recent()
    db.session.expire_all()
    row = db.session.get(WorkerDailyStat, (worker.id, "2024-05-15"))
    assert (row.tasks_completed, row.tasks_failed, row.task_earnings_micros, row.compute_seconds) == live


# --- the Statistics tab's totals ------------------------------------------------------------------

def test_summary_totals_and_uptime(worker):
    worker.earnings_micros = 12_340_000
    worker.compute_seconds = 7200.0
    day_row(worker, "2024-05-01", tasks_completed=10, tasks_failed=2, mining_earnings_micros=500_000)
    day_row(worker, "2023-01-01", tasks_completed=5)
    # Online 10 days (with a gap) in the last 30, and now in a 2-hour stretch that is still open.
    db.session.add(PresenceInterval(worker_id=worker.id, started_at=NOW - timedelta(days=20),
                                    ended_at=NOW - timedelta(days=15)))
    db.session.add(PresenceInterval(worker_id=worker.id, started_at=NOW - timedelta(days=10),
                                    ended_at=NOW - timedelta(days=5, hours=2)))
    db.session.add(PresenceInterval(worker_id=worker.id, started_at=NOW - timedelta(hours=2),
                                    ended_at=NOW - timedelta(seconds=5)))
    db.session.commit()
    summary = stats.summary(worker)
    assert summary["earnings_micros"] == 12_340_000
    assert summary["compute_seconds"] == 7200.0
    assert (summary["tasks_completed"], summary["tasks_failed"]) == (15, 2)
    assert summary["mining_earnings_micros"] == 500_000
    assert summary["uptime_seconds"] == 2 * 3600
    assert summary["uptime_percent_30d"] == pytest.approx(100 * 10 / 30, abs=0.05)


def test_summary_of_an_offline_worker_has_no_current_uptime(worker):
    worker.last_heartbeat_at = NOW - timedelta(hours=3)
    db.session.add(PresenceInterval(worker_id=worker.id, started_at=NOW - timedelta(hours=6),
                                    ended_at=NOW - timedelta(hours=3)))
    db.session.commit()
    summary = stats.summary(worker)
    assert summary["uptime_seconds"] == 0
    assert summary["uptime_percent_30d"] == pytest.approx(100 * 3 / (30 * 24), abs=0.05)

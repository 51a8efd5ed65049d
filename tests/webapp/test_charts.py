"""The Statistics tab's charts: titled, labelled SVG with units, an honest empty state, cached per data version."""

from datetime import date, timedelta

import pytest

from webapp import charts
from webapp.services.stats import Bucket, Series


def week(**values) -> Series:
    start = date(2024, 5, 9)
    buckets = [Bucket(start=start + timedelta(days=i), label=(start + timedelta(days=i)).isoformat()) for i in range(7)]
    for name, per_day in values.items():
        for bucket, value in zip(buckets, per_day):
            setattr(bucket, name, value)
    return Series(worker_id=1, period="week", unit="day", start=start, end=start + timedelta(days=6), buckets=buckets)


def year() -> Series:
    buckets = [Bucket(start=date(2023 + (5 + i) // 12, (5 + i) % 12 + 1, 1), label="", task_earnings_micros=i * 1_000_000)
               for i in range(12)]
    return Series(worker_id=1, period="year", unit="month", start=buckets[0].start, end=date(2024, 5, 15),
                  buckets=buckets)


@pytest.fixture(autouse=True)
def fresh_cache():
    charts.clear_cache()
    yield
    charts.clear_cache()


def test_earnings_chart_has_title_axis_labels_with_units_and_date_ticks():
    svg = charts.render_svg(week(task_earnings_micros=[1_500_000, 0, 2_000_000, 0, 0, 0, 250_000]),
                            "earnings-by-task").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "Earnings by Task" in svg
    assert "Earnings (USD)" in svg and "Date (UTC, per day)" in svg
    assert "Thu 09" in svg and "Wed 15" in svg  # readable day ticks
    assert "$2.00" in svg  # the y axis is in dollars
    assert "No completed tasks" not in svg


def test_compute_chart_stacks_completed_and_failed_with_a_legend():
    svg = charts.render_svg(week(tasks_completed=[3, 0, 5, 1, 0, 0, 2], tasks_failed=[1, 0, 0, 0, 0, 2, 0]),
                            "compute-tasks").decode()
    assert "Processed Compute Tasks" in svg
    assert "Tasks (count)" in svg
    assert "Completed" in svg and "Failed" in svg


def test_mining_chart_and_month_buckets():
    svg = charts.render_svg(year(), "earnings-by-mining").decode()
    assert "Earnings by Mining" in svg and "Estimated earnings (USD)" in svg
    assert "per month" in svg
    assert "No mining earnings reported in this period" in svg  # the year had task earnings only


@pytest.mark.parametrize("chart", list(charts.CHARTS))
def test_empty_period_says_so_instead_of_drawing_nothing(chart):
    svg = charts.render_svg(week(), chart).decode()
    assert charts.EMPTY[chart] in svg
    assert charts.CHARTS[chart] in svg


def test_compact_size_for_phones_is_narrower():
    wide = charts.render_svg(week(tasks_completed=[1] * 7), "compute-tasks")
    compact = charts.render_svg(week(tasks_completed=[1] * 7), "compute-tasks", "compact")
    assert b'width="302.4pt"' in compact  # 4.2 in at 72 pt per inch
    assert b'width="518.4pt"' in wide  # 7.2 in
    with pytest.raises(KeyError):
        charts.render_svg(week(), "compute-tasks", "huge")


def test_rendered_charts_are_cached_per_data_version(monkeypatch):
    calls = []
    real = charts.render_svg
    monkeypatch.setattr(charts, "render_svg", lambda *a: calls.append(a) or real(*a))
    series = week(tasks_completed=[1, 2, 3, 4, 5, 6, 7])
    first, etag = charts.chart_svg(series, "compute-tasks")
    again, etag_again = charts.chart_svg(week(tasks_completed=[1, 2, 3, 4, 5, 6, 7]), "compute-tasks")
    assert len(calls) == 1 and again == first and etag_again == etag
    changed, etag_changed = charts.chart_svg(week(tasks_completed=[1, 2, 3, 4, 5, 6, 8]), "compute-tasks")
    assert len(calls) == 2 and etag_changed != etag
    charts.chart_svg(series, "earnings-by-task")  # another chart of the same figures is its own entry
    assert len(calls) == 3


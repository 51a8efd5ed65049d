"""Times in the viewer's zone: the browser's (tz cookie), overridden by the account's choice; charts' days too."""

import re
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from tests.webapp.dispatch_factories import make_job, make_user, make_worker
from webapp.extensions import db
from webapp.models import Task, TaskStatus, User
from webapp.services import stats


def expiry(page: str) -> str:
    return re.search(r'Expires at <time datetime="[^"]+">([^<]+)</time>', page).group(1)


def test_pages_show_times_in_the_browsers_zone_and_the_account_can_override_it(app, client, auth, clock):
    auth.signup()
    guide = client.post("/workers/new", data={"name": "Attic tower"}, follow_redirects=True).get_data(as_text=True)
    # No zone known yet (a first visit): UTC, and the page says so. The code expires 15 min after T0 (12:00 UTC).
    assert expiry(guide) == "12:15 UTC" and "times are shown in UTC" in guide
    worker_url = re.search(r'href="(/workers/\d+)"', guide).group(1)

    client.set_cookie("tz", "Europe/Berlin")  # what static/js/pages.js writes from Intl
    guide = client.get(worker_url + "/setup").get_data(as_text=True)
    assert "times are shown in Europe/Berlin" in guide and 'data-zone="Europe/Berlin"' in guide
    assert 'data-zone-from="browser"' in guide
    client.post(worker_url + "/pairing-code")
    guide = client.get(worker_url + "/setup").get_data(as_text=True)
    assert expiry(guide) == "14:15 CEST"
    detail = client.get(worker_url).get_data(as_text=True)
    assert "created 2024-05-10 CEST" in detail

    # The account's choice wins over the browser's.
    assert client.post("/account/time-zone", data={"time_zone": "Asia/Tokyo"}).status_code == 302
    client.post(worker_url + "/pairing-code")
    guide = client.get(worker_url + "/setup").get_data(as_text=True)
    assert expiry(guide) == "21:15 JST" and 'data-zone-from="account"' in guide
    account = client.get("/account").get_data(as_text=True)
    assert '<option value="Asia/Tokyo" selected>' in account and "Europe/Berlin" in account

    # Back to the browser's zone with the empty choice.
    assert client.post("/account/time-zone", data={"time_zone": ""}).status_code == 302
    assert "times are shown in Europe/Berlin" in client.get("/account").get_data(as_text=True)


def test_a_bad_zone_is_a_form_message_and_a_bad_cookie_falls_back_to_utc(app, client, auth, clock):
    auth.signup()
    for bad in ("Mars/Olympus", "../../etc/passwd", "europe/berlin", "x" * 500, "Europe/Berlin\x00"):
        response = client.post("/account/time-zone", data={"time_zone": bad})
        assert response.status_code == 400, bad
        if len(bad) < 64 and "\x00" not in bad:  # longer ones: the form's length message; NUL: refused earlier
            assert "Choose a time zone from the list" in response.get_data(as_text=True), bad
    with app.app_context():
        assert db.session.execute(db.select(User.time_zone)).scalar_one() is None
    for cookie in ("Mars/Olympus", "'; DROP TABLE users; --", "Europe/Berlin" * 10):
        client.set_cookie("tz", cookie)
        page = client.get("/account")
        assert page.status_code == 200 and "times are shown in UTC" in page.get_data(as_text=True)


def test_chart_days_start_at_the_viewers_midnight(app, clock):
    with app.app_context():
        worker_id, _ = make_worker(make_user())
        _job, task_ids = make_job(tasks=2)
        late = datetime(2024, 5, 9, 23, 30, tzinfo=timezone.utc)  # 01:30 on the 10th in Berlin, 08:30 in Tokyo
        early = datetime(2024, 5, 10, 0, 30, tzinfo=timezone.utc)
        for task_id, finished in zip(task_ids, (late, early)):
            task = db.session.get(Task, task_id)
            task.status, task.worker_id, task.finished_at, task.compute_seconds = \
                TaskStatus.COMPLETED, worker_id, finished, 60.0
        db.session.commit()
        stats.rollup_days([date(2024, 5, 9), date(2024, 5, 10)])

        def per_day(zone):
            series = stats.series(worker_id, "week", zone=zone)
            return {b.label: b.tasks_completed for b in series.buckets if b.tasks_completed}, series

        utc, utc_series = per_day(None)
        assert utc == {"2024-05-09": 1, "2024-05-10": 1}
        berlin, berlin_series = per_day(ZoneInfo("Europe/Berlin"))
        assert berlin == {"2024-05-10": 2}
        # West of UTC the early one is still the 9th.
        assert per_day(ZoneInfo("America/New_York"))[0] == {"2024-05-09": 2}
        # A chart drawn for another zone is another chart (its ETag differs).
        assert berlin_series.version != utc_series.version and berlin_series.to_dict()["time_zone"] == "Europe/Berlin"


def test_the_chart_image_uses_the_viewers_zone(app, client, auth, clock):
    auth.signup()
    guide = client.post("/workers/new", data={"name": "Attic tower"}, follow_redirects=True).get_data(as_text=True)
    worker_url = re.search(r'href="(/workers/\d+)"', guide).group(1)
    client.set_cookie("tz", "Asia/Tokyo")
    svg = client.get(worker_url + "/charts/tasks-completed.svg").get_data(as_text=True)
    assert "Asia/Tokyo" in svg

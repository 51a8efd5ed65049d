"""Worker Management, New Worker and Worker Details pages: fragments, owner scoping, forms, charts, tasks."""

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import make_app
from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import (Job, JobType, PresenceInterval, Task, TaskOutput, TaskStatus, User, Worker,
                           WorkerDailyStat, WorkerState)
from webapp.security import normalize_pairing_code, token_hash
from webapp.services import presence, storage
from webapp.services import workers as worker_service

HX = {"HX-Request": "true"}


def add_worker(app, email="ada@example.com", name="Studio PC", online=True, **fields) -> int:
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == email)).scalar_one()
        worker, _code, _token = worker_service.create_worker(user, name)
        for key, value in fields.items():
            setattr(worker, key, value)
        if online:
            presence.record_heartbeat(worker, fields.get("state", WorkerState.IDLE))
        db.session.commit()
        return worker.id


@pytest.fixture
def signed_in(client, auth):
    auth.signup()
    return client


# --- Worker Management ----------------------------------------------------------------------------

def test_list_page_shows_counts_badges_and_actions(app, signed_in):
    add_worker(app, name="Render box", gpu_name="NVIDIA GeForce RTX 4090", ram_mb=65536, earnings_micros=12_500_000,
               gpus=[{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564, "driver": "551.86"}])
    add_worker(app, name="Fresh one", online=False)
    page = signed_in.get("/workers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and 'id="workers-live"' in html
    assert 'hx-trigger="every 5s' in html
    assert "Download Worker App" in html and "New Worker" in html
    assert re.search(r'badge-online">Online</span> <strong>1</strong>', html)
    assert re.search(r'badge-pending">Pending</span> <strong>1</strong>', html)
    assert "NVIDIA GeForce RTX 4090" in html and "64 GB" in html and "$12.50" in html
    assert "not connected yet" in html  # the pending worker's uptime
    assert "HX-Request" in page.headers["Vary"]


def test_fragment_for_htmx_keeps_the_query_string(app, signed_in):
    add_worker(app, name="Alpha")
    add_worker(app, name="Beta")
    page = signed_in.get("/workers?q=alp&sort=name&order=asc", headers=HX)
    html = page.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<div id="workers-live"')
    assert 'hx-get="/workers?q=alp&amp;sort=name&amp;order=asc"' in html
    assert "Alpha" in html and "Beta" not in html
    assert "HX-Request" in page.headers["Vary"]


def test_history_restore_gets_the_whole_page(app, signed_in):
    page = signed_in.get("/workers", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in page.get_data(as_text=True)


def test_sort_paging_and_filter_in_the_query_string(app, signed_in):
    app.config["PAGE_SIZE"] = 2
    for name in ("Charlie", "alpha", "Bravo"):
        add_worker(app, name=name)
    add_worker(app, name="Delta", online=False)
    html = signed_in.get("/workers?sort=name&order=asc").get_data(as_text=True)
    assert html.index("alpha") < html.index("Bravo")
    assert "Charlie" not in html and "Page 1 of 2" in html
    assert 'href="/workers?sort=name&amp;order=asc&amp;page=2"' in html
    assert 'aria-sort="ascending"' in html
    # The active column's link flips the order; the others start with their natural order.
    assert 'href="/workers?sort=name"' in html  # descending is the default order, left out of the URL
    page2 = signed_in.get("/workers?sort=name&order=asc&page=2").get_data(as_text=True)
    assert "Charlie" in page2 and "Delta" in page2
    pending = signed_in.get("/workers?status=pending").get_data(as_text=True)
    assert "Delta" in pending and "alpha" not in pending
    assert signed_in.get("/workers?sort=colour").status_code == 400


def test_empty_state_leads_to_the_guide(signed_in):
    html = signed_in.get("/workers").get_data(as_text=True)
    assert "No workers yet" in html and 'href="/workers/new"' in html


def test_uptime_shows_continuous_time_and_thirty_day_share(app, signed_in, clock):
    now = datetime(2024, 5, 15, 12, 0, tzinfo=timezone.utc)
    clock.set(now)
    worker_id = add_worker(app, name="Steady", online=False, created_at=now - timedelta(days=60),
                           last_heartbeat_at=now - timedelta(seconds=3), state=WorkerState.IDLE)
    with app.app_context():
        db.session.add(PresenceInterval(worker_id=worker_id, started_at=now - timedelta(days=6),
                                        ended_at=now - timedelta(days=3)))
        db.session.add(PresenceInterval(worker_id=worker_id, started_at=now - timedelta(hours=1, minutes=30),
                                        ended_at=now - timedelta(seconds=3)))
        db.session.commit()
    html = signed_in.get("/workers").get_data(as_text=True)
    assert ">1h 30m<" in html
    assert "10.2% · 30 d" in html  # 3 days + 1.5 hours of 30 days


def test_a_young_workers_share_is_since_it_was_created_and_short_tasks_are_not_0s(app, signed_in, clock):
    from webapp.filters import duration
    now = clock.set(datetime(2024, 5, 15, 12, 0, tzinfo=timezone.utc))
    worker_id = add_worker(app, name="Fresh", online=False, created_at=now - timedelta(minutes=5),
                           last_heartbeat_at=now - timedelta(seconds=3), state=WorkerState.IDLE)
    with app.app_context():
        db.session.add(PresenceInterval(worker_id=worker_id, started_at=now - timedelta(minutes=4),
                                        ended_at=now - timedelta(seconds=3)))
        db.session.commit()
    listing = signed_in.get("/workers").get_data(as_text=True)
    assert "% · since created" in listing and "% · 30 d" not in listing
    detail = signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)
    assert "% online since it was created" in detail and "over the last 30 days" not in detail
    # Past the window it is the window again.
    clock.set(now + timedelta(days=31))
    assert "over the last 30 days" in signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)
    assert [duration(s) for s in (0.6, 0.94, 0.01, 0, 1.4, 45)] == ["0.6s", "0.9s", "<0.1s", "0s", "1s", "45s"]


def test_workers_are_scoped_to_their_owner(app, client, auth):
    auth.signup("eve@example.com")
    other = add_worker(app, email="eve@example.com", name="Eve's node")
    auth.logout()
    auth.signup()
    assert "Eve's node" not in client.get("/workers").get_data(as_text=True)
    for url in (f"/workers/{other}", f"/workers/{other}?tab=tasks", f"/workers/{other}/setup",
                f"/workers/{other}/connection", f"/workers/{other}/charts/compute-tasks.svg",
                f"/workers/{other}/tasks/1/log", "/workers/999999"):
        assert client.get(url).status_code == 404, url
    for url in (f"/workers/{other}/rename", f"/workers/{other}/delete", f"/workers/{other}/pairing-code",
                f"/workers/{other}/config.json", f"/workers/{other}/location"):
        assert client.post(url, data={"name": "mine now", "location": "mine"}).status_code == 404, url
    with app.app_context():
        worker = db.session.get(Worker, other)
        assert worker.name == "Eve's node" and worker.deleted_at is None


def test_location_set_by_the_provider_wins_over_the_ip(app, signed_in):
    worker_id = add_worker(app, country="Germany")
    assert "(from the worker's IP address)" in signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)
    response = signed_in.post(f"/workers/{worker_id}/location", data={"location": "Rack 4, Lyon"},
                              follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Location saved." in page and "Rack 4, Lyon" in page and "(set by you)" in page
    page = signed_in.post(f"/workers/{worker_id}/location", data={"location": "x" * 200},
                          follow_redirects=True).get_data(as_text=True)
    assert "Could not set the location" in page
    signed_in.post(f"/workers/{worker_id}/location", data={"location": ""})
    with app.app_context():
        assert db.session.get(Worker, worker_id).location_override is None


def test_pages_need_a_login(client):
    assert client.get("/workers").status_code == 302
    assert client.get("/workers/1").status_code == 302


# --- rename and delete ----------------------------------------------------------------------------

def test_inline_rename_swaps_the_row(app, signed_in):
    worker_id = add_worker(app, name="Old name")
    row = signed_in.post(f"/workers/{worker_id}/rename", data={"name": "  New name  "}, headers=HX)
    html = row.get_data(as_text=True)
    assert row.status_code == 200 and html.lstrip().startswith(f'<tr id="worker-{worker_id}"')
    assert "New name" in html
    refused = signed_in.post(f"/workers/{worker_id}/rename", data={"name": "x" * 81}, headers=HX).get_data(as_text=True)
    assert "at most 80 characters" in refused and "<details class=\"rename\" open>" in refused
    with app.app_context():
        assert db.session.get(Worker, worker_id).name == "New name"


def test_rename_without_javascript_redirects_back(app, signed_in):
    worker_id = add_worker(app, name="Old name")
    response = signed_in.post(f"/workers/{worker_id}/rename", data={"name": "Plain", "next": "/workers?sort=name"})
    assert response.status_code == 302 and response.headers["Location"] == "/workers?sort=name"
    evil = signed_in.post(f"/workers/{worker_id}/rename", data={"name": "Plain", "next": "//evil.example/"})
    assert evil.headers["Location"] == "/workers"


def test_delete_hides_the_worker_and_revokes_its_token(app, signed_in):
    worker_id = add_worker(app, name="Doomed")
    response = signed_in.post(f"/workers/{worker_id}/delete", data={"next": f"/workers/{worker_id}"})
    assert response.status_code == 302 and response.headers["Location"] == "/workers"
    with app.app_context():
        worker = db.session.get(Worker, worker_id)
        assert worker.deleted_at is not None and worker.token_hash is None
    assert "Doomed" not in signed_in.get("/workers").get_data(as_text=True).split('id="workers-live"')[1]
    assert signed_in.get(f"/workers/{worker_id}").status_code == 404


def test_posts_without_a_csrf_token_are_refused(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    signup = client.get("/signup").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', signup).group(1)
    client.post("/signup", data={"email": "ada@example.com", "password": "correct horse battery",
                                 "confirm": "correct horse battery", "csrf_token": token})
    worker_id = add_worker(app, name="Guarded")
    assert client.post(f"/workers/{worker_id}/rename", data={"name": "Hijacked"}).status_code == 400
    assert client.post(f"/workers/{worker_id}/delete").status_code == 400
    assert client.post("/workers/new", data={"name": "Sneaky"}).status_code == 400
    with app.app_context():
        worker = db.session.get(Worker, worker_id)
        assert worker.name == "Guarded" and worker.deleted_at is None
        assert db.session.execute(db.select(db.func.count()).select_from(Worker)).scalar_one() == 1
    # The same POST with the header htmx sends is accepted.
    page = client.get("/workers").get_data(as_text=True)
    header = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    ok = client.post(f"/workers/{worker_id}/rename", data={"name": "Renamed"}, headers={**HX, "X-CSRFToken": header})
    assert ok.status_code == 200 and "Renamed" in ok.get_data(as_text=True)


# --- New Worker -----------------------------------------------------------------------------------

def test_new_worker_shows_the_guide_with_a_live_pairing_code(app, signed_in):
    app.config["SERVER_URL"] = "https://portal.example.net"
    assert "Worker name" in signed_in.get("/workers/new").get_data(as_text=True)
    assert signed_in.post("/workers/new", data={"name": ""}).status_code == 400
    response = signed_in.post("/workers/new", data={"name": "Attic tower"})
    assert response.status_code == 302
    guide = signed_in.get(response.headers["Location"]).get_data(as_text=True)
    code = re.search(r'<code id="pairing-code">([A-Z0-9-]+)</code>', guide).group(1)
    with app.app_context():
        worker = db.session.execute(db.select(Worker).where(Worker.name == "Attic tower")).scalar_one()
        assert worker.pairing_code_hash == token_hash(normalize_pairing_code(code))
        worker_id = worker.id
    assert f"pictor-worker pair {code} --server https://portal.example.net" in guide
    assert "Windows" in guide and "Linux" in guide
    assert re.search(r'class="countdown" data-seconds="\d+"[^>]*>1[45]:\d\d<', guide)
    assert 'hx-trigger="every 3s"' in guide and "Waiting for the app to connect" in guide

    # Regenerating replaces the code; the guide page shows the new one.
    fresh = signed_in.post(f"/workers/{worker_id}/pairing-code", headers=HX).get_data(as_text=True)
    new_code = re.search(r'<code id="pairing-code">([A-Z0-9-]+)</code>', fresh).group(1)
    assert new_code != code
    with app.app_context():
        assert db.session.get(Worker, worker_id).pairing_code_hash == token_hash(normalize_pairing_code(new_code))


def test_guide_notices_when_the_worker_connects(app, signed_in, client):
    signed_in.post("/workers/new", data={"name": "Attic tower"})
    guide = signed_in.get("/workers/1/setup").get_data(as_text=True)
    code = re.search(r'<code id="pairing-code">([A-Z0-9-]+)</code>', guide).group(1)
    config = client.post("/api/v1/pair", json={"code": code}).get_json()
    assert "Waiting" in signed_in.get("/workers/1/connection", headers=HX).get_data(as_text=True)
    hello = client.post("/api/v1/worker/hello", json={"app_version": "1.0.0", "gpus": [], "state": "idle"},
                        headers={"Authorization": f"Bearer {config['token']}"})
    assert hello.status_code == 200
    connected = signed_in.get("/workers/1/connection", headers=HX).get_data(as_text=True)
    assert "Connected" in connected and "hx-trigger" not in connected  # polling stops
    # The used code is gone from the guide.
    assert 'id="pairing-code"' not in signed_in.get("/workers/1/setup").get_data(as_text=True)


def test_config_file_download_issues_a_fresh_token(app, signed_in, client):
    app.config["SERVER_URL"] = "https://portal.example.net"
    worker_id = add_worker(app, name="Farm node", online=False)
    assert signed_in.get(f"/workers/{worker_id}/config.json").status_code == 405  # never a GET side effect
    response = signed_in.post(f"/workers/{worker_id}/config.json")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    config = json.loads(response.data)
    assert config["server_url"] == "https://portal.example.net" and config["worker_id"] == worker_id
    with app.app_context():
        worker = db.session.get(Worker, worker_id)
        assert worker.token_hash == token_hash(config["token"])
        assert worker.pairing_code_hash is None  # the file is now the one way in
    ok = client.post("/api/v1/worker/heartbeat", json={"state": "idle"},
                     headers={"Authorization": f"Bearer {config['token']}"})
    assert ok.status_code == 200


# --- Worker Details -------------------------------------------------------------------------------

def test_statistics_tab_shows_every_field(app, signed_in):
    worker_id = add_worker(
        app, name="Render box", app_version="1.0.0", os="Windows-10-10.0.22631-SP0", cpu="AMD Ryzen 9 7950X",
        ram_mb=65536, gpus=[{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564, "driver": "551.86"}] * 2,
        gpu_name="NVIDIA GeForce RTX 4090", download_mbps=512.5, upload_mbps=88.0, country="Germany",
        earnings_micros=4_200_000, compute_seconds=5400.0, renderers={"blender": {"version": "3.4.1"}},
        compliance=[{"check": "Firewall", "status": "pass", "reason": "The system firewall is on."},
                    {"check": "Disk encryption", "status": "fail", "reason": "Not encrypted."}])
    html = signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)
    for text in ("Total Earnings", "$4.20", "Uptime", "Compute", "1h 30m", "Worker Information", f"#{worker_id}",
                 "2 × NVIDIA GeForce RTX 4090 · 24 GB · driver 551.86", "AMD Ryzen 9 7950X", "64 GB",
                 "Windows-10", "1.0.0", "Connection Speed", "512.5 Mbit/s", "88.0 Mbit/s", "Location", "Germany",
                 "Security Compliance", "✓ Pass", "✗ Fail", "Not encrypted.", "Blender 3.4.1",
                 "Earnings by Task", "Processed Compute Tasks", "Earnings by Mining"):
        assert text in html, text
    assert f'src="/workers/{worker_id}/charts/earnings-by-task.svg?period=week"' in html


def test_security_checks_from_the_real_app_have_titles_not_ids(app, signed_in, tmp_path):
    from tray_client import compliance
    checks = compliance.run_all(config_path=None, server="http://portal.example.net", data_dir=tmp_path,
                                cache_max_bytes=2**30, hardware={"gpus": []})
    ids = {c["check"] for c in checks}
    assert {"not_admin", "gpu_driver", "renderer_hardening"} <= ids
    worker_id = add_worker(app, name="Real box", compliance=checks)
    html = signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)
    section = html[html.index("Security Compliance"):]
    for raw in ids:
        assert f"<strong>{raw}</strong>" not in section, raw
    assert "<strong>Runs without admin rights</strong>" in section and "<strong>GPU driver</strong>" in section
    assert "<strong>Connection to the portal</strong>" in section
    assert "Plain HTTP over the network exposes the worker token" in section  # a reason, as a sentence


def test_local_network_location(app, signed_in):
    worker_id = add_worker(app, name="LAN box", ip_address="192.168.1.20", country=None)
    assert "Local network" in signed_in.get(f"/workers/{worker_id}").get_data(as_text=True)


def test_chart_periods_and_bad_custom_ranges(app, signed_in):
    worker_id = add_worker(app)
    month = signed_in.get(f"/workers/{worker_id}?period=month").get_data(as_text=True)
    assert "one bar per day" in month and 'aria-current="true">Month' in month
    year = signed_in.get(f"/workers/{worker_id}?period=year").get_data(as_text=True)
    assert "one bar per month" in year
    custom = signed_in.get(f"/workers/{worker_id}?period=custom&from=2024-01-01&to=2024-01-31")
    assert custom.status_code == 200
    assert "from=2024-01-01&amp;to=2024-01-31" in custom.get_data(as_text=True)
    bad = signed_in.get(f"/workers/{worker_id}?period=custom&from=2024-02-01&to=2024-01-01")
    assert bad.status_code == 400 and "on or before" in bad.get_data(as_text=True)
    assert signed_in.get(f"/workers/{worker_id}/charts/compute-tasks.svg?period=custom&from=2020-01-01"
                         f"&to=2024-01-01").status_code == 400
    assert signed_in.get(f"/workers/{worker_id}/charts/pie.svg").status_code == 404


def test_chart_endpoint_serves_cacheable_svg(app, signed_in):
    worker_id = add_worker(app)
    today = utcnow().strftime("%Y-%m-%d")
    with app.app_context():
        db.session.add(WorkerDailyStat(worker_id=worker_id, day=today, tasks_completed=4, tasks_failed=1,
                                       task_earnings_micros=2_000_000, mining_earnings_micros=0, compute_seconds=60))
        db.session.commit()
    response = signed_in.get(f"/workers/{worker_id}/charts/compute-tasks.svg?period=week")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert b"Processed Compute Tasks" in response.data and b"Completed" in response.data
    assert "private" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    assert signed_in.get(f"/workers/{worker_id}/charts/compute-tasks.svg?period=week",
                         headers={"If-None-Match": etag}).status_code == 304
    with app.app_context():
        db.session.get(WorkerDailyStat, (worker_id, today)).tasks_completed = 5
        db.session.commit()
    changed = signed_in.get(f"/workers/{worker_id}/charts/compute-tasks.svg?period=week",
                            headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    compact = signed_in.get(f"/workers/{worker_id}/charts/compute-tasks.svg?period=week&size=compact")
    assert compact.status_code == 200 and compact.headers["ETag"] != changed.headers["ETag"]


def _tasks(app, worker_id):
    """Three tasks on the worker: a finished render with an output, a running upscale, a failed render."""
    with app.app_context():
        worker = db.session.get(Worker, worker_id)
        worker.renderers = {"blender": {"version": "3.4.1"}, "realesrgan": {"version": "0.2.0"}}
        forest = Job(owner_id=worker.owner_id, name="Forest flythrough", type=JobType.RENDER, spec={},
                     software="Blender · Cycles")
        photos = Job(owner_id=worker.owner_id, name="Photo batch", type=JobType.UPSCALE, spec={},
                     software="Real-ESRGAN x4")
        db.session.add_all([forest, photos])
        db.session.flush()
        now = utcnow()
        done = Task(job_id=forest.id, seq=0, type=JobType.RENDER, params={}, status=TaskStatus.COMPLETED,
                    worker_id=worker_id, progress=1.0, started_at=now - timedelta(minutes=10),
                    finished_at=now - timedelta(minutes=5), reward_micros=41_700, created_at=now - timedelta(hours=1))
        running = Task(job_id=photos.id, seq=0, type=JobType.UPSCALE, params={}, status=TaskStatus.RUNNING,
                       worker_id=worker_id, progress=0.42, eta_seconds=90, started_at=now - timedelta(minutes=2),
                       created_at=now - timedelta(minutes=30))
        failed = Task(job_id=forest.id, seq=1, type=JobType.RENDER, params={}, status=TaskStatus.FAILED,
                      worker_id=worker_id, message="Blender exited with code 139", finished_at=now,
                      log_tail="Fra:1 Mem:12M\nSegmentation fault\n", created_at=now - timedelta(hours=2))
        db.session.add_all([done, running, failed])
        db.session.flush()
        blob = storage.put_bytes(b"\x89PNG fake")
        db.session.add(TaskOutput(task_id=done.id, name="frame_0001.png", sha256=blob.sha256, size=blob.size))
        db.session.commit()
        return forest.id, done.id, running.id, failed.id


def test_task_list_shows_software_progress_reward_and_actions(app, signed_in):
    worker_id = add_worker(app)
    forest_id, done_id, running_id, failed_id = _tasks(app, worker_id)
    html = signed_in.get(f"/workers/{worker_id}?tab=tasks").get_data(as_text=True)
    for text in ("Blender 3.4 · Cycles", "Real-ESRGAN x4", "Forest flythrough", f"#{done_id}", "$0.0417",
                 "42%", "ETA 1m 30s", "Completed", "Running", "Failed", "Blender exited with code 139",
                 "Preview of frame_0001.png", "Log tail", "5m 0s"):
        assert text in html, text
    assert f'href="/jobs/{forest_id}"' in html
    assert f'href="/jobs/{forest_id}/outputs/{done_id}/frame_0001.png"' in html
    assert f'src="/jobs/{forest_id}/thumb/{done_id}/frame_0001.png"' in html  # the preview
    assert 'id="worker-tasks" hx-get=' in html  # a running task: the table polls
    log = signed_in.get(f"/workers/{worker_id}/tasks/{failed_id}/log")
    assert log.mimetype == "text/plain" and b"Segmentation fault" in log.data
    fragment = signed_in.get(f"/workers/{worker_id}/tasks/{failed_id}/log", headers=HX).get_data(as_text=True)
    assert fragment.startswith("<pre") and "Segmentation fault" in fragment


def test_task_list_search_sort_filter_and_fragment(app, signed_in):
    worker_id = add_worker(app)
    _forest_id, done_id, running_id, failed_id = _tasks(app, worker_id)
    found = signed_in.get(f"/workers/{worker_id}?tab=tasks&q=photo").get_data(as_text=True)
    assert "Photo batch" in found and "Forest flythrough" not in found
    failed = signed_in.get(f"/workers/{worker_id}?tab=tasks&status=failed").get_data(as_text=True)
    assert f'id="task-{failed_id}"' in failed and f'id="task-{done_id}"' not in failed
    by_name = signed_in.get(f"/workers/{worker_id}?tab=tasks&sort=name&order=asc").get_data(as_text=True)
    assert by_name.index("Forest flythrough") < by_name.index("Photo batch")
    by_created = signed_in.get(f"/workers/{worker_id}?tab=tasks&sort=created&order=asc").get_data(as_text=True)
    assert by_created.index(f'id="task-{failed_id}"') < by_created.index(f'id="task-{running_id}"')
    fragment = signed_in.get(f"/workers/{worker_id}?tab=tasks&status=failed",
                             headers={**HX, "HX-Target": "worker-tasks"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="worker-tasks"') and "<html" not in fragment
    assert "hx-get" not in fragment.split(">")[0]  # nothing running on this page: polling stops


def test_head_fragment_refreshes_status(app, signed_in):
    worker_id = add_worker(app, state=WorkerState.BUSY)
    head = signed_in.get(f"/workers/{worker_id}", headers={**HX, "HX-Target": "worker-head"}).get_data(as_text=True)
    assert head.lstrip().startswith('<section id="worker-head"') and "badge-busy" in head


# --- Download page --------------------------------------------------------------------------------

def test_download_page_is_honest_without_an_installer(client):
    html = client.get("/download").get_data(as_text=True)
    assert "No Windows installer has been published" in html
    assert "pictor-worker run --headless" in html and "pictor-worker pair CODE --server http://localhost" in html
    assert client.get("/download/windows").status_code == 404


def test_download_page_offers_the_published_installer(app, client, tmp_path):
    from webapp.services import releases
    exe = tmp_path / "PictorWorkerSetup-1.2.3.exe"
    exe.write_bytes(b"MZ" + b"\0" * 64)
    with app.app_context():
        release = releases.publish(exe)
        sha = release.sha256
    html = client.get("/download").get_data(as_text=True)
    assert "PictorWorkerSetup-1.2.3.exe" in html and sha in html and 'href="/download/windows"' in html
    response = client.get("/download/windows")
    assert response.status_code == 200 and response.data.startswith(b"MZ")
    assert "PictorWorkerSetup-1.2.3.exe" in response.headers["Content-Disposition"]


def test_outputs_of_someone_elses_job_are_named_not_linked(app, signed_in):
    """A provider sees what its worker produced for another creator's job, but not the files."""
    worker_id = add_worker(app)
    with app.app_context():
        creator = User(email="cleo@example.com", password_hash="x")
        db.session.add(creator)
        db.session.flush()
        job = Job(owner_id=creator.id, name="Client film", type=JobType.RENDER, spec={}, software="Blender · Cycles")
        db.session.add(job)
        db.session.flush()
        task = Task(job_id=job.id, seq=0, type=JobType.RENDER, params={}, status=TaskStatus.COMPLETED,
                    worker_id=worker_id, progress=1.0, reward_micros=10)
        db.session.add(task)
        db.session.flush()
        blob = storage.put_bytes(b"\x89PNG secret")
        db.session.add(TaskOutput(task_id=task.id, name="frame_0042.png", sha256=blob.sha256, size=blob.size))
        db.session.commit()
        job_id = job.id
    html = signed_in.get(f"/workers/{worker_id}?tab=tasks").get_data(as_text=True)
    assert "frame_0042.png" in html and "Client film" in html
    assert f"/jobs/{job_id}" not in html

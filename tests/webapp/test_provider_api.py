"""The provider API: create and pair workers, list/search/sort, rename, delete, tasks and statistics."""

import re
from datetime import datetime, timedelta

import pytest

from tests.conftest import T0 as NOW, create_token
from webapp.extensions import db
from webapp.models import Job, JobType, Task, TaskStatus, Worker, WorkerDailyStat, WorkerState
from webapp.security import token_hash

CODE = re.compile(r"^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$")


@pytest.fixture
def token(app, clock):
    return create_token(app)


@pytest.fixture
def api(client, token):
    """A client that sends the user's API token."""
    class Api:
        headers = {"Authorization": f"Bearer {token}"}

        def __getattr__(self, method):
            def call(url, **kw):
                kw["headers"] = {**self.headers, **kw.get("headers", {})}
                return getattr(client, method)(f"/api/v1{url}", **kw)
            return call
    return Api()


def create(api, name="Render box") -> dict:
    response = api.post("/workers", json={"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "message"} and body["message"]
    if code:
        assert body["error"] == code


def test_create_worker_returns_code_and_config_once(app, api):
    body = create(api, "  Render box  ")
    assert body["name"] == "Render box" and body["status"] == "pending"
    assert CODE.match(body["pairing_code"])
    assert datetime.fromisoformat(body["pairing_expires_at"]) == NOW + timedelta(minutes=15)
    config = body["config"]
    assert config["server_url"] == "http://localhost" and config["worker_id"] == body["id"]
    assert config["token"].startswith("pwk_")
    for key in ("id", "created_at", "updated_at", "last_heartbeat_at", "gpus", "ram_mb", "earnings",
                "uptime_seconds", "uptime_percent_30d", "bid", "bench_score"):
        assert key in body
    assert body["earnings"] == "0.000000"
    with app.app_context():
        row = db.session.get(Worker, body["id"])
        assert row.token_hash == token_hash(config["token"])
        assert row.pairing_code_hash == token_hash(body["pairing_code"])
        stored = repr(db.session.execute(db.select(Worker.__table__)).one())
        assert config["token"] not in stored and body["pairing_code"] not in stored
    # Shown once: reading the worker back never reveals the token or the code.
    again = api.get(f"/workers/{body['id']}").get_json()
    assert "config" not in again and "pairing_code" not in again and "token" not in str(again)


def test_pairing_turns_the_code_into_the_only_live_token(app, api, client):
    body = create(api, "home pc")
    first = body["config"]["token"]
    paired = client.post("/api/v1/pair", json={"code": body["pairing_code"].lower().replace("-", " ")})
    assert paired.status_code == 200
    config = paired.get_json()
    assert config["worker_id"] == body["id"] and config["token"] != first
    heartbeat = {"state": "idle"}
    ok = client.post("/api/v1/worker/heartbeat", json=heartbeat, headers={"Authorization": f"Bearer {config['token']}"})
    assert ok.status_code < 300, ok.get_json()
    assert_error(client.post("/api/v1/worker/heartbeat", json=heartbeat,
                             headers={"Authorization": f"Bearer {first}"}), 401)
    assert_error(client.post("/api/v1/pair", json={"code": body["pairing_code"]}), 400, "invalid_code")
    assert api.get(f"/workers/{body['id']}").get_json()["status"] == "online"


def test_server_url_setting_wins(app, api):
    app.config["SERVER_URL"] = "https://portal.example/"
    assert create(api)["config"]["server_url"] == "https://portal.example"


def test_pairing_code_endpoint(app, api):
    body = create(api)
    response = api.post(f"/workers/{body['id']}/pairing-code")
    assert response.status_code == 201
    code = response.get_json()["pairing_code"]
    assert CODE.match(code) and code != body["pairing_code"]
    with app.app_context():
        assert db.session.get(Worker, body["id"]).pairing_code_hash == token_hash(code)


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 81}, {"name": 7},
                                     {"name": None}, {"name": "two\nlines"}, [], "name"])
def test_create_rejects_bad_names(app, api, payload):
    assert_error(api.post("/workers", json=payload), 400)
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Worker)).scalar_one() == 0


def test_create_rejects_non_json(api):
    assert_error(api.post("/workers", data="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}),
                 400, "invalid_json")


def test_token_required(client, token):
    assert_error(client.get("/api/v1/workers"), 401, "unauthorized")
    assert_error(client.get("/api/v1/workers", headers={"Authorization": "Bearer pct_nope"}), 401)
    assert_error(client.post("/api/v1/workers", json={"name": "x"}), 401)


def test_list_shape_search_sort_paging(app, api):
    ids = [create(api, name)["id"] for name in ("gamma", "Alpha", "beta")]
    body = api.get("/workers").get_json()
    assert set(body) >= {"items", "page", "pages", "total"}
    assert (body["page"], body["pages"], body["total"]) == (1, 1, 3)
    assert [w["id"] for w in body["items"]] == ids[::-1]  # newest first
    names = [w["name"] for w in api.get("/workers?sort=name&order=asc").get_json()["items"]]
    assert names == ["Alpha", "beta", "gamma"]
    page = api.get("/workers?sort=name&order=desc&per_page=2&page=2").get_json()
    assert [w["name"] for w in page["items"]] == ["Alpha"] and page["pages"] == 2
    assert [w["name"] for w in api.get("/workers?q=ALP").get_json()["items"]] == ["Alpha"]
    assert [w["id"] for w in api.get(f"/workers?q=%23{ids[2]}").get_json()["items"]] == [ids[2]]
    with app.app_context():
        db.session.execute(db.update(Worker).where(Worker.id == ids[0]).values(
            last_heartbeat_at=NOW, state=WorkerState.ERROR))
        db.session.commit()
    errors = api.get("/workers?status=error").get_json()
    assert [w["name"] for w in errors["items"]] == ["gamma"] and errors["items"][0]["status"] == "error"
    assert api.get("/workers?status=pending").get_json()["total"] == 2


@pytest.mark.parametrize("query,code", [("sort=size", "invalid_sort"), ("order=up", "invalid_order"),
                                        ("status=asleep", "invalid_status"), ("page=0", "invalid_page"),
                                        ("page=abc", "invalid_page"), ("per_page=101", "invalid_per_page"),
                                        ("per_page=x", "invalid_per_page")])
def test_list_rejects_bad_parameters(api, query, code):
    assert_error(api.get(f"/workers?{query}"), 400, code)


def test_list_only_shows_my_workers(app, api, client):
    mine = create(api, "mine")
    other = create_token(app, "eve@example.com")
    theirs = client.post("/api/v1/workers", json={"name": "theirs"},
                         headers={"Authorization": f"Bearer {other}"}).get_json()
    assert [w["id"] for w in api.get("/workers").get_json()["items"]] == [mine["id"]]
    for method in ("get", "patch", "delete"):
        assert_error(getattr(api, method)(f"/workers/{theirs['id']}", json={"name": "mine now"}), 404, "not_found")
    assert_error(api.post(f"/workers/{theirs['id']}/pairing-code"), 404)
    assert_error(api.get(f"/workers/{theirs['id']}/tasks"), 404)
    assert_error(api.get(f"/workers/{theirs['id']}/stats"), 404)
    assert_error(api.get("/workers/99999999999999999999"), 404)
    with app.app_context():
        row = db.session.get(Worker, theirs["id"])
        assert row.name == "theirs" and row.deleted_at is None


def test_rename(app, api):
    body = create(api, "old")
    response = api.patch(f"/workers/{body['id']}", json={"name": " new name "})
    assert response.status_code == 200 and response.get_json()["name"] == "new name"
    assert api.get(f"/workers/{body['id']}").get_json()["name"] == "new name"
    assert_error(api.patch(f"/workers/{body['id']}", json={"name": ""}), 400, "invalid_name")
    assert_error(api.patch(f"/workers/{body['id']}", json={}), 400, "nothing_to_change")
    assert api.get(f"/workers/{body['id']}").get_json()["name"] == "new name"


def test_provider_sets_and_clears_the_location(app, api):
    body = create(api)
    url = f"/workers/{body['id']}"
    response = api.patch(url, json={"location": "  Berlin, DE "})
    assert response.status_code == 200 and response.get_json()["location"] == "Berlin, DE"
    # A bad name refuses the whole change: the location stays as it was.
    assert_error(api.patch(url, json={"name": "", "location": "Paris"}), 400, "invalid_name")
    assert_error(api.patch(url, json={"location": "x" * 129}), 400, "invalid_location")
    assert_error(api.patch(url, json={"location": 12}), 400, "invalid_location")
    assert api.get(url).get_json()["location"] == "Berlin, DE"
    assert api.patch(url, json={"location": ""}).get_json()["location"] is None


def test_delete_revokes_the_worker_token(app, api, client):
    body = create(api, "doomed")
    worker_token = body["config"]["token"]
    assert api.delete(f"/workers/{body['id']}").status_code == 204
    assert_error(api.get(f"/workers/{body['id']}"), 404)
    assert_error(api.delete(f"/workers/{body['id']}"), 404)
    assert api.get("/workers").get_json()["total"] == 0
    with app.app_context():
        row = db.session.get(Worker, body["id"])
        assert row.deleted_at is not None and row.token_hash is None and row.pairing_code_hash is None
    # The app's token stops working at once.
    response = client.post("/api/v1/worker/heartbeat", json={"state": "idle"},
                           headers={"Authorization": f"Bearer {worker_token}"})
    assert_error(response, 401)


def _job_with_tasks(app, worker_id: int) -> list[int]:
    with app.app_context():
        owner_id = db.session.get(Worker, worker_id).owner_id
        job = Job(owner_id=owner_id, name="Spring shot", type=JobType.RENDER, spec={}, software="Blender · Cycles")
        other = Job(owner_id=owner_id, name="Upscale pack", type=JobType.UPSCALE, spec={}, software="Real-ESRGAN x4")
        db.session.add_all([job, other])
        db.session.flush()
        tasks = [
            Task(job_id=job.id, seq=0, type=JobType.RENDER, params={}, worker_id=worker_id,
                 status=TaskStatus.COMPLETED, progress=1.0, created_at=NOW, started_at=NOW,
                 finished_at=NOW + timedelta(seconds=42), reward_micros=5_000),
            Task(job_id=other.id, seq=0, type=JobType.UPSCALE, params={}, worker_id=worker_id,
                 status=TaskStatus.RUNNING, progress=0.25, created_at=NOW + timedelta(seconds=1),
                 started_at=NOW + timedelta(seconds=50)),
        ]
        db.session.add_all(tasks)
        db.session.commit()
        return [t.id for t in tasks]


def test_worker_tasks(app, api):
    body = create(api)
    done, running = _job_with_tasks(app, body["id"])
    page = api.get(f"/workers/{body['id']}/tasks").get_json()
    assert (page["total"], page["pages"]) == (2, 1)
    assert [t["id"] for t in page["items"]] == [running, done]
    item = page["items"][1]
    assert set(item) >= {"id", "job_id", "job_name", "job_type", "software", "status", "progress", "reward",
                         "created_at", "started_at", "finished_at", "duration_seconds"}
    assert (item["job_name"], item["job_type"], item["software"]) == ("Spring shot", "render", "Blender · Cycles")
    assert item["reward"] == "0.005000" and item["duration_seconds"] == 42.0 and item["status"] == "completed"
    assert [t["id"] for t in api.get(f"/workers/{body['id']}/tasks?q=upscale").get_json()["items"]] == [running]
    assert [t["id"] for t in api.get(f"/workers/{body['id']}/tasks?status=completed").get_json()["items"]] == [done]
    by_name = api.get(f"/workers/{body['id']}/tasks?sort=name&order=asc").get_json()["items"]
    assert [t["job_name"] for t in by_name] == ["Spring shot", "Upscale pack"]
    assert_error(api.get(f"/workers/{body['id']}/tasks?sort=reward"), 400, "invalid_sort")
    assert_error(api.get(f"/workers/{body['id']}/tasks?status=lost"), 400, "invalid_status")


def test_worker_stats(app, api):
    body = create(api)
    with app.app_context():
        for day, micros, done, failed in (("2024-05-10", 250_000, 3, 1), ("2024-05-04", 1_000, 1, 0),
                                          ("2024-05-03", 999_999, 9, 9)):  # outside the week
            db.session.add(WorkerDailyStat(worker_id=body["id"], day=day, task_earnings_micros=micros,
                                           mining_earnings_micros=10, tasks_completed=done, tasks_failed=failed,
                                           compute_seconds=60.0))
        db.session.commit()
    week = api.get(f"/workers/{body['id']}/stats?period=week").get_json()
    assert week["totals"]["task_earnings"] == "0.251000"
    assert week["totals"]["tasks_completed"] == 4 and week["totals"]["tasks_failed"] == 1
    assert week["totals"]["mining_earnings"] == "0.000020"
    assert len(week["buckets"]) == 7 and week["buckets"][-1]["task_earnings"] == "0.250000"
    year = api.get(f"/workers/{body['id']}/stats?period=year").get_json()
    assert len(year["buckets"]) == 12 and year["totals"]["tasks_completed"] == 13
    custom = api.get(f"/workers/{body['id']}/stats?period=custom&from=2024-05-03&to=2024-05-04").get_json()
    assert custom["totals"]["task_earnings"] == "1.000999" and len(custom["buckets"]) == 2
    assert_error(api.get(f"/workers/{body['id']}/stats?period=decade"), 400)
    assert_error(api.get(f"/workers/{body['id']}/stats?period=custom&from=2024-05-04"), 400)
    assert_error(api.get(f"/workers/{body['id']}/stats?period=custom&from=2024-05-05&to=2024-05-04"), 400)
    assert_error(api.get(f"/workers/{body['id']}/stats?period=custom&from=yesterday&to=2024-05-04"), 400)

"""Per-account limits on creating and pairing workers: counted in the database, so they hold whatever
the number of portal processes, on SQLite and PostgreSQL; deleting a worker gives nothing back."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from ..conftest import T0, create_token, make_app, portal_processes

API = "/api/v1"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def limited(any_app, clock):
    any_app.config.update(WORKERS_CREATED_PER_HOUR=3, WORKERS_PAIRED_PER_HOUR=2)
    return any_app, any_app.test_client(), create_token(any_app)


def create(client, token, name="node"):
    return client.post(f"{API}/workers", json={"name": name}, headers=bearer(token))


def test_an_account_creates_at_most_its_hourly_limit_of_workers(limited, clock):
    app, client, token = limited
    made = [create(client, token, f"n{i}") for i in range(3)]
    assert [r.status_code for r in made] == [201] * 3
    refused = create(client, token, "one too many")
    body = refused.get_json()
    assert refused.status_code == 429 and body["error"] == "account_limit"
    assert "at most 3 workers per hour" in body["message"] and int(refused.headers["Retry-After"]) == 3601
    # Deleting a worker gives nothing back: the limit counts what was created.
    assert client.delete(f"{API}/workers/{made[0].get_json()['id']}", headers=bearer(token)).status_code in (200, 204)
    assert create(client, token).status_code == 429
    assert len(client.get(f"{API}/workers", headers=bearer(token)).get_json()["items"]) == 2  # nothing half-made
    # Another account is not held by this one's count; and an hour later this one may create again.
    other = create_token(app, "other@example.com")
    assert create(client, other).status_code == 201
    clock.set(T0 + timedelta(hours=1, seconds=1))
    assert create(client, token).status_code == 201


def test_the_new_worker_page_says_so_too(limited):
    app, client, token = limited
    for i in range(3):
        assert create(client, token, f"n{i}").status_code == 201
    client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"})
    page = client.post("/workers/new", data={"name": "page node"})
    assert page.status_code == 400 and b"at most 3 workers per hour" in page.data


def test_pairing_is_limited_per_account_and_the_code_stays_good(limited, clock):
    app, client, token = limited
    codes = [create(client, token, f"n{i}").get_json()["pairing_code"] for i in range(3)]
    assert [client.post(f"{API}/pair", json={"code": c}).status_code for c in codes[:2]] == [200, 200]
    refused = client.post(f"{API}/pair", json={"code": codes[2]})
    assert refused.status_code == 429 and refused.get_json()["error"] == "account_limit"
    clock.set(T0 + timedelta(minutes=14))  # still inside the code's 15 minutes, but not the hour
    assert client.post(f"{API}/pair", json={"code": codes[2]}).status_code == 429
    app.config["WORKERS_PAIRED_PER_HOUR"] = 3  # the operator raises it for a farm
    assert client.post(f"{API}/pair", json={"code": codes[2]}).status_code == 200


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_portal_processes_share_the_account_limit(database, tmp_path, request):
    """Two processes on one database, 24 creations fired at both at once by 8 threads: exactly the
    limit succeeds. A per-process counter would let each process take the whole limit."""
    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    app = make_app(tmp_path, url)
    token = create_token(app)
    config = {"TESTING": True, "SECRET_KEY": "k", "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
              "STORAGE_DIR": str(tmp_path / "storage"), "SCHEDULER_ENABLED": False,
              "RATELIMIT_STORAGE_URI": "memory://", "WORKERS_CREATED_PER_HOUR": 10}
    try:
        with portal_processes(config) as urls:
            def one(i):
                return requests.post(f"{urls[i % 2]}{API}/workers", json={"name": f"w{i}"},
                                     headers=bearer(token), timeout=30).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(one, range(24)))
            listed = requests.get(f"{urls[0]}{API}/workers", params={"per_page": 100},
                                  headers=bearer(token), timeout=10).json()
    finally:
        with app.app_context():
            from webapp.extensions import db
            db.session.remove()
            db.engine.dispose()
    assert sorted(statuses) == [201] * 10 + [429] * 14, statuses
    assert listed["total"] == 10

"""Fleet operations: tags, search by GPU/hostname/tag, filters, and bulk actions (service and provider API)."""

import pytest

from tests.conftest import create_token
from tests.webapp.dispatch_factories import auth, make_job, make_user, make_worker
from webapp.clock import utcnow
from webapp.extensions import db
from webapp.models import Worker, WorkerTag
from webapp.services import ServiceError, dispatch, fleet

API = "/api/v1"


@pytest.fixture
def farm(app, client, clock):
    """Ada's farm: 100 seen workers (every tenth an RTX 4090 on rack-3), Bob's one worker, Ada's API token."""
    token = create_token(app)
    with app.app_context():
        from webapp.services import accounts
        ada = accounts.user_by_email("ada@example.com").id
        rows = [Worker(owner_id=ada, name=f"node-{n:03d}", hostname=f"farm-host-{n:03d}", last_heartbeat_at=utcnow(),
                       gpu_name="NVIDIA GeForce RTX 4090" if n % 10 == 0 else "NVIDIA GeForce RTX 3090",
                       capabilities={"job_types": ["render"], "gpu": True}, gpus=[], renderers={}, compliance=[],
                       mining_config={}, bench_details={}, earnings_micros=0, compute_seconds=0.0)
                for n in range(100)]
        db.session.add_all(rows)
        db.session.commit()
        ids = [w.id for w in rows]
        bob = make_user("bob@example.com")
        bob_worker, bob_token = make_worker(owner_id=bob, name="bob-node")
        db.session.get(Worker, bob_worker).gpu_name = "NVIDIA GeForce RTX 4090"
        db.session.commit()

    class Farm:
        pass
    f = Farm()
    f.app, f.ids, f.ada, f.bob_worker, f.bob_token = app, ids, ada, bob_worker, bob_token

    def call(method, path, **kwargs):
        return getattr(client, method)(API + path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
    f.call = call
    return f


def test_tags_are_validated_and_bounded():
    assert fleet.clean_tags(" Farm-A, rack-3 farm-a") == ["farm-a", "rack-3"]
    for bad in ["", "-lead", "has space", "x" * 33, "ünïcode", "a/b", 7]:
        with pytest.raises(ServiceError):
            fleet.clean_tag(bad)
    with pytest.raises(ServiceError):
        fleet.clean_tags([f"t{i}" for i in range(fleet.TAGS_PER_ACTION_MAX + 1)])


def test_search_matches_gpu_hostname_tag_and_name_through_the_api(farm):
    body = farm.call("post", "/workers/bulk", json={"action": "tag", "ids": farm.ids[:3], "tags": ["rack-3"]}).get_json()
    assert body == {"action": "tag", "matched": 3, "changed": 3, "dry_run": False}
    listed = farm.call("get", "/workers?q=4090&per_page=100").get_json()
    assert listed["total"] == 10  # Ada's ten 4090s, never Bob's
    assert {w["gpu_name"] for w in listed["items"]} == {"NVIDIA GeForce RTX 4090"}
    assert farm.call("get", "/workers?q=farm-host-042").get_json()["total"] == 1
    by_tag = farm.call("get", "/workers?q=rack-3").get_json()
    assert by_tag["total"] == 3 and all(w["tags"] == ["rack-3"] for w in by_tag["items"])
    assert farm.call("get", "/workers?tag=rack-3&gpu=NVIDIA GeForce RTX 4090").get_json()["total"] == 1
    assert farm.call("get", "/workers?tag=not a tag").get_json()["total"] == 0  # unusable: nothing, no 500
    assert farm.call("get", "/workers?q=node-00").get_json()["total"] == 10


def test_one_action_pauses_100_workers_and_claims_and_heartbeats_follow(farm):
    with farm.app.app_context():
        make_job(tasks=3)
        _, token = make_worker(owner_id=farm.ada, name="extra")  # outside the filter below: stays working
    body = farm.call("post", "/workers/bulk",
                     json={"action": "pause", "all_matching": True, "filter": {"q": "node-"}}).get_json()
    assert body["matched"] == 100 and body["changed"] == 100
    with farm.app.app_context():
        paused = db.session.execute(db.select(Worker).where(Worker.paused_at.is_not(None))).scalars().all()
        assert sorted(w.id for w in paused) == farm.ids
        assert dispatch.claim_task(paused[0]) is None  # the portal refuses a paused worker's claim itself
    listed = farm.call("get", "/workers?status=paused&per_page=100").get_json()
    assert listed["total"] == 100 and all(w["paused_by_portal"] for w in listed["items"])
    # Pausing again changes nothing; resuming a few brings exactly those back.
    assert farm.call("post", "/workers/bulk", json={"action": "pause", "ids": farm.ids}).get_json()["changed"] == 0
    assert farm.call("post", "/workers/bulk", json={"action": "resume", "ids": farm.ids[:5]}).get_json()["changed"] == 5
    assert farm.call("get", "/workers?status=paused&per_page=100").get_json()["total"] == 95


def test_heartbeat_and_hello_answers_carry_the_portal_pause(farm, client):
    with farm.app.app_context():
        worker_id, token = make_worker(owner_id=farm.ada, name="single")
    beat = lambda: client.post(f"{API}/worker/heartbeat", json={"state": "idle"}, headers=auth(token)).get_json()
    assert beat()["paused"] is False
    farm.call("post", "/workers/bulk", json={"action": "pause", "ids": [worker_id]})
    assert beat()["paused"] is True
    assert client.post(f"{API}/worker/hello", json={"state": "paused"}, headers=auth(token)).get_json()["paused"] is True
    assert client.post(f"{API}/worker/tasks/claim", headers=auth(token)).status_code == 204
    farm.call("post", "/workers/bulk", json={"action": "resume", "ids": [worker_id]})
    assert beat()["paused"] is False


def test_set_bid_tag_untag_and_delete_in_one_action_each(farm):
    ids = farm.ids[:4]
    assert farm.call("post", "/workers/bulk", json={"action": "set_bid", "ids": ids, "bid": "0.45"}).get_json()["changed"] == 4
    assert farm.call("post", "/workers/bulk", json={"action": "tag", "ids": ids, "tags": ["farm-a", "rack-1"]}).get_json()["changed"] == 4
    assert farm.call("post", "/workers/bulk", json={"action": "untag", "ids": ids[:2], "tags": ["rack-1"]}).get_json()["changed"] == 2
    dry = farm.call("post", "/workers/bulk", json={"action": "delete", "all_matching": True,
                                                   "filter": {"tag": "farm-a"}, "dry_run": True}).get_json()
    assert dry == {"action": "delete", "matched": 4, "changed": 0, "dry_run": True}
    with farm.app.app_context():
        rows = {w.id: w for w in db.session.execute(db.select(Worker).where(Worker.id.in_(ids))).scalars()}
        assert {w.bid_micros for w in rows.values()} == {450_000}
        assert rows[ids[0]].tags == ["farm-a"] and rows[ids[3]].tags == ["farm-a", "rack-1"]
        assert all(w.deleted_at is None for w in rows.values())  # the dry run changed nothing
    done = farm.call("post", "/workers/bulk", json={"action": "delete", "all_matching": True, "filter": {"tag": "farm-a"}})
    assert done.get_json()["changed"] == 4
    assert farm.call("get", "/workers?per_page=1").get_json()["total"] == 96
    assert farm.call("post", "/workers/bulk", json={"action": "set_bid", "ids": farm.ids[4:6], "bid": None}).get_json()["changed"] == 0


def test_bulk_on_another_accounts_workers_touches_nothing(farm, client):
    """Bob's worker id in Ada's request is left out like a missing one: not paused, tagged or deleted."""
    for action, extra in [("pause", {}), ("tag", {"tags": ["stolen"]}), ("set_bid", {"bid": "99"}), ("delete", {})]:
        body = farm.call("post", "/workers/bulk", json={"action": action, "ids": [farm.bob_worker], **extra}).get_json()
        assert body["matched"] == 0 and body["changed"] == 0
    # "All matching" is Ada's workers only, whatever the filter says.
    farm.call("post", "/workers/bulk", json={"action": "pause", "all_matching": True, "filter": {"q": "bob"}})
    with farm.app.app_context():
        bob = db.session.get(Worker, farm.bob_worker)
        assert bob.paused_at is None and bob.deleted_at is None and bob.bid_micros is None
        assert db.session.execute(db.select(WorkerTag).where(WorkerTag.worker_id == bob.id)).first() is None
    beat = client.post(f"{API}/worker/heartbeat", json={"state": "idle"}, headers=auth(farm.bob_token))
    assert beat.status_code == 200 and beat.get_json()["paused"] is False


BAD_BULK = [
    ({"action": "explode", "ids": [1]}, "invalid_action"),
    ({"action": 3, "ids": [1]}, "invalid_action"),
    ({"action": "pause"}, "invalid_ids"),
    ({"action": "pause", "ids": "1,2"}, "invalid_ids"),
    ({"action": "pause", "ids": [True]}, "invalid_ids"),
    ({"action": "tag", "ids": [1], "tags": ["bad tag!"]}, "invalid_tag"),
    ({"action": "set_bid", "ids": [1], "bid": "-1"}, "invalid_bid"),
    ({"action": "pause", "ids": [1], "all_matching": True}, "invalid_bulk"),
    ({"action": "pause", "all_matching": True, "filter": {"status": "sleepy"}}, "invalid_status"),
    ({"action": "pause", "all_matching": True, "filter": {"owner_id": "2"}}, "invalid_filter"),
    ({"action": "pause", "ids": [1], "owner_id": 2}, "invalid_bulk"),
]


def test_bad_bulk_requests_are_4xx_json_and_change_nothing(farm):
    for body, code in BAD_BULK:
        response = farm.call("post", "/workers/bulk", json=body)
        assert response.status_code == 400, (body, response.get_data(as_text=True))
        assert response.get_json()["error"] == code and response.get_json()["message"], body
    with farm.app.app_context():
        assert db.session.execute(db.select(Worker).where(Worker.paused_at.is_not(None))).first() is None


def test_a_worker_holds_at_most_twenty_tags(farm):
    many = [f"t{i}" for i in range(10)]
    farm.call("post", "/workers/bulk", json={"action": "tag", "ids": farm.ids[:1], "tags": many})
    farm.call("post", "/workers/bulk", json={"action": "tag", "ids": farm.ids[:1], "tags": [f"u{i}" for i in range(10)]})
    refused = farm.call("post", "/workers/bulk", json={"action": "tag", "ids": farm.ids[:1], "tags": ["one-more"]})
    assert refused.status_code == 400 and refused.get_json()["error"] == "too_many_tags"


# --- the portal's bulk bar over HTTP --------------------------------------------------------------

HX = {"HX-Request": "true"}


def test_portal_bulk_confirms_the_count_then_acts_and_ignores_foreign_ids(farm, client):
    client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"})
    page = client.get("/workers?q=4090").get_data(as_text=True)
    assert 'id="bulk-form"' in page and "All 10 matching the filter" in page
    picked = [str(i) for i in farm.ids[:3]] + [str(farm.bob_worker)]  # Bob's id smuggled in
    asked = client.post("/workers/bulk", data={"action": "pause", "ids": picked, "next": "/workers"}, headers=HX)
    text = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Pause 3 workers?" in text
    with farm.app.app_context():
        assert db.session.execute(db.select(Worker).where(Worker.paused_at.is_not(None))).first() is None
    done = client.post("/workers/bulk", data={"action": "pause", "ids": picked, "confirm": "1", "next": "/workers"},
                       headers=HX)
    assert done.headers["HX-Redirect"] == "/workers"
    assert "Paused 3 workers." in client.get("/workers").get_data(as_text=True)
    # "All matching the filter": the confirmation counts exactly what the list shows.
    asked = client.post("/workers/bulk", data={"action": "tag", "tags": "gpu-4090", "all_matching": "1", "q": "4090"})
    assert asked.status_code == 200 and "Tag 10 workers" in asked.get_data(as_text=True)
    client.post("/workers/bulk", data={"action": "tag", "tags": "gpu-4090", "all_matching": "1", "q": "4090",
                                       "confirm": "1"})
    with farm.app.app_context():
        paused = {w.id for w in db.session.execute(db.select(Worker).where(Worker.paused_at.is_not(None))).scalars()}
        assert paused == set(farm.ids[:3])
        assert len(db.session.execute(db.select(WorkerTag).where(WorkerTag.tag == "gpu-4090")).all()) == 10
        assert db.session.get(Worker, farm.bob_worker).tag_rows == []
    # Only Bob's id: nothing of Ada's is named, so nothing is offered (a message, not a 500).
    alone = client.post("/workers/bulk", data={"action": "delete", "ids": [str(farm.bob_worker)], "confirm": "1"})
    assert alone.status_code == 400 and "None of the selected workers" in alone.get_data(as_text=True)
    bad = client.post("/workers/bulk", data={"action": "tag", "ids": [str(farm.ids[0])], "tags": "no/slashes"},
                      headers=HX)
    assert bad.status_code == 200 and "is not a tag" in bad.get_data(as_text=True)
    with farm.app.app_context():
        assert db.session.get(Worker, farm.bob_worker).deleted_at is None


def test_portal_bulk_needs_the_csrf_token(tmp_path):
    import re
    from tests.conftest import make_app
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    signup = client.get("/signup").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', signup).group(1)
    client.post("/signup", data={"email": "ada@example.com", "password": "correct horse battery",
                                 "confirm": "correct horse battery", "csrf_token": token})
    with app.app_context():
        from webapp.services import accounts
        worker_id, _ = make_worker(owner_id=accounts.user_by_email("ada@example.com").id)
    refused = client.post("/workers/bulk", data={"action": "delete", "ids": [str(worker_id)], "confirm": "1"})
    assert refused.status_code == 400
    with app.app_context():
        assert db.session.get(Worker, worker_id).deleted_at is None


def test_patch_replaces_one_workers_tags(farm):
    worker_id = farm.ids[0]
    body = farm.call("patch", f"/workers/{worker_id}", json={"tags": ["Rack-3", "farm-a", "rack-3"]}).get_json()
    assert body["tags"] == ["farm-a", "rack-3"]
    assert farm.call("patch", f"/workers/{worker_id}", json={"tags": ["bad tag"]}).status_code == 400
    assert farm.call("patch", f"/workers/{worker_id}", json={"tags": "farm-a"}).status_code == 400
    assert farm.call("patch", f"/workers/{worker_id}", json={"tags": []}).get_json()["tags"] == []
    assert farm.call("patch", f"/workers/{farm.bob_worker}", json={"tags": ["mine"]}).status_code == 404

"""Device slots over the worker and provider APIs, on SQLite and PostgreSQL: hello reports a node's GPUs,
each claim names its slot, one running task per slot (a second claim is 204), an unreported slot is a
4xx, the CPU slot takes no GPU-only task; Worker JSON and the details page show each device."""

import threading

import pytest

from tests.conftest import LiveServer, create_token
from tests.webapp.dispatch_factories import auth as bearer, make_job, make_worker
from webapp.extensions import db
from webapp.models import Task, TaskStatus, Worker
from webapp.services import accounts

API = "/api/v1"
TWO_GPUS = [{"id": "gpu0", "kind": "CUDA", "name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564},
            {"id": "gpu1", "kind": "CUDA", "name": "NVIDIA GeForce RTX 3090", "memory_mb": 24576},
            {"id": "cpu", "kind": "CPU", "name": "AMD Ryzen 9 7950X", "memory_mb": None}]
HELLO = {"capabilities": {"job_types": ["render"], "gpu": True, "devices": ["CPU", "CUDA"]}, "slots": TWO_GPUS}


@pytest.fixture
def node(any_app, clock):
    """Ada's node, paired, before its hello; an API client for her; Bob's token to cheat with."""
    provider_token = create_token(any_app)
    with any_app.app_context():
        ada = accounts.user_by_email("ada@example.com").id
        worker, token = make_worker(owner_id=ada, slots=None, bench_score=1000)
    client = any_app.test_client()
    return any_app, client, worker, token, provider_token


def claim(client, token, slot=None):
    return client.post(f"{API}/worker/tasks/claim", json={"slot": slot} if slot else {}, headers=bearer(token))


def test_each_reported_slot_runs_one_task_at_once(node):
    app, client, worker, token, _ = node
    with app.app_context():
        make_job(tasks=5)
    assert client.post(f"{API}/worker/hello", json=HELLO, headers=bearer(token)).status_code == 200
    first = claim(client, token, "gpu0")
    assert first.status_code == 200 and first.get_json()["slot"] == "gpu0"
    busy = claim(client, token, "gpu0")
    assert busy.status_code == 204 and busy.headers["Retry-After"]  # gpu0 holds its task
    second = claim(client, token, "gpu1")
    assert second.status_code == 200 and second.get_json()["slot"] == "gpu1"
    assert second.get_json()["id"] != first.get_json()["id"]
    assert claim(client, token, "gpu1").status_code == 204
    # A slot it never reported (a third GPU that isn't there), and junk, are refused with a message.
    for bad in ("gpu2", 0, True, ["gpu0"], "gpu0; DROP TABLE tasks"):
        refused = claim(client, token, bad) if bad else client.post(
            f"{API}/worker/tasks/claim", json={"slot": bad}, headers=bearer(token))
        assert refused.status_code == 400, bad
        assert refused.get_json()["error"] == "invalid_slot" and "gpu0, gpu1, cpu" in refused.get_json()["message"]
    with app.app_context():
        running = db.session.execute(db.select(Task.slot).where(
            Task.worker_id == worker, Task.status == TaskStatus.RUNNING)).scalars().all()
    assert sorted(running) == ["gpu0", "gpu1"]
    # The progress, completion and hand-back of one slot's task leave the other's alone.
    assert client.post(f"{API}/worker/tasks/{first.get_json()['id']}/hand-back", json={},
                       headers=bearer(token)).status_code == 200
    again = claim(client, token, "gpu0")
    assert again.status_code == 200 and again.get_json()["slot"] == "gpu0"
    assert claim(client, token, "gpu1").status_code == 204


def test_the_cpu_slot_of_a_gpu_node_takes_no_gpu_only_task(node):
    app, client, _, token, _ = node
    with app.app_context():
        make_job(tasks=1, device="gpu")
    client.post(f"{API}/worker/hello", json=HELLO, headers=bearer(token))
    assert claim(client, token, "cpu").status_code == 204  # its renders see no GPU
    taken = claim(client, token, "gpu1")
    assert taken.status_code == 200 and taken.get_json()["slot"] == "gpu1"


BAD_SLOTS = [
    ([{"id": f"gpu{i}", "kind": "CUDA"} for i in range(16)] + [{"id": "cpu", "kind": "CPU"}], "1 to 16"),
    ([{"id": "gpu16", "kind": "CUDA"}], "gpu0 ... gpu15"),
    ([{"id": "../etc", "kind": "CUDA"}], "gpu0 ... gpu15"),
    ([{"id": "gpu0", "kind": "CUDA"}, {"id": "gpu0", "kind": "CUDA"}], "twice"),
    ([{"id": "gpu0", "kind": "CPU"}], "kind"),  # a GPU slot passed off as the CPU, or the reverse
    ([{"id": "cpu", "kind": "CUDA"}], "kind"),
    ([{"id": "gpu0", "kind": "QUANTUM"}], "kind"),
    ([{"id": "gpu0", "kind": "CUDA", "memory_mb": -1}], "memory_mb"),
    ([{"id": "gpu0", "kind": "CUDA", "name": 7}], "name"),
    ({"gpu0": "CUDA"}, "list"), ([], "1 to 16"),
]


def test_hello_refuses_bad_slot_lists(node):
    _, client, _, token, _ = node
    for slots, why in BAD_SLOTS:
        refused = client.post(f"{API}/worker/hello", json={"slots": slots}, headers=bearer(token))
        assert refused.status_code == 400 and why in refused.get_json()["message"], (slots, refused.get_json())


def test_an_old_app_without_slots_runs_one_task_at_a_time(node):
    app, client, _, token, _ = node
    with app.app_context():
        make_job(tasks=2)
    client.post(f"{API}/worker/hello", json={"capabilities": HELLO["capabilities"]}, headers=bearer(token))
    assert claim(client, token).status_code == 200
    assert claim(client, token).status_code == 204
    assert claim(client, token, "gpu0").status_code == 400  # it reported no such slot


def test_racing_claims_for_one_slot_get_one_task(node):
    """Eight claims for gpu0 at once over real HTTP: one task, seven 204s; the database holds it."""
    app, _, worker, token, _ = node
    with app.app_context():
        make_job(tasks=8)
    server = LiveServer(app)
    try:
        import requests
        requests.post(f"{server.url}{API}/worker/hello", json=HELLO, headers=bearer(token), timeout=30)
        barrier, codes = threading.Barrier(8), []

        def racer():
            barrier.wait()
            codes.append(requests.post(f"{server.url}{API}/worker/tasks/claim", json={"slot": "gpu0"},
                                       headers=bearer(token), timeout=60).status_code)
        threads = [threading.Thread(target=racer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    finally:
        server.stop()
    assert sorted(codes) == [200] + [204] * 7
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Task).where(
            Task.worker_id == worker, Task.status == TaskStatus.RUNNING)).scalar_one() == 1


def test_worker_json_and_the_details_page_show_each_device(node):
    app, client, worker, token, provider_token = node
    with app.app_context():
        _, (done_id, *_rest) = make_job(tasks=3, name="spring ad")
        # A task gpu1 finished earlier, as the ledger recorded it (completing needs real outputs; the
        # dispatch tests do that): its reward counts towards gpu1 only.
        done = db.session.get(Task, done_id)
        done.status, done.worker_id, done.slot, done.reward_micros = TaskStatus.COMPLETED, worker, "gpu1", 1_250_000
        db.session.commit()
    client.post(f"{API}/worker/hello", json=HELLO, headers=bearer(token))
    running = claim(client, token, "gpu0").get_json()

    body = client.get(f"{API}/workers/{worker}", headers={"Authorization": f"Bearer {provider_token}"}).get_json()
    by_id = {s["id"]: s for s in body["slots"]}
    assert list(by_id) == ["gpu0", "gpu1", "cpu"]
    assert by_id["gpu0"]["state"] == "busy" and by_id["gpu0"]["task"]["id"] == running["id"]
    assert by_id["gpu0"]["name"] == "NVIDIA GeForce RTX 4090" and by_id["gpu0"]["kind"] == "CUDA"
    assert by_id["gpu1"] == {**by_id["gpu1"], "state": "idle", "task": None, "earnings": "1.250000",
                             "tasks_completed": 1}
    listed = client.get(f"{API}/workers", headers={"Authorization": f"Bearer {provider_token}"}).get_json()
    assert [s["id"] for s in listed["items"][0]["slots"]] == ["gpu0", "gpu1", "cpu"]
    tasks = client.get(f"{API}/workers/{worker}/tasks", headers={"Authorization": f"Bearer {provider_token}"}).get_json()
    assert {t["id"]: t["slot"] for t in tasks["items"]}[running["id"]] == "gpu0"

    client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"})
    page = client.get(f"/workers/{worker}").get_data(as_text=True)
    assert 'data-slot="gpu0" data-state="busy"' in page and f"Task #{running['id']}" in page
    assert 'data-slot="gpu1" data-state="idle"' in page and "$1.25" in page
    assert "NVIDIA GeForce RTX 3090" in page and 'data-slot="cpu"' in page
    task_list = client.get(f"/workers/{worker}?tab=tasks").get_data(as_text=True)
    assert '<td data-label="Device" class="nowrap">gpu0</td>' in task_list
    assert '<td data-label="Device" class="nowrap">gpu1</td>' in task_list


def test_another_account_sees_nothing_of_a_nodes_slots(node):
    app, client, worker, token, _ = node
    client.post(f"{API}/worker/hello", json=HELLO, headers=bearer(token))
    other = create_token(app, "bob@example.com")
    assert client.get(f"{API}/workers/{worker}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    client.post("/login", data={"email": "bob@example.com", "password": "correct horse battery"})
    assert client.get(f"/workers/{worker}").status_code == 404


def test_a_slot_is_priced_by_its_own_measured_bench_score_and_the_app_cannot_forge_one(node):
    from datetime import timedelta
    from webapp.services import benchmarks, dispatch
    app, client, worker, token, _ = node
    with app.app_context():
        row = db.session.get(Worker, worker)
        row.bid_micros = 1_000_000  # $1/hour: $1 per bench-hour at score 1000, $0.50 at 2000
        db.session.commit()
        make_job(tasks=2, max_price="0.60")
    client.post(f"{API}/worker/hello", json=HELLO, headers=bearer(token))
    # The app tries to pass off gpu0 as twice as fast through its own benchmark report.
    forged = {"portal": {"slots": {"gpu0": {"score": 2000}}}, "seconds": 1.0}
    assert client.post(f"{API}/worker/benchmark", json={"score": 2000, "details": forged},
                       headers=bearer(token)).status_code == 200
    assert claim(client, token, "gpu0").status_code == 204  # still priced at score 1000: over the job's max
    with app.app_context():
        # The portal's own timed run on gpu1 measured it at 2000 (half the reference time).
        row = db.session.get(Worker, worker)
        _, (run_id, *_x) = make_job(tasks=1, name="run")
        run = db.session.get(Task, run_id)
        run.worker, run.slot, run.status = row, "gpu1", TaskStatus.COMPLETED
        run.started_at = utcnow_()
        run.finished_at = run.started_at + timedelta(seconds=benchmarks.PORTAL_REFERENCE_SECONDS / 2)
        assert benchmarks.record_score(run, run.finished_at) == 2000
        db.session.commit()
        assert benchmarks.slot_score(row, "gpu1") == 2000 and benchmarks.slot_score(row, "gpu0") == 2000  # worker's
        row.bench_score = 1000  # say a later run on gpu0 measured the worker at 1000 again
        db.session.commit()
        assert benchmarks.slot_score(row, "gpu0") == 1000 and benchmarks.slot_score(row, "gpu1") == 2000
    assert claim(client, token, "gpu0").status_code == 204
    taken = claim(client, token, "gpu1")
    assert taken.status_code == 200
    with app.app_context():
        assert db.session.get(Task, taken.get_json()["id"]).bench_score == 2000


def utcnow_():
    from webapp.clock import utcnow
    return utcnow()

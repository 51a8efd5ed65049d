"""The worker API over HTTP: token auth, hello, claim, inputs, progress, outputs, complete, fail, settings."""

import io
from datetime import timedelta

import pytest

from tests.conftest import T0, create_token
from tests.webapp.dispatch_factories import auth, frame_png, make_job, make_user, make_worker, sha
from webapp.extensions import db
from webapp.models import (AppRelease, Job, LedgerEntry, LedgerKind, MiningReport, StoredFile, Task, TaskOutput,
                           TaskStatus, Worker, WorkerDailyStat, WorkerState)
from webapp.services import dispatch, storage

API = "/api/v1"
HELLO = {
    "app_version": "0.3.1", "os": "Windows 11 Pro 23H2", "hostname": "rig-01", "cpu": "AMD Ryzen 9 7950X",
    "ram_mb": 65536, "state": "idle",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564, "driver": "552.22", "temperature": 41.0},
             {"name": "NVIDIA GeForce RTX 3060", "memory_mb": 12288, "driver": "552.22"}],
    "renderers": {"blender": {"version": "3.4.1", "path": "C:/Program Files/Blender/blender.exe"}},
    "capabilities": {"job_types": ["render", "upscale", "teleport"], "gpu": True, "devices": ["CPU", "CUDA"]},
    "compliance": [{"check": "firewall", "status": "pass", "reason": "Windows Defender Firewall is on"},
                   {"check": "os_updates", "status": "warn", "reason": "2 updates pending"}],
}


@pytest.fixture
def env(app, client, clock):
    """A worker (token) with a queued render job of two tasks."""
    with app.app_context():
        worker_id, token = make_worker(bid="0.60")
        other_id, other_token = make_worker(name="other")
        job_id, task_ids = make_job(tasks=2)

    class Env:
        pass
    e = Env()
    e.app, e.client, e.worker_id, e.token = app, client, worker_id, token
    e.other_id, e.other_token = other_id, other_token
    e.job_id, e.task_ids = job_id, task_ids

    def call(method, path, token=token, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers.update(auth(token))
        return getattr(client, method)(API + path, headers=headers, **kwargs)
    e.call = call
    return e


def claim(env, token=None):
    response = env.call("post", "/worker/tasks/claim", token=token or env.token)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def put_output(env, task_id, name, data: bytes, token=None, digest=None, headers=None):
    extra = {"X-Content-SHA256": digest if digest is not None else sha(data), **(headers or {})}
    return env.call("put", f"/worker/tasks/{task_id}/outputs/{name}", token=token or env.token, data=data,
                    headers=extra, content_type="application/octet-stream")


def query(app, fn):
    with app.app_context():
        return fn()


# -- authentication and ownership ------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("post", "/worker/hello"), ("post", "/worker/heartbeat"), ("post", "/worker/tasks/claim"),
    ("get", "/worker/tasks/1/inputs/scene.blend"), ("post", "/worker/tasks/1/progress"),
    ("put", "/worker/tasks/1/outputs/frame_0001.png"), ("post", "/worker/tasks/1/complete"),
    ("post", "/worker/tasks/1/fail"), ("get", "/worker/settings"), ("put", "/worker/settings"),
    ("post", "/worker/benchmark"), ("get", "/worker/speedtest/download"), ("post", "/worker/speedtest/upload"),
    ("post", "/worker/speedtest/result"), ("post", "/worker/mining/report"),
])
def test_worker_endpoints_need_a_worker_token(env, method, path):
    assert env.call(method, path, token=None).status_code == 401
    assert env.call(method, path, token="pwk_not-a-real-token").status_code == 401
    user_token = create_token(env.app, "someone@example.com")  # a personal API token is not a worker token
    response = env.call(method, path, token=user_token)
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_a_deleted_worker_token_stops_working(env):
    with env.app.app_context():
        db.session.get(Worker, env.worker_id).deleted_at = T0
        db.session.commit()
    assert env.call("post", "/worker/tasks/claim").status_code == 401


def test_another_worker_cannot_touch_my_task(env):
    task = claim(env)
    task_id = task["id"]
    other = env.other_token
    assert env.call("get", f"/worker/tasks/{task_id}/inputs/scene.blend", token=other).status_code == 404
    assert env.call("post", f"/worker/tasks/{task_id}/progress", token=other, json={"progress": 0.5}).status_code == 404
    assert put_output(env, task_id, "frame_0001.png", b"x", token=other).status_code == 404
    assert env.call("post", f"/worker/tasks/{task_id}/complete", token=other,
                    json={"outputs": [{"name": "a.png", "sha256": sha(b"x"), "size": 1}],
                          "compute_seconds": 1}).status_code == 404
    assert env.call("post", f"/worker/tasks/{task_id}/fail", token=other, json={"reason": "x"}).status_code == 404
    assert query(env.app, lambda: db.session.get(Task, task_id).status) == TaskStatus.RUNNING
    assert query(env.app, lambda: db.session.execute(db.select(db.func.count(TaskOutput.id))).scalar_one()) == 0


# -- pairing, hello, heartbeat ---------------------------------------------------------------------

def test_pair_trades_a_code_for_the_config_once(env):
    from webapp.services import workers
    with env.app.app_context():
        from webapp.models import User
        owner = db.session.get(User, make_user())
        worker, code, _ = workers.create_worker(owner, "fresh node")
        worker_id = worker.id
    response = env.client.post(f"{API}/pair", json={"code": code.lower().replace("-", " ")})
    assert response.status_code == 200
    config = response.get_json()
    assert config["worker_id"] == worker_id and config["token"] and config["server_url"].startswith("http")
    assert env.client.post(f"{API}/pair", json={"code": code}).status_code == 400  # single use
    assert env.call("post", "/worker/heartbeat", token=config["token"], json={"state": "idle"}).status_code == 200
    for bad in ({"code": ""}, {"code": 12345678}, {}, {"code": "X" * 100}):
        assert env.client.post(f"{API}/pair", json=bad).status_code == 400


def test_hello_records_the_machine_and_answers_with_settings(env):
    with env.app.app_context():
        db.session.add(AppRelease(version="0.3.2", filename="PictorWorkerSetup-0.3.2.exe", sha256="a" * 64, size=10,
                                  created_at=T0))
        db.session.add(AppRelease(version="0.3.1", filename="PictorWorkerSetup-0.3.1.exe", sha256="b" * 64, size=10,
                                  created_at=T0 - timedelta(days=9)))
        db.session.commit()
    response = env.call("post", "/worker/hello", json=HELLO)
    assert response.status_code == 200
    body = response.get_json()
    assert {k: body[k] for k in ("poll_seconds", "heartbeat_seconds", "lease_seconds", "bid", "average_bid",
                                 "bench_score", "latest_app_version")} == {
        # A one-worker network polls at the floor (presence.advised_intervals): a new job starts within a second.
        "poll_seconds": 1, "heartbeat_seconds": 15, "lease_seconds": 60, "bid": "0.600000",
        # One worker's own bid never moves the network's average (market.compute_market_day).
        "average_bid": "0.500000", "bench_score": None, "latest_app_version": "0.3.2"}
    with env.app.app_context():
        worker = db.session.get(Worker, env.worker_id)
        assert (worker.app_version, worker.os, worker.hostname, worker.cpu, worker.ram_mb) == \
            ("0.3.1", "Windows 11 Pro 23H2", "rig-01", "AMD Ryzen 9 7950X", 65536)
        assert worker.gpu_name == "NVIDIA GeForce RTX 4090" and len(worker.gpus) == 2
        assert worker.capabilities == {"job_types": ["render", "upscale"], "gpu": True, "devices": ["CPU", "CUDA"]}
        assert worker.renderers["blender"]["version"] == "3.4.1"
        assert [c["status"] for c in worker.compliance] == ["pass", "warn"]
        assert worker.state == WorkerState.IDLE and worker.last_heartbeat_at == T0
        assert worker.ip_address == "127.0.0.1" and worker.country is None  # a local address has no country


@pytest.mark.parametrize("patch", [
    {"gpus": "RTX 4090"}, {"gpus": [{"memory_mb": 1}]}, {"gpus": [{"name": "x", "nested": {"a": 1}}]},
    {"ram_mb": "64 GB"}, {"ram_mb": -1}, {"capabilities": {"job_types": "render"}},
    {"capabilities": {"gpu": "yes"}}, {"compliance": [{"check": "fw", "status": "ok"}]},
    {"compliance": "all good"}, {"app_version": "1.0; rm -rf /"}, {"state": "sleeping"}, {"os": 11},
])
def test_hello_rejects_bad_reports_and_stores_nothing(env, patch):
    response = env.call("post", "/worker/hello", json={**HELLO, **patch})
    assert response.status_code == 400 and response.get_json()["error"]
    with env.app.app_context():
        worker = db.session.get(Worker, env.worker_id)
        assert worker.app_version is None and worker.gpus == [] and worker.state is None


def test_heartbeat_sets_state_and_rejects_unknown_states(env):
    paused = {"state": "paused", "message": "Paused by user"}
    assert env.call("post", "/worker/heartbeat", json=paused).status_code == 200
    assert env.call("post", "/worker/heartbeat", json={"state": "napping"}).status_code == 400
    assert env.call("post", "/worker/heartbeat", data="not json", content_type="application/json").status_code == 400
    with env.app.app_context():
        worker = db.session.get(Worker, env.worker_id)
        assert worker.state == WorkerState.PAUSED and worker.state_message == "Paused by user"


def test_json_bodies_are_size_limited(env):
    response = env.call("post", "/worker/heartbeat", data=b'{"state": "idle", "message": "' + b"x" * (2 << 20) + b'"}',
                        content_type="application/json")
    assert response.status_code == 413


# -- the task loop ---------------------------------------------------------------------------------

def test_claim_returns_204_with_retry_after_when_nothing_fits(env):
    claim(env)
    claim(env)
    response = env.call("post", "/worker/tasks/claim")
    assert response.status_code == 204 and response.headers["Retry-After"] == "1" and response.data == b""


def test_full_task_loop_over_http(env, clock):
    task = claim(env)
    assert set(task) >= {"id", "job_id", "type", "params", "inputs", "lease_expires_at", "reward_estimate", "software"}
    assert task["type"] == "render" and task["params"]["frames"] == [1] and task["job_id"] == env.job_id
    assert task["lease_expires_at"] == (T0 + timedelta(seconds=60)).isoformat()
    (blend,) = task["inputs"]
    assert blend["name"] == "scene.blend"
    assert blend["url"].endswith(f"/api/v1/worker/tasks/{task['id']}/inputs/scene.blend")
    download = env.call("get", blend["url"].split("/api/v1", 1)[1])
    assert download.status_code == 200 and sha(download.data) == blend["sha256"] and len(download.data) == blend["size"]
    assert download.headers["ETag"].strip('"') == blend["sha256"]

    clock.set(T0 + timedelta(seconds=40))
    progress = env.call("post", f"/worker/tasks/{task['id']}/progress",
                        json={"progress": 0.5, "eta_s": 40, "message": "Sample 8/16"})
    assert progress.status_code == 200 and progress.get_json()["keep_running"] is True

    frame = frame_png()
    uploaded = put_output(env, task["id"], "frame_0001.png", frame)
    assert uploaded.status_code == 201 and uploaded.get_json() == {"name": "frame_0001.png", "sha256": sha(frame),
                                                                   "size": len(frame)}
    clock.set(T0 + timedelta(seconds=120))
    body = {"outputs": [{"name": "frame_0001.png", "sha256": sha(frame), "size": len(frame)}], "compute_seconds": 118.5}
    done = env.call("post", f"/worker/tasks/{task['id']}/complete", json=body)
    assert done.status_code == 200 and done.get_json() == {"reward": "0.019750"}  # 0.60/h x 118.5 s
    again = env.call("post", f"/worker/tasks/{task['id']}/complete", json=body)
    assert again.status_code == 200 and again.get_json() == {"reward": "0.019750"}
    with env.app.app_context():
        assert db.session.execute(db.select(db.func.count(LedgerEntry.id))).scalar_one() == 1
        assert db.session.get(Worker, env.worker_id).earnings_micros == 19_750
    # The job's next task now comes with an estimate from the finished one.
    second = claim(env)
    assert second["reward_estimate"] == "0.019750"


def test_input_downloads_support_range_and_etag(env):
    task = claim(env)
    path = f"/worker/tasks/{task['id']}/inputs/scene.blend"
    full = env.call("get", path).data
    partial = env.call("get", path, headers={"Range": "bytes=4-9"})
    assert partial.status_code == 206 and partial.data == full[4:10]
    cached = env.call("get", path, headers={"If-None-Match": f'"{task["inputs"][0]["sha256"]}"'})
    assert cached.status_code == 304
    assert env.call("get", f"/worker/tasks/{task['id']}/inputs/other.blend").status_code == 404


def test_inputs_only_while_the_task_runs_here(env):
    task = claim(env)
    with env.app.app_context():
        dispatch.cancel_job(db.session.get(Job, env.job_id))
    assert env.call("get", f"/worker/tasks/{task['id']}/inputs/scene.blend").status_code == 409


def test_progress_is_validated_and_409_after_cancel(env):
    task = claim(env)
    path = f"/worker/tasks/{task['id']}/progress"
    for bad in ({"progress": 1.5}, {"progress": -0.1}, {"progress": "half"}, {}, {"progress": 0.5, "eta_s": -3},
                {"progress": 0.5, "message": ["x"]}):
        assert env.call("post", path, json=bad).status_code == 400, bad
    with env.app.app_context():
        dispatch.cancel_job(db.session.get(Job, env.job_id))
    response = env.call("post", path, json={"progress": 0.7})
    assert response.status_code == 409 and response.get_json()["keep_running"] is False


@pytest.mark.parametrize("name", ["..", "a..b.png", ".hidden", "-dash.png", "x" * 129, "frame 1.png", "frame%2F1.png"])
def test_output_names_are_sanitised(env, name):
    task = claim(env)
    response = put_output(env, task["id"], name, b"data")
    assert response.status_code in (400, 404)
    assert query(env.app, lambda: db.session.execute(db.select(db.func.count(TaskOutput.id))).scalar_one()) == 0


def test_output_upload_checks_hash_header_and_size(env):
    task = claim(env)
    path_name = "frame_0001.png"
    missing = env.call("put", f"/worker/tasks/{task['id']}/outputs/{path_name}", data=b"abc",
                       content_type="application/octet-stream")
    assert missing.status_code == 400 and missing.get_json()["error"] == "missing_sha256"
    assert put_output(env, task["id"], path_name, b"abc", digest="not-hex").status_code == 400
    mismatch = put_output(env, task["id"], path_name, b"abc", digest=sha(b"abd"))
    assert mismatch.status_code == 400 and mismatch.get_json()["error"] == "hash_mismatch"
    env.app.config["OUTPUT_MAX_BYTES"] = 8
    assert put_output(env, task["id"], path_name, b"123456789").status_code == 413
    with env.app.app_context():
        assert db.session.execute(db.select(db.func.count(TaskOutput.id))).scalar_one() == 0
        assert db.session.get(StoredFile, sha(b"abc")) is None and not storage.path_for(sha(b"abc")).exists()
    # A re-upload under the same name replaces the first one.
    assert put_output(env, task["id"], path_name, b"first").status_code == 201
    assert put_output(env, task["id"], path_name, b"second").status_code == 201
    with env.app.app_context():
        (row,) = db.session.execute(db.select(TaskOutput)).scalars().all()
        assert row.sha256 == sha(b"second")


def test_outputs_only_to_a_running_task(env):
    task = claim(env)
    with env.app.app_context():
        dispatch.cancel_job(db.session.get(Job, env.job_id))
    assert put_output(env, task["id"], "frame_0001.png", b"late").status_code == 409


def test_complete_names_the_missing_output(env):
    task = claim(env)
    response = env.call("post", f"/worker/tasks/{task['id']}/complete", json={
        "outputs": [{"name": "frame_0001.png", "sha256": sha(b"f"), "size": 1}], "compute_seconds": 3})
    assert response.status_code == 400 and "frame_0001.png" in response.get_json()["message"]
    for bad in ({"outputs": "frame_0001.png", "compute_seconds": 3}, {"outputs": [], "compute_seconds": 3},
                {"outputs": [{"name": "a.png", "sha256": sha(b"f"), "size": 1}], "compute_seconds": "3"}):
        assert env.call("post", f"/worker/tasks/{task['id']}/complete", json=bad).status_code == 400


def test_an_upload_swapped_between_the_file_check_and_the_lock_earns_nothing(env, monkeypatch):
    """A completion decodes the declared files before it takes the write lock (dispatch._read_pass): a
    worker that swaps the upload for other bytes in between is refused by the locked pass, credited nothing."""
    task = claim(env)
    good, junk = frame_png(), b"not a frame at all"
    assert put_output(env, task["id"], "frame_0001.png", good).status_code == 201
    read_pass = dispatch._read_pass

    def then_swap(worker_id, task_id, declared):
        checked = read_pass(worker_id, task_id, declared)
        assert checked.files_pass  # the good frame was what it checked
        digest, size = storage.store_blob(io.BytesIO(junk), 1 << 20)
        dispatch.record_output(db.session.get(Worker, worker_id), task_id, "frame_0001.png", digest, size)
        return checked

    monkeypatch.setattr(dispatch, "_read_pass", then_swap)
    body = {"outputs": [{"name": "frame_0001.png", "sha256": sha(good), "size": len(good)}], "compute_seconds": 3}
    response = env.call("post", f"/worker/tasks/{task['id']}/complete", json=body)
    assert response.status_code == 400 and response.get_json()["error"] == "output_mismatch"
    with env.app.app_context():
        assert db.session.execute(db.select(db.func.count(LedgerEntry.id))).scalar_one() == 0
        assert db.session.get(Task, task["id"]).status == TaskStatus.RUNNING


def test_fail_endpoint_requeues_or_fails(env):
    task = claim(env)
    response = env.call("post", f"/worker/tasks/{task['id']}/fail",
                        json={"reason": "Blender exited with code 11", "log_tail": "Segmentation fault",
                              "retryable": True})
    assert response.status_code == 200 and response.get_json() == {"status": "queued"}
    second = claim(env)
    assert second["id"] != task["id"]  # never the task it failed
    for bad in ({"reason": ""}, {"reason": "x", "retryable": "yes"}, {"reason": "x", "log_tail": 5}):
        assert env.call("post", f"/worker/tasks/{second['id']}/fail", json=bad).status_code == 400
    response = env.call("post", f"/worker/tasks/{second['id']}/fail",
                        json={"reason": "corrupt file", "retryable": False})
    # Not retryable in this worker's view: back in the queue until another provider's worker agrees.
    assert response.get_json() == {"status": "queued"}
    with env.app.app_context():
        _, confirming = make_worker(make_user("another-provider@example.com"), name="confirming")
    assert second["id"] in [claim(env, confirming)["id"] for _ in range(2)]  # both tasks are queued again
    response = env.call("post", f"/worker/tasks/{second['id']}/fail", token=confirming,
                        json={"reason": "corrupt file", "retryable": False})
    assert response.get_json() == {"status": "failed"}


def test_hand_back_returns_the_task_without_a_failure(env):
    task = claim(env)
    response = env.call("post", f"/worker/tasks/{task['id']}/hand-back", json={"reason": "shutting down"})
    assert response.status_code == 200
    assert claim(env)["id"] == task["id"]


# -- settings, benchmark, speed test, mining -------------------------------------------------------

def test_settings_round_trip(env):
    response = env.call("put", "/worker/settings", json={
        "bid": "0.45", "wallet_address": "0x52908400098527886E0F7030069857D2E4169EE7",
        "mining_config": {"pool": "stratum+tcp://etc.example.org:4444", "coin": "etc",
                          "wallet": "0x52908400098527886E0F7030069857D2E4169EE7.rig01", "extra": "--intensity 20",
                          "enabled": True}})
    assert response.status_code == 200, response.get_json()
    settings = env.call("get", "/worker/settings").get_json()
    assert settings["name"] == "node"  # the app's window header shows it
    assert settings["bid"] == "0.450000" and settings["custom_bid"] == "0.450000"
    assert settings["wallet_address"] == "0x52908400098527886E0F7030069857D2E4169EE7"
    assert settings["mining_config"]["coin"] == "ETC" and settings["mining_config"]["enabled"] is True
    assert set(settings["estimated_earning_per_hour"]) == {"amount", "utilisation", "explanation"}
    # null clears the custom bid: the worker bids the network average again.
    assert env.call("put", "/worker/settings", json={"bid": None}).get_json()["custom_bid"] is None


@pytest.mark.parametrize("body", [
    {"bid": "0"}, {"bid": "-1"}, {"bid": "100.01"}, {"bid": 0.5}, {"bid": "abc"}, {"bid": "NaN"},
    {"bid": "0.1234567"}, {"bid": True}, {"wallet_address": "has spaces"}, {"wallet_address": "x" * 129},
    {"mining_config": {"enabled": True}}, {"mining_config": {"pool": "not a pool"}},
    {"mining_config": {"coin": "ETC!"}}, {"mining_config": {"gpu_overclock": 200}}, {"mining_config": "on"},
    {"mining_config": {"extra": "--a\n--b"}}, {"colour": "blue"},
    {"bid": "0.40", "wallet_address": "bad wallet"},  # one bad field: nothing is stored
])
def test_settings_are_validated_and_nothing_is_stored_on_rejection(env, body):
    response = env.call("put", "/worker/settings", json=body)
    assert response.status_code == 400 and response.get_json()["error"]
    with env.app.app_context():
        worker = db.session.get(Worker, env.worker_id)
        assert worker.bid_micros == 600_000 and worker.wallet_address is None and not worker.mining_config


def test_a_reported_benchmark_is_kept_as_reported_and_never_prices(env):
    for bad in ({"score": 0}, {"score": 10_000_001}, {"score": "1500"}, {"score": 1500.5}, {"score": True},
                {"score": 1500, "details": "fast"}):
        assert env.call("post", "/worker/benchmark", json=bad).status_code == 400, bad
    response = env.call("post", "/worker/benchmark", json={"score": 2400, "details": {"seconds": 41.7}})
    body = response.get_json()
    assert response.status_code == 200 and body["bench_score_reported"] == 2400
    # The price follows the portal's own score (services/benchmarks.py), which this worker doesn't have yet.
    assert body["bench_score"] is None and body["price_per_bench_hour"] is None


def test_speed_test_endpoints(env):
    download = env.call("get", "/worker/speedtest/download?bytes=3000000")
    assert download.status_code == 200 and len(download.data) == 3_000_000
    for bad in ("0", "-5", "abc", str(60 * 1024 * 1024)):
        assert env.call("get", f"/worker/speedtest/download?bytes={bad}").status_code == 400
    upload = env.call("post", "/worker/speedtest/upload", data=b"z" * 123_456, content_type="application/octet-stream")
    assert upload.get_json() == {"bytes": 123_456}
    result = env.call("post", "/worker/speedtest/result", json={"download_mbps": 940.5, "upload_mbps": 88})
    assert result.status_code == 200
    for bad in ({"download_mbps": -1, "upload_mbps": 1}, {"download_mbps": "fast", "upload_mbps": 1}, {}):
        assert env.call("post", "/worker/speedtest/result", json=bad).status_code == 400
    with env.app.app_context():
        worker = db.session.get(Worker, env.worker_id)
        assert (worker.download_mbps, worker.upload_mbps, worker.speed_measured_at) == (940.5, 88.0, T0)


def test_worker_api_is_documented_in_openapi(env):
    document = env.client.get(f"{API}/openapi.json").get_json()
    for path in ("/pair", "/worker/hello", "/worker/heartbeat", "/worker/tasks/claim",
                 "/worker/tasks/{task_id}/inputs/{name}", "/worker/tasks/{task_id}/progress",
                 "/worker/tasks/{task_id}/outputs/{name}", "/worker/tasks/{task_id}/complete",
                 "/worker/tasks/{task_id}/fail", "/worker/settings", "/worker/benchmark",
                 "/worker/speedtest/download", "/worker/speedtest/upload", "/worker/speedtest/result",
                 "/worker/mining/report"):
        assert path in document["paths"], path


def test_worker_api_fuzzed_without_server_errors(env):
    """schemathesis over every worker operation with a valid worker token and a running task: no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    claim(env)
    headers = auth(env.token)
    schema = schemathesis.from_wsgi(f"{API}/openapi.json", env.app).include(tag="worker")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=10, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))

        try:
            fuzz()
        except Exception as exc:
            pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")

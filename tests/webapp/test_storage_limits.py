"""Storage that can't be filled: temp files swept at start-up, stray blob files collected, per-task output
quotas, and a full disk answered with 507 and a message instead of a bare 500."""

import os
import time

import pytest

from webapp import create_app
from webapp.extensions import db
from webapp.models import StoredFile, Task
from webapp.services import quotas, storage

from ..conftest import make_app
from .dispatch_factories import auth, frame_png, make_job, make_worker, sha

HOUR = 3600


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_temp_files_a_crash_left_are_swept_at_start_up(tmp_path):
    app = make_app(tmp_path)
    tmp = tmp_path / "storage" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    crashed, in_flight = tmp / "tmpcrashed", tmp / "tmpinflight"
    crashed.write_bytes(b"half an upload")
    in_flight.write_bytes(b"an upload still arriving")
    _age(crashed, 2 * HOUR)
    create_app(dict(app.config))  # a portal process starting
    assert not crashed.exists() and in_flight.exists()


def test_blob_files_without_a_row_are_collected_after_the_grace_period(ctx):
    kept = storage.put_bytes(b"a referenced-by-row blob")
    db.session.commit()
    stray, young = storage.path_for("ab" * 32), storage.path_for("cd" * 32)
    for path in (stray, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stored, but its transaction never committed")
    for path in (stray, storage.path_for(kept.sha256)):
        _age(path, 2 * HOUR)
    assert storage.collect_stray_files() == 1
    assert not stray.exists() and young.exists() and storage.path_for(kept.sha256).exists()


def test_receiving_a_stray_blob_again_makes_it_young(ctx):
    data = b"a file uploaded twice"
    digest = storage.put_bytes(data).sha256
    db.session.rollback()  # the first upload's row never committed
    _age(storage.path_for(digest), 2 * HOUR)
    storage.put_bytes(data)
    assert storage.collect_stray_files() == 0 and storage.path_for(digest).exists()


@pytest.fixture
def running(any_app):
    """A worker holding a running render task of frame 1 (a 64x36 scene at 50 %)."""
    app = any_app
    client = app.test_client()
    with app.app_context():
        worker_id, token = make_worker()
        job_id, (task_id,) = make_job()
        task = db.session.get(Task, task_id)
        task.job.spec = {"type": "render", "scene": {"settings": {
            "scene": "Scene", "resolution_x": 64, "resolution_y": 36, "percent": 100, "engine": "CYCLES",
            "frame_start": 1, "frame_end": 1}}}
        db.session.commit()
    claimed = client.post("/api/v1/worker/tasks/claim", json={}, headers=auth(token))
    assert claimed.status_code == 200
    return app, client, token, task_id


def _put(client, token, task_id, name, data):
    return client.put(f"/api/v1/worker/tasks/{task_id}/outputs/{name}", data=data, headers={
        **auth(token), "X-Content-SHA256": sha(data)}, content_type="application/octet-stream")


def test_a_task_may_upload_only_the_files_it_delivers_each_as_large_as_its_image(running):
    app, _, _, task_id = running
    with app.app_context():
        task = db.session.get(Task, task_id)
        assert quotas.expected_outputs(task) == (["frame_0001.png"], (32, 18))
        assert quotas.output_allowance(task, "frame_0001.png", 256 * 2**20) == 32 * 18 * 16 + quotas.OVERHEAD_BYTES
        with pytest.raises(quotas.UnexpectedOutput) as refused:
            quotas.output_allowance(task, "frame_0002.png", 256 * 2**20)
        assert refused.value.status == 409 and "frame_0001.png" in refused.value.message
        assert quotas.task_quota(task) == (1, 32 * 18 * 16 + quotas.OVERHEAD_BYTES)


def test_outputs_beyond_what_the_task_delivers_are_refused_over_http(running):
    app, client, token, task_id = running
    assert _put(client, token, task_id, "frame_0001.png", frame_png(1, size=(32, 18))).status_code == 201
    refused = _put(client, token, task_id, "junk_0001.png", b"x" * 1000)
    assert refused.status_code == 409 and refused.get_json()["error"] == "unexpected_output"
    too_big = _put(client, token, task_id, "frame_0001.png", b"x" * (32 * 18 * 16 + quotas.OVERHEAD_BYTES + 1))
    assert too_big.status_code == 413
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(StoredFile)).scalar_one() == 2  # input + frame


def test_a_full_disk_is_a_507_with_a_message(running, monkeypatch):
    app, client, token, task_id = running
    real_temp_file = storage.temp_file

    def full_disk(suffix=""):
        fd, name = real_temp_file(suffix)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name  # the kernel answers every write with ENOSPC

    monkeypatch.setattr(storage, "temp_file", full_disk)
    response = _put(client, token, task_id, "frame_0001.png", frame_png(1, size=(32, 18)) + b"\0" * 2**21)
    assert response.status_code == 507
    assert response.get_json()["error"] == "storage_full" and "full" in response.get_json()["message"]
    assert response.headers["Retry-After"]
    assert list((storage_dir := (app.config["STORAGE_DIR"] + "/tmp")) and os.listdir(storage_dir)) == []
    monkeypatch.setattr(storage, "temp_file", real_temp_file)
    assert _put(client, token, task_id, "frame_0001.png", frame_png(1, size=(32, 18))).status_code == 201


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_same_bytes_uploaded_at_once_are_stored_once_without_an_error(database, tmp_path, request, clock):
    """Six creators' submissions of one identical .blend at the same moment, over HTTP: all accepted, one
    blob row. A plain INSERT of the row lost the race on PostgreSQL (a unique-key error: 500)."""
    import json
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from ..conftest import LiveServer, create_token
    app = make_app(tmp_path, request.getfixturevalue("postgres_url") if database == "postgres" else None)
    tokens = [create_token(app, f"creator{n}@example.com") for n in range(6)]
    blend = b"BLENDER-v300" + b"\0" * 4096  # the same bytes for everyone
    spec = json.dumps({"type": "render", "name": "Same scene", "frame_start": 1, "frame_end": 1})
    server = LiveServer(app)
    barrier = threading.Barrier(len(tokens))

    def send(token):
        barrier.wait()
        return requests.post(f"{server.url}/api/v1/jobs", data={"spec": spec}, files={"blend": ("s.blend", blend)},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code
    try:
        with ThreadPoolExecutor(len(tokens)) as pool:
            statuses = list(pool.map(send, tokens))
    finally:
        server.stop()
    assert statuses == [201] * len(tokens), statuses
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(StoredFile)).scalar_one() == 1
        db.session.remove()
        db.engine.dispose()

"""A portal process's memory stays flat while thumbnails of a decompression bomb are asked for: a 285 KB
PNG claiming 9999x10000 pixels, and a 6000x6000 one under the pixel cap, served by a real server process."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import psutil
import requests

from webapp.extensions import db
from webapp.models import Job, JobType, Task, TaskOutput, TaskStatus
from webapp.services import storage, thumbnails

from ..conftest import create_user, make_app

RSS_GROWTH_BOUND = 80 * 2**20  # the stated bound: decoding either image in-process takes 300 MB or more


def zero_png(width: int, height: int) -> bytes:
    """A black RGB PNG, compressed row by row (never whole in memory): 9999x10000 is about 285 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


SERVE = """
import json, os, sys
from werkzeug.serving import run_simple
from webapp import create_app
app = create_app(json.loads(os.environ["PICTOR_TEST_CONFIG"]))
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"""


def test_thumbnails_of_a_bomb_keep_a_portal_process_flat(tmp_path):
    app = make_app(tmp_path)
    create_user(app)
    bomb, big = zero_png(9999, 10000), zero_png(6000, 6000)
    assert len(bomb) < 400_000
    with app.app_context():
        from webapp.services import accounts
        job = Job(owner_id=accounts.user_by_email("ada@example.com").id, name="bomb", type=JobType.RENDER,
                  spec={"type": "render"}, software="Blender")
        db.session.add(job)
        db.session.flush()
        task = Task(job_id=job.id, seq=0, type=JobType.RENDER, params={"frames": [1]}, input_names=[],
                    status=TaskStatus.COMPLETED)
        db.session.add(task)
        db.session.flush()
        for name, data in (("bomb.png", bomb), ("big.png", big)):
            stored = storage.put_bytes(data)
            db.session.flush()
            db.session.add(TaskOutput(task_id=task.id, name=name, sha256=stored.sha256, size=stored.size))
        db.session.commit()
        job_id, task_id = job.id, task.id
        db.session.remove()
        db.engine.dispose()

    config = {key: app.config[key] for key in ("SQLALCHEMY_DATABASE_URI", "STORAGE_DIR", "SECRET_KEY")}
    config.update(TESTING=True, WTF_CSRF_ENABLED=False, SCHEDULER_ENABLED=False, RATELIMIT_STORAGE_URI="memory://")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=dict(os.environ, PICTOR_TEST_CONFIG=json.dumps(config)))
    base = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        for _ in range(200):
            try:
                session.get(f"{base}/login", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert session.post(f"{base}/login", data={"email": "ada@example.com", "password": "correct horse battery"},
                            timeout=10).status_code in (200, 302)
        assert session.get(f"{base}/jobs/{job_id}", timeout=10).status_code == 200  # imports warmed up
        portal = psutil.Process(server.pid)
        baseline = portal.memory_info().rss
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], portal.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        answers = []
        for name in ("bomb.png", "big.png") * 3:
            shutil.rmtree(tmp_path / "storage" / "thumbs", ignore_errors=True)  # no cached thumbnail helps
            response = session.get(f"{base}/jobs/{job_id}/thumb/{task_id}/{name}", timeout=120)
            assert response.status_code == 200, name
            answers.append((name, response.headers["Content-Type"], len(response.content)))
        done.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(10)
    growth = peak[0] - baseline
    assert growth < RSS_GROWTH_BOUND, (f"portal RSS grew {growth / 2**20:.0f} MB "
                                       f"(from {baseline / 2**20:.0f} MB)", answers)
    # The bomb got the "too large" placeholder; the big one a real (black) thumbnail from the child.
    assert {(name, kind) for name, kind, _ in answers} == {("bomb.png", "image/png"), ("big.png", "image/jpeg")}


def test_the_pixel_cap_is_read_from_the_header_alone(ctx):
    bomb = storage.put_bytes(zero_png(9999, 10000))
    assert thumbnails._pixels(storage.path_for(bomb.sha256)) == 9999 * 10000
    assert thumbnails.thumbnail(bomb.sha256) == thumbnails.placeholder("too large")

"""Worker API turns (webapp/turns.py): one worker call of a process runs at a time, through its waits;
pages don't queue behind it, and a large upload gives its turn away while its client sends it."""

import hashlib
import io
import threading
import time

import pytest
from flask import request

from tests.conftest import make_app
from tests.webapp.dispatch_factories import auth, make_job, make_worker
from webapp import turns
from webapp.database import WriterQueue

API = "/api/v1"


def _calls_inside(app):
    """A hook holding each worker call at its start until `release` is set; counts calls inside at once."""
    state = {"inside": 0, "most": 0, "lock": threading.Lock(), "release": threading.Event()}

    @app.before_request
    def _hold():
        if request.path.startswith(f"{API}/worker/"):
            with state["lock"]:
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
            state["release"].wait(10)
            with state["lock"]:
                state["inside"] -= 1
    return state


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("slots, at_once", [(1, 1), (0, 4)])
def test_worker_calls_take_turns_while_a_page_goes_by(tmp_path, slots, at_once):
    """Four calls at once: with one turn a single one is inside while it waits (a wait keeps the turn),
    and the login page answers meanwhile; with turns off (0) all four are inside together."""
    app = make_app(tmp_path, WORKER_API_TURNS=slots)
    state = _calls_inside(app)
    answers = []
    callers = [threading.Thread(target=lambda: answers.append(
        app.test_client().post(f"{API}/worker/heartbeat", json={}).status_code)) for _ in range(4)]
    for caller in callers:
        caller.start()
    try:
        assert _wait_for(lambda: state["inside"] >= at_once)
        time.sleep(0.3)  # time for any other call to get in, if the turn let it
        assert state["inside"] == at_once
        assert app.test_client().get("/login").status_code == 200  # a page takes no turn
    finally:
        state["release"].set()
        for caller in callers:
            caller.join(10)
    assert answers == [401] * 4  # each call ran to its answer (no token) once its turn came
    assert state["most"] == at_once


class _SlowUpload(io.RawIOBase):
    """A client sending a large body that stalls after its first chunk until `go` is set."""

    def __init__(self, size: int, first_chunk: int = 1024):
        self.size, self.pos, self.first, self.go = size, 0, True, threading.Event()
        self.first_chunk = first_chunk

    def readable(self):
        return True

    def seekable(self):  # the test client measures the body so
        return True

    def seek(self, offset, whence=0):
        self.pos = offset if whence == 0 else self.size + offset
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, buffer):
        if not self.first:
            self.go.wait(10)
        n = min(len(buffer), self.size - self.pos, self.first_chunk if self.first else self.size)
        self.first = False
        buffer[:n] = b"\0" * n
        self.pos += n
        return n


def test_a_large_upload_gives_its_turn_away_while_its_client_is_slow(tmp_path):
    app = make_app(tmp_path, WORKER_API_TURNS=1)
    with app.app_context():
        _, uploader = make_worker(name="uploader")
        _, other = make_worker(name="other")
        make_job(tasks=1)
    client = app.test_client()
    task = client.post(f"{API}/worker/tasks/claim", headers=auth(uploader)).get_json()
    size = 4 * turns.BUFFERED_BODY
    body = _SlowUpload(size)
    answers = {}

    def upload():
        answers["put"] = app.test_client().put(
            f"{API}/worker/tasks/{task['id']}/outputs/frame_0001.png", input_stream=body,
            headers={**auth(uploader), "Content-Length": str(size), "Content-Type": "image/png",
                     "X-Content-SHA256": hashlib.sha256(b"\0" * size).hexdigest()}).status_code

    uploading = threading.Thread(target=upload)
    uploading.start()
    try:
        assert _wait_for(lambda: not body.first or "put" in answers), answers  # the upload has begun and waits for its client
        assert "put" not in answers
        # Another worker's call gets the turn meanwhile.
        assert client.get(f"{API}/worker/settings", headers=auth(other)).status_code == 200
        assert "put" not in answers
    finally:
        body.go.set()
        uploading.join(10)
    assert answers["put"] in (200, 201, 422)  # answered (a zero-filled "PNG" may be refused by its checks)


def test_a_small_body_sent_slowly_is_read_before_its_call_takes_a_turn(tmp_path):
    """A worker trickling a claim's or a report's few bytes must not hold its process's worker API."""
    app = make_app(tmp_path, WORKER_API_TURNS=1)
    with app.app_context():
        _, slow = make_worker(name="slow")
        _, other = make_worker(name="other")
    body = _SlowUpload(2048, first_chunk=100)
    answers = {}

    def heartbeat():
        answers["slow"] = app.test_client().post(
            f"{API}/worker/heartbeat", input_stream=body,
            headers={**auth(slow), "Content-Length": "2048", "Content-Type": "application/json"}).status_code

    sending = threading.Thread(target=heartbeat)
    sending.start()
    try:
        assert _wait_for(lambda: not body.first)  # its first bytes came; the rest are late
        assert app.test_client().get(f"{API}/worker/settings", headers=auth(other)).status_code == 200
        assert "slow" not in answers
    finally:
        body.go.set()
        sending.join(10)
    assert answers["slow"] == 400  # read whole once sent: 2,048 zero bytes are no JSON object


def test_a_read_holding_sqlites_writer_keeps_the_turn(tmp_path):
    """Giving the turn away there would let a call take it and wait for that writer, and the reader wait
    for the turn: neither would go on."""
    slots = turns.Turns(1)
    writers = WriterQueue(str(tmp_path / "db.sqlite3"))
    taken_meanwhile = []

    class Raw:
        def read(self, n=-1):  # could another call take the turn now?
            taken = slots._free.acquire(timeout=0.2)
            if taken:
                slots._free.release()
            taken_meanwhile.append(taken)
            return b""

    def reader(hold_writer: bool):
        slots.take()
        if hold_writer:
            writers.acquire()
        try:
            turns._GivingInput(Raw()).read(10)
        finally:
            if hold_writer:
                writers.release()
            slots.give()

    for hold_writer in (False, True):
        thread = threading.Thread(target=reader, args=(hold_writer,))
        thread.start()
        thread.join(5)
    assert taken_meanwhile == [True, False]


def test_a_call_waiting_long_for_the_writer_lets_the_processs_other_calls_run(tmp_path):
    """A claim that found work waits while another process holds the writer (its file lock, held here);
    past KEEP_TURN_S it gives its turn away, so a heartbeat of another worker is answered meanwhile."""
    import fcntl
    app = make_app(tmp_path, WORKER_API_TURNS=1)
    with app.app_context():
        _, claimer = make_worker(name="claimer")
        _, other = make_worker(name="other", job_types=["upscale"])
        make_job(tasks=1)
    answers = {}

    def claim():
        answers["claim"] = app.test_client().post(f"{API}/worker/tasks/claim", headers=auth(claimer)).status_code

    with open(f"{tmp_path / 'test.sqlite3'}-writers", "a+b") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        claiming = threading.Thread(target=claim)
        claiming.start()
        try:
            time.sleep(0.2)  # the claim is waiting for the writer by now
            idle = app.test_client().post(f"{API}/worker/tasks/claim", headers=auth(other))
            assert idle.status_code == 204  # answered while the first call waits
            assert "claim" not in answers
        finally:
            fcntl.flock(other_process, fcntl.LOCK_UN)
    claiming.join(10)
    assert answers["claim"] == 200


def test_a_call_queued_behind_its_own_processs_writer_gives_its_turn_at_once(tmp_path, monkeypatch):
    """The thread ahead (here a write without a turn, as a page's or a batch's is) may need the turn to
    go on once it has the writer: waiting behind it with the turn made the two wait on each other."""
    from webapp.database import begin_write_transaction
    from webapp.extensions import db
    monkeypatch.setattr(WriterQueue, "KEEP_TURN_S", 3600)  # only a wait for another process keeps the turn
    app = make_app(tmp_path, WORKER_API_TURNS=1)
    with app.app_context():
        _, claimer = make_worker(name="claimer")
        _, other = make_worker(name="other", job_types=["upscale"])
        make_job(tasks=1)
    holding, done, answers = threading.Event(), threading.Event(), {}

    def hold_writer():
        with app.app_context():
            begin_write_transaction(db.session)
            holding.set()
            done.wait(10)
            db.session.rollback()

    def claim():
        answers["claim"] = app.test_client().post(f"{API}/worker/tasks/claim", headers=auth(claimer)).status_code

    holder = threading.Thread(target=hold_writer)
    holder.start()
    assert holding.wait(5)
    claiming = threading.Thread(target=claim)
    claiming.start()
    try:
        time.sleep(0.2)  # the claim is queued behind the holder by now
        assert app.test_client().post(f"{API}/worker/tasks/claim", headers=auth(other)).status_code == 204
        assert "claim" not in answers
    finally:
        done.set()
        holder.join(10)
    claiming.join(10)
    assert answers["claim"] == 200

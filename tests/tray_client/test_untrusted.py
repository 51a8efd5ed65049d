"""A portal that sends what it should not, and local files that are damaged: the worker survives,
reports what it can, never fetches another host, and sets aside (never drops) what it cannot read.

The portal here is a real HTTP server on loopback, spoken to by the real PortalClient."""

import hashlib
import json
import logging
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tray_client import config
from tray_client.engine import Engine
from tray_client.runners.base import RunResult
from tray_client.untrusted import SafeFormatter, clamp_interval, printable, same_origin
from tests.tray_client.portal_fixture import WORKER, wait_for

BLEND = b"BLENDER-v304 a scene"
SHA = hashlib.sha256(BLEND).hexdigest()


class FakePortal:
    """Answers the worker API from scripted claim bodies; records what the worker sends."""

    def __init__(self, hello=None, heartbeat=None):
        self.claims: list[tuple[int, bytes]] = []  # (status, body) served in turn, then 204s
        self.files: dict[str, bytes] = {"scene.blend": BLEND}
        self.endless: set[str] = set()  # inputs served as a stream that never ends, no length
        self.hello = hello or {"worker_id": 1, "heartbeat_seconds": 15}
        self.heartbeat_answer = heartbeat or {"ok": True}
        self.requests: list[tuple[str, str]] = []
        self.fails: dict[int, dict] = {}
        self.completes: dict[int, dict] = {}
        self.heartbeats = 0
        self.streamed = 0  # bytes of endless inputs sent before the worker hung up
        portal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status, body=b"", ctype="application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, doc, status=200):
                self._send(status, json.dumps(doc).encode())

            def do_POST(self):
                portal.requests.append(("POST", self.path))
                body = self._body()
                path = self.path.removeprefix("/api/v1")
                if path == "/worker/hello":
                    return self._json(portal.hello)
                if path == "/worker/heartbeat":
                    portal.heartbeats += 1
                    return self._json(portal.heartbeat_answer)
                if path == "/worker/tasks/claim":
                    if portal.claims:
                        status, claim = portal.claims.pop(0)
                        return self._send(status, claim)
                    return self._send(204, headers=[("Retry-After", "1")])
                parts = path.split("/")  # /worker/tasks/<id>/<verb>
                if len(parts) == 5 and parts[2] == "tasks":
                    doc = json.loads(body or b"{}")
                    store = {"fail": portal.fails, "complete": portal.completes}.get(parts[4])
                    if store is not None:
                        store[int(parts[3])] = doc
                    return self._json({"status": "failed", "keep_running": True})
                return self._json({"error": "not_found", "message": "no such route"}, 404)

            def do_PUT(self):
                portal.requests.append(("PUT", self.path))
                self._body()
                self._json({"ok": True}, 201)

            def do_GET(self):
                portal.requests.append(("GET", self.path))
                name = self.path.rsplit("/", 1)[-1]
                if name in portal.endless:  # no Content-Length: only the worker can stop it
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        while portal.streamed < 400 * 2**20:
                            self.wfile.write(b"\0" * 65536)
                            portal.streamed += 65536
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if name in portal.files:
                    return self._send(200, portal.files[name], "application/octet-stream")
                return self._json({"error": "not_found", "message": "no such input"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claim(self, doc=None, raw: bytes | None = None, status=200):
        self.claims.append((status, raw if raw is not None else json.dumps(doc).encode()))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def portal():
    p = FakePortal()
    yield p
    p.close()


@pytest.fixture
def elsewhere():
    """Another host on the provider's network: the worker must never ask it anything."""
    p = FakePortal()
    yield p
    p.close()


class EchoRunner:
    """Job type "fake": writes one output from the scene it was given."""

    def __init__(self, settings=None):
        pass

    def validate(self, params):
        return params

    def run(self, params, inputs, workdir, on_progress=None, should_stop=None):
        out = workdir / "frame_0001.png"
        out.write_bytes(b"PNG of " + inputs["scene.blend"].read_bytes())
        return RunResult([out], "rendered", 0.1)


def probe(*_args, **_kwargs):
    return {"gpus": [], "cpu": {"brand": "Test CPU", "cores": 2}, "ram_mb": 2048, "os": "Linux",
            "hostname": "node", "disk_free_mb": 10000,
            "renderers": {"blender": {"version": "3.4.1"}, "realesrgan": {"version": "2.0.0"}}}


def make_cfg(tmp_path, url):
    cfg = config.WorkerConfig(path=tmp_path / "worker.json", data_dir=tmp_path / "data", server_url=url,
                              worker_id=1, token="pwk_secret")
    cfg.settings.update(auto_benchmark=False, auto_speedtest=False)
    cfg.save()
    return cfg


def make_engine(cfg):
    return Engine(cfg, probe=probe, runner_factory=lambda job_type, settings=None: EchoRunner(settings),
                  progress_interval=0.05, idle_backoff=(0.05, 0.2))


def good_task(task_id, **changes):
    return {"id": task_id, "job_id": 3, "type": "fake", "params": {},
            "inputs": [{"name": "scene.blend", "sha256": SHA, "size": len(BLEND)}], **changes}


def run_until(engine, predicate, what):
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        wait_for(predicate, timeout=20, interval=0.05, what=what)
        assert thread.is_alive(), "the engine stopped by itself"
    finally:
        engine.stop()
        thread.join(15)
    assert not thread.is_alive()
    return engine.exit_code


# --- the portal's answers ----------------------------------------------------------------------------

def test_crafted_claims_are_refused_and_the_daemon_goes_on(portal, elsewhere, tmp_path):
    off_origin = f"{elsewhere.url}/api/v1/worker/tasks/9/inputs/scene.blend"
    portal.claim(raw=b'{"id": "abc", "type": "fake", "inputs": []}')
    portal.claim(raw=b'{"id": 1180591620717411303424, "type": "fake", "inputs": []}')  # 2**70
    portal.claim(raw=b'{"id": true, "type": "fake", "inputs": []}')
    portal.claim(raw=b'{"id": 5, "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")  # deep JSON
    portal.claim(raw=b"[" * 5000 + b"]" * 5000)
    portal.claim(raw=b"not json at all")
    portal.claim(good_task(6, inputs="scene.blend"))
    portal.claim(good_task(7, inputs=[{"name": "../../etc/passwd", "sha256": SHA, "size": 1}]))
    portal.claim(good_task(8, inputs=[{"name": "scene.blend", "sha256": "zz", "size": -1}]))
    portal.claim(good_task(9, inputs=[{"name": "scene.blend", "sha256": SHA, "size": len(BLEND),
                                       "url": off_origin}]))
    portal.claim(good_task(10, inputs=[{"name": "scene.blend", "sha256": SHA, "size": 2**70}]))
    portal.claim(good_task(11, job_id="seven"))
    portal.claim(good_task(12))  # and a good one still runs after all that
    engine = make_engine(make_cfg(tmp_path, portal.url))
    code = run_until(engine, lambda: 12 in portal.completes, "the good task to complete")
    assert code == 0
    assert sorted(portal.fails) == [6, 7, 8, 9, 10, 11]
    for task_id, fail in portal.fails.items():
        assert fail["retryable"] is False and fail["kind"] == "bad_task", (task_id, fail)
    assert "outside the portal" in portal.fails[9]["reason"]
    assert elsewhere.requests == []  # never asked, so no token and no probe of that host
    assert engine.snapshot().tasks_completed == 1


def test_a_download_larger_than_announced_is_cut_off_while_streaming(portal, tmp_path):
    portal.endless.add("huge.blend")
    portal.claim(good_task(20, inputs=[{"name": "huge.blend", "sha256": SHA, "size": 10}]))
    cfg = make_cfg(tmp_path, portal.url)
    engine = make_engine(cfg)
    run_until(engine, lambda: 20 in portal.fails, "the oversize task to be reported")
    fail = portal.fails[20]
    assert fail["kind"] == "bad_input" and fail["retryable"] is False and "10 bytes" in fail["reason"]
    time.sleep(0.5)  # the server notices the hang-up
    assert portal.streamed < 32 * 2**20  # 400 MB on offer; socket buffers hold a few MB at most
    leftovers = [p for p in cfg.cache_dir.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.parametrize("seconds", [1e308, 0.001, -5, "often", None])
def test_absurd_heartbeat_intervals_are_clamped(tmp_path, seconds):
    portal = FakePortal(hello={"worker_id": 1, "heartbeat_seconds": seconds, "poll_seconds": seconds,
                               "lease_seconds": seconds},
                        heartbeat={"ok": True, "heartbeat_seconds": seconds})
    try:
        engine = make_engine(make_cfg(tmp_path, portal.url))
        started = time.monotonic()
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        wait_for(lambda: engine.snapshot().online, timeout=10, what="hello")
        time.sleep(2.5)
        assert 5 <= engine.heartbeat_s <= 300
        assert portal.heartbeats <= 1  # 0.001 s would have been thousands by now
        beat = [t for t in threading.enumerate() if t.name == "pictor-heartbeat"]
        assert beat and beat[0].is_alive()  # 1e308 s used to end it with an OverflowError
        engine.stop()
        thread.join(15)
        assert not thread.is_alive() and time.monotonic() - started < 20
    finally:
        portal.close()


def test_clamp_and_origin_rules():
    assert clamp_interval(1e308, 15) == 300 and clamp_interval(0.001, 15) == 5
    assert clamp_interval(float("nan"), 15) == 15 and clamp_interval(True, 15) == 15
    assert clamp_interval(30, 15) == 30
    assert same_origin("http://127.0.0.1:80/x", "http://127.0.0.1")
    assert same_origin("HTTPS://Portal.example/x", "https://portal.example:443")
    assert not same_origin("http://127.0.0.1:81/x", "http://127.0.0.1")
    assert not same_origin("https://portal.example/x", "http://portal.example")
    assert not same_origin("http://portal.example@evil.example/x", "http://portal.example")
    assert not same_origin("http://evil.example/x", "http://portal.example")
    assert not same_origin("file:///etc/passwd", "http://portal.example")


def test_control_characters_never_reach_the_console_raw():
    record = logging.LogRecord("tray_client", logging.WARNING, __file__, 1, "refused: %s", ("\x1b]0;pwned\x07\r",),
                               None)
    line = SafeFormatter("%(message)s").format(record)
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert line == "refused: \\x1b]0;pwned\\x07\\r"
    assert printable("tab\tand\nnewline\u202e") == "tab\\tand\\nnewline\\u202e"


def test_the_headless_daemon_escapes_what_the_portal_says(portal, tmp_path):
    portal.claims.append((400, json.dumps({"error": "bad", "message": "\x1b[2J\x1b]0;owned\x07 go"}).encode()))
    cfg = make_cfg(tmp_path, portal.url)
    done = subprocess.run([WORKER, "run", "--headless", "--once", "--config", str(cfg.path),
                           "--data-dir", str(cfg.data_dir)], capture_output=True, timeout=120)
    out = done.stdout + done.stderr
    assert b"claim refused" in out
    assert b"\x1b" not in out and b"\x07" not in out
    assert b"\\x1b[2J" in out


# --- damaged local files ---------------------------------------------------------------------------

def test_a_corrupt_outbox_is_set_aside_and_the_engine_starts(portal, tmp_path):
    cfg = make_cfg(tmp_path, portal.url)
    cfg.ensure_dirs()
    cfg.outbox_path.write_bytes(b"this is not an SQLite database" * 100)
    portal.claim(good_task(30))
    engine = make_engine(cfg)
    assert run_until(engine, lambda: 30 in portal.completes, "a task after the set-aside") == 0
    kept = list(cfg.data_dir.glob("outbox.sqlite3.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
    assert "outbox.sqlite3 was unreadable" in engine.snapshot().last_error
    assert str(kept[0]) in engine.snapshot().last_error


def test_an_unreadable_queued_update_is_set_aside_and_the_rest_delivered(portal, tmp_path):
    cfg = make_cfg(tmp_path, portal.url)
    cfg.ensure_dirs()
    from tray_client.outbox import Outbox
    outbox = Outbox(cfg.outbox_path)
    outbox.put_fail(41, "first", retryable=False, kind="render_error")
    outbox.put_fail(42, "second", retryable=False, kind="render_error")
    outbox.close()
    db = sqlite3.connect(cfg.outbox_path)
    db.execute("UPDATE updates SET payload = '{broken' WHERE task_id = 41")
    db.commit()
    db.close()
    engine = make_engine(cfg)
    run_until(engine, lambda: 42 in portal.fails, "the readable update to be delivered")
    assert 41 not in portal.fails
    kept = (cfg.data_dir / "outbox.sqlite3.set-aside.jsonl").read_text().splitlines()
    assert len(kept) == 1 and "{broken" in kept[0] and "not JSON" in kept[0]
    assert "task 41" in engine.snapshot().last_error


@pytest.mark.parametrize("text", ["{half a fil", '{"task_id": "abc"}', '{"task_id": 1180591620717411303424}',
                                  '"just a string"'])
def test_a_corrupt_task_file_is_set_aside_and_the_engine_starts(portal, tmp_path, text):
    cfg = make_cfg(tmp_path, portal.url)
    cfg.ensure_dirs()
    cfg.state_path.write_text(text)
    portal.claim(good_task(50))
    engine = make_engine(cfg)
    assert run_until(engine, lambda: 50 in portal.completes, "a task after the set-aside") == 0
    kept = list(cfg.data_dir.glob("state.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text() == text
    assert "state.json was unreadable" in engine.snapshot().last_error


def test_a_corrupt_config_is_set_aside_and_the_cli_says_so(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text('{"server_url": "http://127.0.0.1:9", "tok')
    done = subprocess.run([WORKER, "run", "--headless", "--once", "--config", str(path),
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "worker.json was unreadable" in done.stderr and "not paired" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(list(tmp_path.glob("worker.json.unreadable-*"))) == 1

"""The Worker App's HTTP client against a scripted local server: errors, retries, resume, uploads."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tray_client.api import PortalClient, PortalError, PortalUnreachable, retry_later
from tests.tray_client.portal_fixture import free_port

BODY = bytes(range(256)) * 1600  # 400 KiB


class Script:
    """What the server does; handlers append what they saw to `seen`."""

    def __init__(self):
        self.seen: list[dict] = []
        self.status_queue: list[int] = []
        self.drop_first_download = True


def make_server(script: Script):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, status, doc, headers=None):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            script.seen.append({"method": "GET", "path": self.path, "range": self.headers.get("Range"),
                                "auth": self.headers.get("Authorization")})
            if self.path.endswith("/inputs/scene.blend"):
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(BODY) - start))
                self.end_headers()
                if start == 0 and script.drop_first_download:
                    script.drop_first_download = False
                    self.wfile.write(BODY[:200000])  # then the connection breaks
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                self.wfile.write(BODY[start:])
                return
            self._json(404, {"error": "not_found", "message": "No such thing."})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            script.seen.append({"method": "POST", "path": self.path, "body": body})
            if self.path.endswith("/tasks/claim"):
                self.send_response(204)
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if script.status_queue:
                status = script.status_queue.pop(0)
                return self._json(status, {"error": "busy", "message": "try later"})
            if self.path.endswith("/progress"):
                return self._json(409, {"keep_running": False, "error": "task_not_running",
                                        "message": "This task was canceled."})
            self._json(400, {"error": "invalid_reason", "message": "'reason' must say why."})

        def do_PUT(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            script.seen.append({"method": "PUT", "path": self.path, "body": body,
                                "sha": self.headers.get("X-Content-SHA256")})
            if script.status_queue:
                return self._json(script.status_queue.pop(0), {"error": "busy", "message": "later"})
            self._json(201, {"name": self.path.rsplit("/", 1)[-1], "size": len(body)})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def portal():
    script = Script()
    server = make_server(script)
    client = PortalClient(f"http://127.0.0.1:{server.server_port}", "pwk_secret", backoff=0.01)
    yield client, script
    server.shutdown()


def test_errors_carry_the_portals_code_and_message(portal):
    client, _ = portal
    with pytest.raises(PortalError) as info:
        client.fail(1, "")
    assert (info.value.status, info.value.code, info.value.message) == (400, "invalid_reason", "'reason' must say why.")
    assert not retry_later(info.value)


def test_no_work_is_none_with_the_portals_retry_after(portal):
    client, _ = portal
    assert client.claim() == (None, 7.0)


def test_409_on_progress_means_stop(portal):
    client, _ = portal
    assert client.progress(5, 0.5, 10, "half") is False


def test_transient_errors_are_retried_for_idempotent_calls_only(portal):
    client, script = portal
    script.status_queue = [503, 503]
    with pytest.raises(PortalError):
        client.fail(1, "x")  # third attempt reaches the 400 handler
    assert sum(1 for s in script.seen if s["path"].endswith("/fail")) == 3
    script.seen.clear()
    script.status_queue = [503]
    with pytest.raises(PortalError) as info:
        client.mining_report({})  # not idempotent: one try
    assert info.value.status == 503 and retry_later(info.value) and len(script.seen) == 1


def test_a_broken_download_resumes_where_it_stopped(portal, tmp_path):
    client, script = portal
    dest = tmp_path / "scene.blend"
    size = client.download(client.input_url(3, "scene.blend"), dest)
    assert size == len(BODY) and dest.read_bytes() == BODY
    ranges = [s["range"] for s in script.seen if s["method"] == "GET"]
    assert ranges[0] is None and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"


def test_uploads_stream_the_file_with_its_sha256_and_resend_it_whole_after_a_503(portal, tmp_path):
    client, script = portal
    path = tmp_path / "frame_0001.png"
    path.write_bytes(BODY)
    script.status_queue = [503]
    client.upload_output(3, "frame_0001.png", path)
    puts = [s for s in script.seen if s["method"] == "PUT"]
    assert len(puts) == 2 and all(p["body"] == BODY for p in puts)
    assert puts[-1]["sha"] == hashlib.sha256(BODY).hexdigest()


def test_a_full_portal_disk_keeps_the_upload_for_later(portal, tmp_path):
    """507 Insufficient Storage: tried again like any overload, then left for the outbox to send later
    (retry_later), never treated as the portal refusing the result."""
    client, script = portal
    path = tmp_path / "frame_0001.png"
    path.write_bytes(BODY)
    script.status_queue = [507, 507, 507]
    with pytest.raises(PortalError) as info:
        client.upload_output(3, "frame_0001.png", path)
    assert info.value.status == 507 and retry_later(info.value)
    assert sum(1 for s in script.seen if s["method"] == "PUT") == 3
    client.upload_output(3, "frame_0001.png", path)  # space again: the same upload goes through


def test_nothing_is_fetched_from_another_host_and_the_token_stays_home(portal, tmp_path):
    client, script = portal
    other = make_server(script)
    seen = len(script.seen)
    try:
        with pytest.raises(PortalError, match="outside"):
            client.download(f"http://localhost:{other.server_port}/signed/inputs/scene.blend", tmp_path / "x")
    finally:
        other.shutdown()
    assert len(script.seen) == seen  # not even asked
    client.download(client.input_url(1, "scene.blend"), tmp_path / "y")
    assert script.seen[-1]["auth"] == "Bearer pwk_secret"


def test_a_stopped_portal_is_unreachable_not_an_error():
    client = PortalClient(f"http://127.0.0.1:{free_port()}", "t", attempts=2, backoff=0.01)
    with pytest.raises(PortalUnreachable, match="connection refused"):
        client.heartbeat({"state": "idle"})

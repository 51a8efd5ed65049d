"""The real portal as a subprocess (pictor-portal serve) on a free port with its own SQLite database
and storage, plus the creator/provider API calls the Worker App tests need."""

from __future__ import annotations

import copy
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
PORTAL = str(BIN / "pictor-portal")
WORKER = str(BIN / "pictor-worker")
EMAIL = "provider@example.com"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Portal:
    """One portal: start() / stop() keep the same port and database, so a restart is an outage."""

    def __init__(self, root: Path, scheduler: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PICTOR_DATABASE_URL": f"sqlite:///{self.root / 'portal.sqlite3'}",
            "PICTOR_STORAGE_DIR": str(self.root / "storage"),
            "PICTOR_SECRET_KEY": secrets.token_hex(16),
            "PICTOR_SCHEDULER": "1" if scheduler else "0",
            "PICTOR_SERVER_URL": self.url,
        }
        self.proc: subprocess.Popen | None = None
        self.log = open(self.root / "portal.log", "ab")
        self._cli("init-db")
        self._cli("create-user", EMAIL, "--password", PASSWORD)
        self.token = self._cli("create-token", EMAIL).strip().splitlines()[-1]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def _cli(self, *args: str) -> str:
        done = subprocess.run([PORTAL, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"pictor-portal {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> "Portal":
        self.proc = subprocess.Popen([PORTAL, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", "1"], env=self.env, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the portal exited: see {self.root / 'portal.log'}")
            try:
                if requests.get(f"{self.url}/api/v1/openapi.json", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the portal did not start within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()

    def other_account(self, email: str) -> "Portal":
        """This portal as seen by another (new) account: its own API token, the same server."""
        self._cli("create-user", email, "--password", PASSWORD)
        other = copy.copy(self)
        other.token = self._cli("create-token", email).strip().splitlines()[-1]
        other.session = requests.Session()
        other.session.headers["Authorization"] = f"Bearer {other.token}"
        return other

    # --- provider and creator API ------------------------------------------------------------

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201), **kwargs) -> Any:
        response = self.session.request(method, f"{self.url}/api/v1{path}", timeout=30, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def create_worker(self, name: str = "test-node") -> dict:
        return self.api("POST", "/workers", json={"name": name})

    def submit_render(self, blend: Path, frames: tuple[int, int], samples: int = 16, **spec: Any) -> dict:
        body = {"type": "render", "name": spec.pop("name", "test render"), "frame_start": frames[0],
                "frame_end": frames[1], "chunk": 1, "engine": "CYCLES", "samples": samples,
                "resolution_percent": 100, "format": "PNG", **spec}
        with open(blend, "rb") as f:
            return self.api("POST", "/jobs", data={"spec": json.dumps(body)},
                            files={"blend": (blend.name, f, "application/octet-stream")})

    def submit_upscale(self, images: list[Path], scale: int = 2, model: str = "realesr-animevideov3") -> dict:
        body = {"type": "upscale", "name": "test upscale", "scale": scale, "model": model}
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images]
        return self.api("POST", "/jobs", data={"spec": json.dumps(body)}, files=files)

    def job(self, job_id: int) -> dict:
        return self.api("GET", f"/jobs/{job_id}")

    def worker_tasks(self, worker_id: int) -> dict:
        return self.api("GET", f"/workers/{worker_id}/tasks", params={"per_page": 100})

    def download_output(self, job_id: int, task_id: int, name: str) -> bytes:
        response = self.session.get(f"{self.url}/api/v1/jobs/{job_id}/tasks/{task_id}/outputs/{name}", timeout=30)
        assert response.status_code == 200, response.text[:300]
        return response.content

    def wait_for(self, predicate, timeout: float = 60, interval: float = 0.3, what: str = "condition"):
        return wait_for(predicate, timeout, interval, what)


def wait_for(predicate, timeout: float = 60, interval: float = 0.3, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned), or fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pair_worker(portal: Portal, home: Path, name: str = "test-node") -> tuple[dict, Path, Path]:
    """Create a worker in the portal and pair it with the real CLI; returns (worker, config, data dir)."""
    worker = portal.create_worker(name)
    config, data = home / "worker.json", home / "data"
    done = subprocess.run([WORKER, "pair", worker["pairing_code"], "--server", portal.url,
                           "--config", str(config), "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(config.read_text())
    doc["settings"] = {"auto_benchmark": False, "auto_speedtest": False}  # keep tests short
    config.write_text(json.dumps(doc))
    os.chmod(config, 0o600)
    return worker, config, data


class FakeClient:
    """A PortalClient stand-in for fast engine and outbox tests: records every call in order, serves
    tasks from a list, and can play an unreachable portal or a canceled task."""

    def __init__(self, tasks=(), files: dict[str, bytes] | None = None):
        from tray_client.api import PortalUnreachable
        self._unreachable_exc = PortalUnreachable
        self.tasks = list(tasks)
        self.files = dict(files or {})  # url -> bytes
        self.calls: list[tuple] = []
        self.unreachable = False
        self.keep_running = True
        self.retry_after: float | None = 5.0
        self.refuse: dict[str, Exception] = {}  # method name -> exception to raise
        self.uploaded: dict[tuple[int, str], bytes] = {}
        self.server_url = "http://127.0.0.1:9"

    def _call(self, name: str, *args):
        if self.unreachable:
            raise self._unreachable_exc("cannot reach the portal: connection refused")
        if name in self.refuse:
            raise self.refuse[name]
        self.calls.append((name, *args))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def hello(self, report):
        self._call("hello", report)
        return {"worker_id": 1, "heartbeat_seconds": 15, "bid": "0.500000", "average_bid": "0.450000",
                "bench_score": 1000, "latest_app_version": None}

    def heartbeat(self, report):
        self._call("heartbeat", report)
        return {"ok": True}

    def claim(self):
        self._call("claim")
        if self.tasks:
            return self.tasks.pop(0), None
        return None, self.retry_after

    def input_url(self, task_id, name):
        return f"{self.server_url}/api/v1/worker/tasks/{task_id}/inputs/{name}"

    def download(self, url, dest, on_bytes=None, max_bytes=None):
        self._call("download", url)
        data = self.files[url.rsplit("/", 1)[-1]]
        if max_bytes is not None and len(data) > max_bytes:
            from tray_client.api import InputTooLarge
            raise InputTooLarge(url, max_bytes)
        dest.write_bytes(data)
        return len(data)

    def progress(self, task_id, fraction, eta_s, message):
        self._call("progress", task_id, fraction)
        return self.keep_running

    def upload_output(self, task_id, name, path, sha256=None):
        self._call("upload", task_id, name)
        self.uploaded[(task_id, name)] = path.read_bytes()
        return {"name": name}

    def complete(self, task_id, outputs, compute_seconds):
        self._call("complete", task_id, outputs)
        return {"reward": "0.001000"}

    def fail(self, task_id, reason, log_tail="", retryable=True, kind=None):
        self._call("fail", task_id, reason, retryable, kind)
        return {"status": "queued" if retryable else "failed"}

    def hand_back(self, task_id, reason):
        self._call("hand_back", task_id, reason)
        return {"status": "queued"}

    def update_settings(self, changes):
        self._call("update_settings", changes)
        return {"bid": changes.get("bid"), "average_bid": "0.450000"}

    def benchmark(self, score, details):
        self._call("benchmark", score)
        return {"bench_score": score}

"""What the network benches share: a portal started as `pictor-portal serve` starts it, a bare Flask app
under the same server settings (the stack's ceiling), workers paired through the service layer, and
wrk driving Lua scripts (bench/wrk/) that write each request's step and latency for us to summarise.

Not a test helper: benches print ratios measured side by side in one run (these machines are noisy).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WRK_DIR = ROOT / "bench" / "wrk"
VENV_BIN = Path(sys.executable).parent
PASSWORD = "bench-password-123"
WORKERS_PER_ACCOUNT = 100  # a network of many providers, each under the portal's hourly limits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers: that is all we wait for
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Site:
    """A database and storage folder for one bench run, and the environment the portal reads them from."""
    folder: Path
    database_url: str | None = None  # None: SQLite in `folder`
    env: dict = field(default_factory=dict)

    def __post_init__(self):
        url = self.database_url or f"sqlite:///{self.folder / 'pictor.sqlite3'}"
        self.env = dict(os.environ, PICTOR_DATABASE_URL=url, PICTOR_STORAGE_DIR=str(self.folder / "storage"),
                        PICTOR_SECRET_KEY="bench-secret", PYTHONUNBUFFERED="1")

    @contextlib.contextmanager
    def app(self):
        """The portal app in this process, for seeding; limits raised only here, never in the server."""
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            from webapp import create_app
            app = create_app({"SECRET_KEY": "bench-secret", "SQLALCHEMY_DATABASE_URI": self.env["PICTOR_DATABASE_URL"]
                              .replace("postgresql://", "postgresql+psycopg://"),
                              "STORAGE_DIR": self.env["PICTOR_STORAGE_DIR"], "SCHEDULER_ENABLED": False})
            with app.app_context():
                from webapp.database import upgrade_schema
                upgrade_schema()
                yield app
        finally:
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def postgres_site(folder: Path):
    """A throwaway PostgreSQL database on 127.0.0.1 (as the tests use)."""
    import psycopg
    name = f"pictor_bench_{os.getpid()}"
    admin = os.environ.get("PICTOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Site(folder, admin.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def serve_portal(site: Site, processes: int = 2):
    """`pictor-portal serve` on a free port (gunicorn, `processes` × 8 threads); yields its base URL."""
    port = free_port()
    log = open(site.folder / f"portal-{port}.log", "wb")
    # `pictor-portal serve`, with this checkout's code first on the path (a bench may run an older checkout).
    serve = f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.argv[0] = 'pictor-portal'; from webapp.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", serve, "serve", "--port", str(port), "--workers", str(processes)],
                            env=site.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/login")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


BARE_APP = '''
from flask import Flask, jsonify
app = Flask(__name__)

@app.post("/ping")
def ping():
    return jsonify({"ok": True})
'''


@contextlib.contextmanager
def serve_bare(folder: Path, processes: int = 2):
    """A bare Flask JSON endpoint under the same gunicorn settings as `pictor-portal serve`."""
    (folder / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "--chdir", str(folder), "-b", f"127.0.0.1:{port}",
                             "-w", str(processes), "--threads", "8", "-k", "gthread", "--log-level", "warning",
                             "bare_app:app"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


# -- seeding ---------------------------------------------------------------------------------------------

def pair_workers(n: int, job_types=("render",), first_account: int = 0) -> list[str]:
    """`n` workers paired through the service layer (create, pairing code, pair, hello), in accounts of
    WORKERS_PER_ACCOUNT; returns their tokens. Call inside Site.app()."""
    from flask import current_app
    from webapp.services import accounts, presence, workers
    current_app.config.update(WORKERS_CREATED_PER_HOUR=10**9, WORKERS_PAIRED_PER_HOUR=10**9)
    tokens = []
    owner = None
    for i in range(n):
        if i % WORKERS_PER_ACCOUNT == 0:
            owner = accounts.sign_up(f"provider{first_account + i // WORKERS_PER_ACCOUNT}@bench.example", PASSWORD)
        worker, code, _ = workers.create_worker(owner, f"node-{first_account}-{i}")
        worker, token = workers.pair(code)
        presence.record_hello(worker, {"app_version": "1.0.0", "hostname": f"node{i}", "os": "Linux",
                                       "cpu": "bench", "ram_mb": 32768,
                                       "capabilities": {"job_types": list(job_types), "gpu": False}}, "127.0.0.1")
        tokens.append(token)
    return tokens


def creator():
    from webapp.services import accounts
    return accounts.sign_up(f"creator{time.monotonic_ns()}@bench.example", PASSWORD)


FAKE_BLEND = b"BLENDER-v300" + b"\0" * 500  # a header the portal accepts; no scene it can read, so any size goes


def submit_render(owner, frames: int, name: str = "bench", budget: str | None = None) -> int:
    """A render job of `frames` one-frame tasks (with a spend limit: `budget` USD, held from the owner's
    credit); returns its id."""
    from webapp.services import jobs
    spec = {"type": "render", "name": name, "frame_start": 1, "frame_end": frames, "chunk": 1,
            "engine": "CYCLES", "samples": 1, "resolution_percent": 100, "format": "PNG",
            **({"budget": budget} if budget else {})}
    return jobs.submit_render_job(owner, spec, io.BytesIO(FAKE_BLEND + name.encode()), "bench.blend").id


def frame_png(path: Path) -> tuple[str, int]:
    """A small valid PNG the workers upload as every frame; returns its SHA-256 and size."""
    from PIL import Image
    Image.new("RGB", (64, 48), (120, 80, 40)).save(path, "PNG")
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


# -- wrk -----------------------------------------------------------------------------------------------

@dataclass
class Load:
    requests_per_s: float
    by_step: dict[str, list[float]]  # step -> latencies in ms
    statuses: dict[str, int]
    seconds: float
    errors: str

    def count(self, step: str) -> int:
        return len(self.by_step.get(step, ()))

    def rate(self, step: str) -> float:
        return self.count(step) / self.seconds

    def all_latencies(self, steps=None) -> list[float]:
        return [v for s, vs in self.by_step.items() if steps is None or s in steps for v in vs]


def run_wrk(script: str, url: str, *, connections: int, seconds: float, env: dict, folder: Path,
            threads: int | None = None) -> Load:
    """Run bench/wrk/<script> against `url`; each wrk thread writes '<step> <status> <ms>' lines to a file
    of its own (WRK_OUT_<thread>), which we read back: per-step latency from the client's side."""
    out = Path(tempfile.mkdtemp(prefix="wrk-", dir=folder))
    threads = threads or connections
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(WRK_DIR / script), url]
    started = time.monotonic()
    env = dict(os.environ, WRK_OUT=str(out), WRK_DIR=str(WRK_DIR), WRK_THREADS=str(threads), **env)
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=seconds + 60)
    took = time.monotonic() - started
    by_step: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    for path in out.glob("thread-*"):
        for line in path.read_text().splitlines():
            step, status, ms = line.split()
            by_step.setdefault(step, []).append(float(ms))
            key = f"{step}:{status}"
            statuses[key] = statuses.get(key, 0) + 1
    shutil.rmtree(out, ignore_errors=True)
    match = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    errors = "\n".join(line for line in done.stdout.splitlines() if "Socket errors" in line or "Non-2xx" in line)
    return Load(float(match.group(1)), by_step, statuses, min(seconds, took), errors)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50):6.1f} ms  p99 {pct(values, 99):7.1f} ms" if values else "(none)"


def ceiling(folder: Path, processes: int, connections: int, seconds: float) -> float:
    """Requests/s of the bare Flask JSON endpoint under the same server settings."""
    with serve_bare(folder, processes) as url:
        run_wrk("ping.lua", url, connections=connections, seconds=1, env={}, folder=folder)  # warm
        return run_wrk("ping.lua", url, connections=connections, seconds=seconds, env={}, folder=folder).requests_per_s


def write_tokens(folder: Path, tokens: list[str], name: str = "tokens.txt") -> Path:
    path = folder / name
    path.write_text("\n".join(tokens) + "\n")
    return path


def median(values) -> float:
    return statistics.median(values) if values else float("nan")

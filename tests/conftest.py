"""Shared fixtures: an app on a throwaway database (SQLite, or PostgreSQL on 127.0.0.1), clients, users."""

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.serving import make_server

from webapp import create_app
from webapp.clock import freeze
from webapp.extensions import db

POSTGRES_ADMIN_URL = os.environ.get("PICTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_SYSTEM_DEPS = os.environ.get("PICTOR_REQUIRE_SYSTEM_DEPS") == "1"
T0 = datetime(2024, 5, 10, 12, 0, 0, tzinfo=timezone.utc)  # where the `clock` fixture starts


def missing(reason: str):
    """Skip on a laptop without the system package; fail in CI, where .ci/run installs it."""
    if REQUIRE_SYSTEM_DEPS:
        pytest.fail(f"{reason} (PICTOR_REQUIRE_SYSTEM_DEPS=1: CI must provide it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """A database of our own on the local PostgreSQL server, dropped after the run."""
    try:
        import psycopg
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # server absent on a laptop
        missing(f"PostgreSQL not available at {POSTGRES_ADMIN_URL}: {exc}")
    name = f"pictor_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield re.sub(r"/[^/]*$", f"/{name}", POSTGRES_ADMIN_URL)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def make_app(tmp_path, database_url=None, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": secrets.token_hex(16),
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "SERVER_URL": None,
        "SCHEDULER_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "WTF_CSRF_ENABLED": False,
        # Each heartbeat written at once, for the test to read back; test_heartbeat_batch tests the batches.
        "HEARTBEAT_BATCH_SECONDS": 0,
        "PROGRESS_BATCH_SECONDS": 0,  # likewise for progress reports (test_heartbeat_batch tests that batch too)
        # Race tests hold one call mid-way while another runs in the same process; test_turns tests turns.
        "WORKER_API_TURNS": 0,
    }
    config.update(overrides)
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + config["SQLALCHEMY_DATABASE_URI"][13:]
    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    freeze(None)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_app(request, tmp_path):
    """The same test on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    app = make_app(tmp_path, url)
    yield app
    freeze(None)
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


class FrozenClock:
    """The portal's clock (webapp.clock) pinned to `now`; a test moves it with set() or advance()."""

    def __init__(self, at: datetime = T0):
        self.set(at)

    def set(self, at: datetime) -> datetime:
        self.now = at
        freeze(at)
        return at

    def advance(self, **delta) -> datetime:
        """Move on by timedelta(**delta), e.g. advance(seconds=30)."""
        return self.set(self.now + timedelta(**delta))


@pytest.fixture
def clock():
    """Time stands still at T0 until the test moves it; released at teardown."""
    yield FrozenClock()
    freeze(None)


class Auth:
    """Sign up / log in through the real forms."""

    def __init__(self, client):
        self.client = client

    def signup(self, email="ada@example.com", password="correct horse battery"):
        return self.client.post("/signup", data={"email": email, "password": password, "confirm": password})

    def login(self, email="ada@example.com", password="correct horse battery"):
        return self.client.post("/login", data={"email": email, "password": password})

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture
def auth(client):
    return Auth(client)


def create_user(app, email="ada@example.com", password="correct horse battery"):
    from webapp.services import accounts
    with app.app_context():
        user = accounts.sign_up(email, password)
        return user.id


def create_token(app, email="ada@example.com", password="correct horse battery") -> str:
    """A new user (if needed) and a personal API token for them."""
    from webapp.services import accounts, NotFound
    with app.app_context():
        try:
            user = accounts.user_by_email(email)
        except NotFound:
            user = accounts.sign_up(email, password)
        return accounts.create_api_token(user, "tests")[1]


class LiveServer:
    """The app served over real HTTP on a free loopback port, in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    app.config["SERVER_URL"] = server.url
    yield server
    server.stop()


_SERVE = """
import json, os, sys
from werkzeug.serving import run_simple
from webapp import create_app
app = create_app(json.loads(os.environ["PICTOR_TEST_CONFIG"]))
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"""


@contextlib.contextmanager
def portal_processes(config: dict, count: int = 2):
    """`count` portal processes serving one app config (one database): yields their base URLs once each
    answers, stops them after. What a rule shared between processes is tested against."""
    import requests

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    env = dict(os.environ, PICTOR_TEST_CONFIG=json.dumps(config))
    ports = [free_port() for _ in range(count)]
    servers = [subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for port in ports]
    try:
        for port in ports:
            for _ in range(150):
                try:
                    requests.get(f"http://127.0.0.1:{port}/login", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)

"""Web hardening: security headers and a CSP on every page, POST-only logout that ends the session on
the server, Secure cookies over https, no readable secret in the cookie, rate limits shared by processes."""

import base64
import logging
import re
import uuid
import zlib

import pytest
import requests

from ..conftest import create_user, make_app, missing, portal_processes

PAGES = ["/workers", "/workers/new", "/jobs", "/jobs/new", "/account", "/download"]


def _cookie_payload(client) -> str:
    """What anyone holding the session cookie can read without the key (it is signed, not encrypted)."""
    cookie = client.get_cookie("session").value
    data = cookie.split(".")[1] if cookie.startswith(".") else cookie.split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if cookie.startswith(".") else raw).decode()


def test_pages_send_security_headers_and_a_strict_csp(app, client, auth):
    create_user(app)
    pages = [(app.test_client(), "/login"), (app.test_client(), "/signup")]
    auth.login()
    for page_client, path in [*pages, *((client, page) for page in PAGES)]:
        response = page_client.get(path)
        assert response.status_code == 200, path
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
        # No inline script: each <script> loads a file from our own static/.
        for tag in re.findall(r"<script[^>]*>", response.get_data(as_text=True)):
            assert 'src="/static/' in tag, (path, tag)
    assert "X-Frame-Options" in client.get("/api/v1/openapi.json").headers


def test_logout_is_post_only(app, client, auth):
    create_user(app)
    auth.login()
    assert client.get("/logout").status_code == 405
    assert client.get("/account").status_code == 200  # still logged in


def test_a_session_cookie_copied_before_logout_stops_working(app, client, auth):
    create_user(app)
    auth.login()
    copied = client.get_cookie("session").value
    assert client.get("/account").status_code == 200
    auth.logout()
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/account").status_code == 302  # back to the login page
    auth.login()  # logging in again works, with a new session
    assert client.get("/account").status_code == 200


def test_cookies_are_secure_when_configured(tmp_path):
    app = make_app(tmp_path, SESSION_COOKIE_SECURE=True)
    app.config["SESSION_COOKIE_SECURE"] = True
    client = app.test_client()
    create_user(app)
    response = client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"},
                           base_url="https://localhost")
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies if c.startswith(("session=", "remember_token=")))
    assert "Strict-Transport-Security" in client.get("/login", base_url="https://localhost").headers


def test_secure_cookies_follow_an_https_server_url(monkeypatch, tmp_path):
    from webapp import config
    monkeypatch.setenv("PICTOR_SERVER_URL", "https://portal.example.com")
    monkeypatch.delenv("PICTOR_SECURE_COOKIES", raising=False)
    assert config.from_environment(tmp_path)["SESSION_COOKIE_SECURE"] is True
    monkeypatch.setenv("PICTOR_SECURE_COOKIES", "0")
    assert config.from_environment(tmp_path)["SESSION_COOKIE_SECURE"] is False
    monkeypatch.delenv("PICTOR_SERVER_URL")
    monkeypatch.delenv("PICTOR_SECURE_COOKIES")
    assert config.from_environment(tmp_path)["SESSION_COOKIE_SECURE"] is False


def test_the_pairing_code_is_not_readable_from_the_cookie(app, client, auth):
    create_user(app)
    auth.login()
    response = client.post("/workers/new", data={"name": "rig"})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    code = re.search(r'<code id="pairing-code">([A-Z0-9-]+)</code>', page).group(1)
    payload = _cookie_payload(client)
    assert "pairing_codes" in payload
    assert code not in payload and code.replace("-", "") not in payload
    # Another key can't open it: the page just shows no live code.
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    app.secret_key = "another key"
    assert code not in other.get(response.headers["Location"]).get_data(as_text=True)


def test_start_up_warns_when_rate_limits_are_per_process(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="webapp"):
        make_app(tmp_path, RATELIMIT_STORAGE_URI="memory://")
    assert "counted per process" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="webapp"):
        make_app(tmp_path, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    assert "unreachable" in caplog.text


def test_rate_limits_default_to_shared_storage(monkeypatch, tmp_path):
    from webapp import config
    monkeypatch.delenv("PICTOR_RATELIMIT_STORAGE", raising=False)
    assert config.from_environment(tmp_path)["RATELIMIT_STORAGE_URI"].startswith("redis://")


def test_two_portal_processes_share_the_pair_limit(tmp_path):
    import redis
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except Exception as exc:
        missing(f"Redis not available on 127.0.0.1:6379: {exc}")
    make_app(tmp_path)  # the schema, in the database both processes use
    config = {"TESTING": True, "SECRET_KEY": "k", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.sqlite3'}",
              "STORAGE_DIR": str(tmp_path / "storage"), "SCHEDULER_ENABLED": False,
              "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0", "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex,
              "PAIR_RATE_LIMIT": "10 per minute"}
    with portal_processes(config) as urls:
        statuses = [requests.post(f"{urls[i % 2]}/api/v1/pair", json={"code": "ABCD-EFGH"},
                                  timeout=5).status_code for i in range(30)]
    # 10 per minute in all, not 10 in each process: the 11th call and every later one is refused.
    assert statuses.count(429) == 20, statuses
    assert all(status < 500 for status in statuses)

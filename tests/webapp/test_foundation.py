"""The portal foundation: factory and config, schema from migrations, accounts, tokens, protections."""

import os
import re
import stat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from tests.conftest import create_token, create_user
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiToken, User


def test_config_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PICTOR_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    monkeypatch.setenv("PICTOR_STORAGE_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("PICTOR_SECRET_KEY", "from-env")
    app = create_app({"TESTING": True, "SCHEDULER_ENABLED": False})
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("env.sqlite3")
    assert app.config["STORAGE_DIR"] == str(tmp_path / "blobs")
    assert app.config["SECRET_KEY"] == "from-env"


def test_secret_key_generated_once_and_private(tmp_path, monkeypatch):
    from webapp.config import from_environment
    monkeypatch.delenv("PICTOR_SECRET_KEY", raising=False)
    first = from_environment(tmp_path)["SECRET_KEY"]
    assert len(first) >= 64
    assert from_environment(tmp_path)["SECRET_KEY"] == first
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600


def test_postgres_url_uses_psycopg3(tmp_path, monkeypatch):
    from webapp.config import from_environment
    monkeypatch.setenv("PICTOR_DATABASE_URL", "postgresql://u@h/db")
    assert from_environment(tmp_path)["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def _migrated_app(tmp_path, url=None):
    config = {"TESTING": True, "SECRET_KEY": "x", "SCHEDULER_ENABLED": False,
              "SQLALCHEMY_DATABASE_URI": url or f"sqlite:///{tmp_path / 'migrated.sqlite3'}"}
    return create_app(config)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrations_match_models(request, tmp_path, backend):
    """The Alembic migrations build exactly the schema the models describe: no drift."""
    url = None
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://")
    app = _migrated_app(tmp_path, url)
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade()
        upgrade()  # running it twice is safe
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        assert diff == []
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        db.engine.dispose()


def test_sign_up_logs_in_and_lands_on_workers(client, auth):
    response = auth.signup()
    assert response.status_code == 302 and response.headers["Location"].endswith("/workers")
    assert client.get("/account").status_code == 200


def test_log_in_and_out(client, auth, app):
    create_user(app)
    assert auth.login().status_code == 302
    assert client.get("/account").status_code == 200
    auth.logout()
    response = client.get("/account")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_wrong_password_is_refused(client, auth, app):
    create_user(app)
    response = auth.login(password="not the password at all")
    assert response.status_code == 400
    assert b"Wrong email or password" in response.data
    assert client.get("/account").status_code == 302


def test_duplicate_email_is_case_insensitive(client, auth, app):
    create_user(app, email="ada@example.com")
    response = auth.signup(email="ADA@Example.COM")
    assert response.status_code == 400
    assert b"exists already" in response.data
    with app.app_context():
        assert db.session.query(User).count() == 1


@pytest.mark.parametrize("email,password,message", [
    ("not-an-email", "long enough password", b"not valid"),
    ("bob@example.com", "short", b"at least 10 characters"),
])
def test_sign_up_rejects_bad_input(client, auth, app, email, password, message):
    response = auth.signup(email=email, password=password)
    assert response.status_code == 400 and message in response.data
    with app.app_context():
        assert db.session.query(User).count() == 0


def test_password_is_stored_with_argon2(app):
    create_user(app)
    with app.app_context():
        assert db.session.query(User).one().password_hash.startswith("$argon2id$")


def test_forms_need_a_csrf_token(tmp_path):
    from tests.conftest import make_app
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    response = client.post("/signup", data={"email": "a@example.com", "password": "x" * 12, "confirm": "x" * 12})
    assert response.status_code == 400 and b"security token" in response.data
    page = client.get("/signup").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/signup", data={"email": "a@example.com", "password": "x" * 12,
                                            "confirm": "x" * 12, "csrf_token": token})
    assert response.status_code == 302


def test_login_is_rate_limited(tmp_path):
    from tests.conftest import make_app
    app = make_app(tmp_path, LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    codes = [client.post("/login", data={"email": "x@example.com", "password": "wrong password"}).status_code
             for _ in range(5)]
    assert codes[:3] == [400, 400, 400] and codes[3:] == [429, 429]


def test_session_cookie_is_httponly_and_samesite(client, auth):
    response = auth.signup()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_api_token_create_use_revoke(client, auth, app):
    auth.signup()
    page = client.post("/account/tokens", data={"name": "render pipeline"}).get_data(as_text=True)
    token = re.search(r'id="new-token">([^<]+)<', page).group(1)
    with app.app_context():
        row = db.session.query(ApiToken).one()
        assert token not in (row.token_hash, row.prefix) and len(token) >= 43
    headers = {"Authorization": f"Bearer {token}"}
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.json["email"] == "ada@example.com"
    assert token not in client.get("/account").get_data(as_text=True)  # shown once
    client.post(f"/account/tokens/{row.id}/revoke")
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401 and response.json["error"] == "unauthorized"


def test_another_users_token_cannot_be_revoked(client, auth, app):
    create_token(app, email="bob@example.com")
    auth.signup()
    with app.app_context():
        bobs = db.session.query(ApiToken).one()
    assert client.post(f"/account/tokens/{bobs.id}/revoke").status_code == 404
    with app.app_context():
        assert db.session.get(ApiToken, bobs.id).revoked_at is None


def test_wallet_address_is_validated_and_saved(client, auth, app):
    auth.signup()
    assert client.post("/account/wallet", data={"wallet_address": "has spaces in it"}).status_code == 400
    assert client.post("/account/wallet", data={"wallet_address": "0xAbC123"}).status_code == 302
    with app.app_context():
        assert db.session.query(User).one().wallet_address == "0xAbC123"


def test_unknown_routes_are_404_pages_and_json(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404 and b"Not Found" in page.data
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json["error"] == "not_found"


def test_oversized_body_is_413(tmp_path):
    from tests.conftest import make_app
    app = make_app(tmp_path, MAX_CONTENT_LENGTH=1024)
    response = app.test_client().post("/api/v1/me", data=b"x" * 4096, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code in (401, 405, 413)
    response = app.test_client().post("/signup", data={"email": "a@example.com", "password": "x" * 4096, "confirm": ""})
    assert response.status_code == 413


def test_missing_token_is_401_json(client):
    response = client.get("/api/v1/me")
    assert response.status_code == 401 and "Bearer" in response.json["message"]

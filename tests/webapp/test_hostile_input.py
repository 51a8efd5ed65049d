"""Hostile input gets a 4xx, never a 500, on SQLite and PostgreSQL: deep JSON (on the unauthenticated
/pair too), lone surrogates, NUL bytes, control characters and ids no database can hold — checked by
hand for each kind, then fuzzed over every operation of the OpenAPI document."""

import json
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from webapp.api.openapi import build_document
from webapp.extensions import db

from ..conftest import create_token
from .dispatch_factories import make_job, make_worker

DEEP = b"[" * 1000 + b"]" * 1000  # 2 KB, 1,000 deep
HUGE_IDS = [2**31, 2**63, 2**70, 10**30]  # every primary key is a 32-bit INTEGER on PostgreSQL
HOSTILE_TEXT = ["\ud800", "a\udfffb", "nul\x00byte", "\x00", "esc\x1b[31m", "bell\x07", "line\nbreak", "\u2028"]
URL_TEXT = HOSTILE_TEXT[2:]  # a URL can't carry a lone surrogate: percent-decoding makes it U+FFFD


@pytest.fixture
def env(any_app):
    """A user with an API token and a paired worker holding one running task of the user's job."""
    app = any_app
    app.config["PAIR_RATE_LIMIT"] = "10000 per minute"
    client = app.test_client()
    token = create_token(app)
    user = {"Authorization": f"Bearer {token}"}
    with app.app_context():
        from webapp.services import accounts
        owner_id = accounts.user_by_email("ada@example.com").id
        worker_id, worker_token = make_worker(owner_id=owner_id)
        job_id, (task_id,) = make_job(owner_id=owner_id)
    worker = {"Authorization": f"Bearer {worker_token}"}
    claimed = client.post("/api/v1/worker/tasks/claim", json={}, headers=worker)
    assert claimed.status_code == 200, claimed.get_data(as_text=True)
    created = {"id": worker_id}
    return {"app": app, "client": client, "user": user, "worker": worker, "worker_id": created["id"],
            "job_id": job_id, "task_id": task_id, "claimed": claimed.status_code}


def _json_operations():
    from webapp import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": "sqlite://",
                      "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        document = build_document()
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method != "parameters" and "application/json" in (op.get("requestBody") or {}).get("content", {}):
                yield method, path


JSON_OPERATIONS = sorted(_json_operations())


def _concrete(path: str, env) -> str:
    return "/api/v1" + path.replace("{task_id}", str(env["task_id"])).replace(
        "{worker_id}", str(env["worker_id"])).replace("{job_id}", str(env["job_id"]))


def test_every_json_body_refuses_deep_nesting_cheaply(env):
    assert JSON_OPERATIONS and ("post", "/pair") in JSON_OPERATIONS
    client = env["client"]
    for method, path in JSON_OPERATIONS:
        # The worker API (/worker/...) takes the worker's token; every other API a personal token.
        headers = {} if path == "/pair" else (env["worker"] if path.startswith("/worker/") else env["user"])
        started = time.perf_counter()
        response = client.open(_concrete(path, env), method=method.upper(), data=DEEP,
                               content_type="application/json", headers=headers)
        assert response.status_code == 400, (method, path, response.status_code, response.get_data(as_text=True))
        assert "nested more than 32" in response.get_json()["message"]
        assert time.perf_counter() - started < 0.5, (method, path)


def test_pair_refuses_deep_json_without_a_token(env):
    response = env["client"].post("/api/v1/pair", data=b'{"code": ' + DEEP + b"}",
                                  content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"


@pytest.mark.parametrize("text", HOSTILE_TEXT[:4])
def test_surrogates_and_nul_are_refused_in_json(env, text):
    client = env["client"]
    for path, body, headers in [
        ("/api/v1/pair", {"code": text}, {}),
        ("/api/v1/workers", {"name": text}, env["user"]),
        (f"/api/v1/workers/{env['worker_id']}", {"location": text}, env["user"]),
        ("/api/v1/worker/heartbeat", {"state": "idle", "message": text}, env["worker"]),
        (f"/api/v1/worker/tasks/{env['task_id']}/fail", {"reason": text, "log_tail": text}, env["worker"]),
        ("/api/v1/worker/hello", {text: 1}, env["worker"]),
    ]:
        method = "PATCH" if path.endswith(f"/workers/{env['worker_id']}") else "POST"
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 400, (path, text, response.status_code, response.get_data(as_text=True))


@pytest.mark.parametrize("text", ["esc\x1b[31m", "bell\x07", "line\nbreak", "\u2028"])
def test_control_characters_are_refused_in_names(env, text):
    client = env["client"]
    assert client.post("/api/v1/workers", json={"name": text}, headers=env["user"]).status_code == 400
    spec = json.dumps({"type": "render", "name": text})
    response = client.post("/api/v1/jobs", data={"spec": spec}, headers=env["user"])
    assert response.status_code == 400 and "name" in response.get_json().get("fields", {})


def test_nul_in_paths_queries_and_forms_is_refused(env):
    client = env["client"]
    assert client.get("/api/v1/workers?q=a%00b", headers=env["user"]).status_code == 400
    assert client.get("/api/v1/jobs?status=%00", headers=env["user"]).status_code == 400
    assert client.get(f"/api/v1/worker/tasks/{env['task_id']}/inputs/a%00b", headers=env["worker"]).status_code in (400, 404)
    assert client.post("/login", data={"email": "a\x00@example.com", "password": "x"}).status_code == 400
    assert client.post("/signup", data={"email": "a@example.com\x00", "password": "x" * 12,
                                        "confirm": "x" * 12}).status_code == 400


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_ids_no_database_can_hold_are_404(env, huge):
    client = env["client"]
    for path, headers in [(f"/api/v1/jobs/{huge}", env["user"]), (f"/api/v1/jobs/{huge}/outputs.zip", env["user"]),
                          (f"/api/v1/jobs/{env['job_id']}/tasks/{huge}/outputs/a.png", env["user"]),
                          (f"/api/v1/workers/{huge}", env["user"]), (f"/api/v1/workers/{huge}/stats", env["user"]),
                          (f"/api/v1/worker/tasks/{huge}/inputs/scene.blend", env["worker"])]:
        assert client.get(path, headers=headers).status_code == 404, path
    for path, headers in [(f"/api/v1/jobs/{huge}/cancel", env["user"]), (f"/api/v1/jobs/{huge}/requeue", env["user"]),
                          (f"/api/v1/worker/tasks/{huge}/progress", env["worker"]),
                          (f"/api/v1/worker/tasks/{huge}/complete", env["worker"])]:
        assert client.post(path, json={}, headers=headers).status_code == 404, path
    # The pages: a logged-in creator asking for such a job or worker gets the 404 page.
    client.post("/login", data={"email": "ada@example.com", "password": "correct horse battery"})
    for path in (f"/jobs/{huge}", f"/jobs/{huge}/thumb/1/a.png", f"/workers/{huge}", f"/workers/{huge}/setup"):
        assert client.get(path).status_code == 404, path
    assert client.get("/api/v1/jobs?page=99999999999999999999", headers=env["user"]).status_code < 500
    assert client.get("/api/v1/workers?page=99999999999999999999", headers=env["user"]).status_code == 400


# --- fuzzing over the OpenAPI document ------------------------------------------------------------------

EXAMPLES = 12  # per operation and database: 32 operations x 2 databases stays well under a minute


def _hostile(case, draw):
    """Mix the hostile values into a generated case: huge ids, and surrogates/NUL in text and keys."""
    kind = draw % 4
    if kind == 1 and case.path_parameters:
        case.path_parameters = {key: (HUGE_IDS[draw % 4] if key.endswith("_id") else URL_TEXT[draw % 6])
                                for key in case.path_parameters}
    elif kind == 2 and isinstance(case.body, dict):
        text = HOSTILE_TEXT[draw % 8]
        case.body = {**case.body, **{key: text for key in list(case.body)[:2]}, text: text}
    elif kind == 3 and case.query:
        case.query = {key: URL_TEXT[draw % 6] for key in case.query}
    return case


def test_the_whole_api_fuzzed_with_hostile_input_has_no_server_errors(env):
    app, client = env["app"], env["client"]
    real = {"worker_id": env["worker_id"], "job_id": env["job_id"], "task_id": env["task_id"]}

    def aim(case):
        """Half the cases aim at the real objects, so fuzzing reaches past the lookups."""
        if case.path_parameters:
            case.path_parameters = {key: real.get(key, value) for key, value in case.path_parameters.items()}
        return case

    schema = schemathesis.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (op.method == "delete", "complete" in op.path))  # destructive ones last
    assert len(operations) >= 30
    server_errors = []
    for operation in operations:
        headers = {} if operation.path == "/pair" else (
            env["worker"] if operation.path.startswith("/worker/") else env["user"])
        strategy = st.tuples(operation.as_strategy(), st.booleans(), st.integers(0, 1000)).map(
            lambda triple: _hostile(aim(triple[0]) if triple[1] else triple[0], triple[2]))

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                server_errors.append((operation.method.upper(), operation.path, case.path_parameters, case.query,
                                      case.body, response.status_code, response.get_data(as_text=True)[:200]))
            case.validate_response(response, checks=(not_a_server_error,))

        try:
            fuzz()
        except AssertionError:
            pass  # recorded above, with the case that caused it
        except Exception as exc:  # noqa: BLE001 - schemathesis' own check failure types
            if "server error" not in str(exc).lower():
                raise
    with app.app_context():
        db.session.remove()
    assert server_errors == []

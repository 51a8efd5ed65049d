"""The OpenAPI document: served without auth, valid OpenAPI 3.0.3, and the provider API survives fuzzing."""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.conftest import create_token
from webapp.api import openapi as openapi_module


def _validate(document: dict) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:  # schemathesis 3.x ships the OpenAPI 3.0 meta-schema itself
        from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR
        OPENAPI_30_VALIDATOR.validate(document)
    else:
        validate(document)


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_document_is_served_without_auth_and_valid(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    _validate(document)
    assert document["openapi"] == "3.0.3"
    assert document["servers"] == [{"url": "/api/v1"}]
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    schemas = document["components"]["schemas"]
    assert {"Error", "Worker", "Task", "Job"} <= set(schemas)
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    for ref in _refs(document):  # every reference resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    paths = document["paths"]
    for path, methods in {"/workers": {"get", "post"}, "/workers/{worker_id}": {"get", "patch", "delete"},
                          "/workers/{worker_id}/tasks": {"get"}, "/workers/{worker_id}/stats": {"get"},
                          "/workers/{worker_id}/pairing-code": {"post"}}.items():
        assert methods <= set(paths[path]), path
    with app.test_request_context():
        from flask import url_for
        assert url_for("api.openapi") == "/api/v1/openapi.json"


def test_every_documented_path_is_routed(app):
    """The document describes routes that exist (Flask's <int:id> is OpenAPI's {id})."""
    routed: dict[str, set] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            routed.setdefault(openapi_module._openapi_path(rule.rule), set()).update(rule.methods)
    for path, item in openapi_module.build_document()["paths"].items():
        assert path in routed, path
        for method in set(item) - {"parameters", "summary", "description"}:
            assert method.upper() in routed[path], (method, path)


def test_paths_are_normalised():
    assert openapi_module._openapi_path("/api/v1/worker/tasks/<int:task_id>/inputs/<name>") == \
        "/worker/tasks/{task_id}/inputs/{name}"
    assert openapi_module._openapi_path("/workers/{worker_id}") == "/workers/{worker_id}"


def test_provider_api_fuzzed_without_server_errors(app, client):
    """schemathesis over every provider operation with a valid token: no 5xx, responses as documented."""
    token = create_token(app)
    headers = {"Authorization": f"Bearer {token}"}
    ids = [client.post("/api/v1/workers", json={"name": f"node-{i}"}, headers=headers).get_json()["id"]
           for i in range(3)]

    def on_real_worker(pair):
        """Most generated cases aim at one of the user's real workers, so the 200 paths get fuzzed too."""
        case, worker_id = pair
        if worker_id is not None:
            case.path_parameters = {**(case.path_parameters or {}), "worker_id": worker_id}
        return case

    schema = schemathesis.from_wsgi("/api/v1/openapi.json", app).include(tag="provider")
    # Deletes last, the bulk one (it may delete them all) after the single: the others need the workers.
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: (op.path.endswith("/bulk"), op.method == "delete"))
    assert len(operations) == 9
    seen = collections.Counter()

    for operation in operations:
        strategy = operation.as_strategy()
        if "{worker_id}" in operation.path:
            strategy = st.tuples(strategy, st.sampled_from([*ids, None])).map(on_real_worker)

        @settings(max_examples=20, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case):
            response = case.call(headers=headers)
            seen[operation.method, operation.path, response.status_code // 100] += 1
            case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))

        try:
            fuzz()
        except Exception as exc:  # name the operation that broke
            pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")
    # Each operation succeeded at least once, so the fuzzing reached past validation and lookups.
    for operation in operations:
        assert seen[operation.method, operation.path, 2] > 0, (operation.method, operation.path, seen)

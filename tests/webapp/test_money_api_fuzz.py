"""schemathesis over every money operation (earnings, statement, CSV, payouts, credit, spend, budgets) with a
real token, a real balance and a real budgeted job: no server error, responses as documented."""

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.conftest import create_token
from tests.webapp.dispatch_factories import make_job
from webapp.extensions import db
from webapp.models import Job
from webapp.services import accounts, credit

from .test_payouts import provider


def test_money_api_fuzzed_without_server_errors(app, client, clock):
    _, token, _ = provider(app)
    headers = {"Authorization": f"Bearer {token}"}
    with app.app_context():
        user = accounts.user_by_email("ada@example.com")
        credit.add_credit(user, "50")
        job_id, _ = make_job(user.id, tasks=2)
        job = db.session.get(Job, job_id)
        job.budget_micros = 1_000_000
        credit.reserve_for(job)
        db.session.commit()

    def on_real_job(pair):
        case, real = pair
        if real:
            case.path_parameters = {**(case.path_parameters or {}), "job_id": job_id}
        return case

    schema = schemathesis.from_wsgi("/api/v1/openapi.json", app).include(tag="money")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    seen = collections.Counter()
    for operation in operations:
        strategy = operation.as_strategy()
        if "{job_id}" in operation.path:
            strategy = st.tuples(strategy, st.booleans()).map(on_real_job)

        @settings(max_examples=25, derandomize=True, deadline=None, database=None,
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
    for operation in operations:
        if operation.method == "get":  # the reads must get past validation at least once
            assert seen[operation.method, operation.path, 2] > 0, (operation.method, operation.path, seen)

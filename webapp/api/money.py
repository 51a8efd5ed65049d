"""The money API: a provider's earnings, statement and payouts; a creator's credit, spend and job budgets."""

from flask import Response, current_app, g, jsonify, request

from ..clock import utcnow
from ..services import ServiceError, credit, payouts, permissions, statements
from ..services import jobs as job_service
from . import bp, json_body, schema, user_token_required


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise ServiceError(f"invalid_{name}", f"{name} must be a whole number from 1.")
    return int(raw)


def _statement_json(condition, creator: bool = False):
    page = statements.statement(condition, request.args.get("q"), _int_arg("page", 1),
                                _int_arg("per_page", current_app.config.get("PAGE_SIZE", 25)))
    now = utcnow()
    return jsonify({"items": [statements.serialize(e, creator=creator, now=now) for e in page.items],
                    "page": page.page, "pages": page.pages, "total": page.total, "per_page": page.per_page})


def statement_csv(condition, filename: str, creator: bool = False) -> Response:
    """The whole statement (search applied) as a CSV download; shared with the pages."""
    lines = statements.csv_lines(condition, request.args.get("q"), creator=creator)
    first = next(lines)  # a bad search is a 400 before the download starts

    def body():
        yield first
        yield from lines
    return Response(body(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/account/earnings")
@user_token_required
def account_earnings():
    return jsonify(payouts.serialize_earnings(payouts.earnings(g.user.id)))


@bp.get("/account/ledger")
@user_token_required
def account_ledger():
    return _statement_json(statements.provider_rows(g.user.id))


@bp.get("/account/ledger.csv")
@user_token_required
def account_ledger_csv():
    return statement_csv(statements.provider_rows(g.user.id), "pictor-earnings.csv")


@bp.post("/payouts")
@user_token_required
def create_payout():
    data = json_body()
    key = request.headers.get("Idempotency-Key") or data.get("idempotency_key")
    payout, created = payouts.request_payout(g.user, data.get("amount"), key)
    return jsonify(payouts.serialize_payout(payout)), 201 if created else 200


@bp.get("/payouts")
@user_token_required
def list_payouts():
    page = payouts.list_payouts(g.user.id, request.args.get("state") or None, _int_arg("page", 1),
                                min(_int_arg("per_page", 25), 100))
    return jsonify({"items": [payouts.serialize_payout(p) for p in page.items], "page": page.page,
                    "pages": page.pages, "total": page.total, "per_page": page.per_page})


@bp.get("/account/credit")
@user_token_required
def account_credit():
    return jsonify(credit.serialize_summary(credit.summary(g.user.id)))


@bp.get("/account/spend")
@user_token_required
def account_spend():
    return _statement_json(statements.creator_rows(g.user.id), creator=True)


@bp.get("/account/spend.csv")
@user_token_required
def account_spend_csv():
    return statement_csv(statements.creator_rows(g.user.id), "pictor-spend.csv", creator=True)


@bp.post("/jobs/<int:job_id>/budget")
@user_token_required
def raise_job_budget(job_id: int):
    data = json_body()
    job = permissions.owned_job(g.user.id, job_id)
    credit.raise_budget(job, data.get("budget"))
    return jsonify(job_service.serialize_job(permissions.owned_job(g.user.id, job_id), with_tasks=False))


# --- OpenAPI ------------------------------------------------------------------------------------------

_SECURITY = [{"bearer": []}]
_ERROR_TEXT = {400: "Bad input", 401: "Missing or unknown API token", 402: "insufficient_credit",
               404: "Not found (or someone else's)", 409: "no_wallet, or not possible in this state",
               422: "below_minimum or exceeds_balance"}
_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{6}$", "example": "12.500000"}


def _errors(*codes: int) -> dict:
    return schema.errors(_ERROR_TEXT, *codes)


def _query(name: str, sch: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": sch, "description": description}


_PAGING = [_query("q", {"type": "string", "maxLength": statements.Q_MAX}, "Search: memo, kind, or an entry/job/task number"),
           _query("page", {"type": "integer", "minimum": 1}, "Page number (from 1)"),
           _query("per_page", {"type": "integer", "minimum": 1, "maximum": statements.PER_PAGE_MAX}, "Rows per page")]
_CSV = {"description": "The statement as CSV (search applied), oldest first",
        "content": {"text/csv": {"schema": {"type": "string"}}}}


def _list_of(name: str) -> dict:
    return {"type": "object", "required": ["items", "page", "pages", "total"], "properties": {
        "items": {"type": "array", "items": schema.ref(name)}, "page": {"type": "integer"},
        "pages": {"type": "integer"}, "total": {"type": "integer"}, "per_page": {"type": "integer"}}}


OPENAPI_COMPONENTS = {
    "Earnings": {"type": "object", "required": ["total", "pending", "available", "paid", "balance"], "properties": {
        "total": {**_MONEY, "description": "pending + available: task and check rewards less reversals"},
        "pending": {**_MONEY, "description": "held for a spot check or still settling"},
        "available": {**_MONEY, "description": "settled earnings"},
        "paid": {**_MONEY, "description": "payouts marked paid"},
        "requested": {**_MONEY, "description": "payouts waiting for the operator"},
        "balance": {**_MONEY, "description": "available - paid - requested: what a payout may take"},
        "mining": {**_MONEY, "description": "mining estimates the app reported (paid by the pool, not here)"},
        "minimum_payout": _MONEY}},
    "LedgerEntry": {"type": "object", "required": ["id", "kind", "amount", "created_at"], "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string"}, "label": {"type": "string"}, "amount": _MONEY,
        "created_at": {"type": "string", "format": "date-time"},
        "available_at": {"type": "string", "format": "date-time", "nullable": True},
        "state": {"type": "string", "enum": ["", "pending", "available"]},
        "worker_id": {"type": "integer", "nullable": True}, "job_id": {"type": "integer", "nullable": True},
        "task_id": {"type": "integer", "nullable": True}, "payout_id": {"type": "integer", "nullable": True},
        "memo": {"type": "string"}}},
    "Payout": {"type": "object", "required": ["id", "amount", "state", "created_at"], "properties": {
        "id": {"type": "integer"}, "amount": _MONEY, "wallet_address": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "paid", "rejected"]},
        "reference": {"type": "string", "nullable": True}, "reason": {"type": "string", "nullable": True},
        "created_at": {"type": "string", "format": "date-time"},
        "decided_at": {"type": "string", "format": "date-time", "nullable": True}}},
    "Credit": {"type": "object", "required": ["balance", "reserved"], "properties": {
        "balance": {**_MONEY, "description": "credit added less the spend of budgeted jobs"},
        "reserved": {**_MONEY, "description": "held by running jobs' budgets, not yet spent"},
        "available": {**_MONEY, "description": "balance - reserved: what a new job's budget may hold"},
        "credited": _MONEY, "spent": _MONEY}},
}

OPENAPI_PATHS = {
    "/account/earnings": {"get": {
        "operationId": "getEarnings", "tags": ["money"], "security": _SECURITY,
        "summary": "Your earnings across all workers: total, pending, available, paid, balance",
        "responses": {"200": schema.json_response(schema.ref("Earnings"), "Decimal USD strings"), **_errors(401)}}},
    "/account/ledger": {"get": {
        "operationId": "getLedger", "tags": ["money"], "security": _SECURITY,
        "summary": "Your statement: every credit, reversal, payout (and mining estimate), newest first",
        "parameters": _PAGING,
        "responses": {"200": schema.json_response(_list_of("LedgerEntry"), "One page"), **_errors(400, 401)}}},
    "/account/ledger.csv": {"get": {
        "operationId": "getLedgerCsv", "tags": ["money"], "security": _SECURITY,
        "summary": "Your statement as CSV", "parameters": _PAGING[:1],
        "responses": {"200": _CSV, **_errors(400, 401)}}},
    "/payouts": {
        "post": {"operationId": "requestPayout", "tags": ["money"], "security": _SECURITY,
                 "summary": "Request a payout of your balance (or part) to your account's wallet",
                 "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string", "pattern": payouts.KEY_RE.pattern},
                                 "description": "The same key twice makes one request (200 with it)"}],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "properties": {"amount": {"type": "string", "example": "12.50",
                                                                 "description": "USD; omit for the whole balance"}}}}}},
                 "responses": {"201": schema.json_response(schema.ref("Payout"), "Requested: pending"),
                               "200": schema.json_response(schema.ref("Payout"), "The request this key made before"),
                               **_errors(400, 401, 409, 422)}},
        "get": {"operationId": "listPayouts", "tags": ["money"], "security": _SECURITY,
                "summary": "Your payouts, newest first",
                "parameters": [_query("state", {"type": "string", "enum": ["pending", "paid", "rejected"]}, "Only this state"),
                               *_PAGING[1:]],
                "responses": {"200": schema.json_response(_list_of("Payout"), "One page"), **_errors(400, 401)}}},
    "/account/credit": {"get": {
        "operationId": "getCredit", "tags": ["money"], "security": _SECURITY,
        "summary": "Your credit: balance and what running jobs' budgets hold",
        "responses": {"200": schema.json_response(schema.ref("Credit"), "Decimal USD strings"), **_errors(401)}}},
    "/account/spend": {"get": {
        "operationId": "getSpend", "tags": ["money"], "security": _SECURITY,
        "summary": "Your credit statement: credit added and each task's cost (negative), newest first",
        "parameters": _PAGING,
        "responses": {"200": schema.json_response(_list_of("LedgerEntry"), "One page"), **_errors(400, 401)}}},
    "/account/spend.csv": {"get": {
        "operationId": "getSpendCsv", "tags": ["money"], "security": _SECURITY,
        "summary": "Your credit statement as CSV", "parameters": _PAGING[:1],
        "responses": {"200": _CSV, **_errors(400, 401)}}},
    "/jobs/{job_id}/budget": {
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}],
        "post": {"operationId": "raiseJobBudget", "tags": ["money"], "security": _SECURITY,
                 "summary": "Raise a job's budget (holding more credit); a paused job goes on",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["budget"], "properties": {"budget": {"type": "string", "example": "40.00"}}}}}},
                 "responses": {"200": schema.json_response(schema.ref("Job"), "The job"), **_errors(400, 401, 402, 404, 409)}}},
}

"""The provider API: create, pair, list, rename and delete workers, act on many at once; a worker's tasks and statistics."""

from flask import current_app, g, jsonify, request

from ..clock import utcnow
from ..services import ServiceError, fleet, permissions
from ..services import workers as worker_service
from ..web import server_url
from . import bp, json_body, schema, user_token_required


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServiceError(f"invalid_{name}", f"{name} must be a whole number.") from None


def _list_args(default_per_page: int | None = None) -> dict:
    return {
        "q": request.args.get("q"),
        "status": request.args.get("status"),
        "sort": request.args.get("sort") or "created",
        "order": request.args.get("order") or "desc",
        "page": _int_arg("page", 1),
        "per_page": _int_arg("per_page", default_per_page or current_app.config.get("PAGE_SIZE", 25)),
    }


def _page_json(page, items: list) -> dict:
    return {"items": items, "page": page.page, "pages": page.pages, "total": page.total, "per_page": page.per_page}


def _name_from_body() -> str:
    data = json_body()
    if "name" not in data:
        raise ServiceError("invalid_name", "Send {\"name\": \"...\"} with the worker's name (1 to 80 characters).")
    return data["name"]


@bp.post("/workers")
@user_token_required
def provider_create_worker():
    worker, code, token = worker_service.create_worker(g.user, _name_from_body())
    body = worker_service.serialize(worker)
    body.update({
        "pairing_code": code,
        "pairing_expires_at": worker_service.iso(worker.pairing_expires_at),
        "config": worker_service.worker_config(worker, token, server_url()),
    })
    return jsonify(body), 201


@bp.get("/workers")
@user_token_required
def provider_list_workers():
    now = utcnow()
    page = worker_service.list_workers(g.user.id, now=now, tag=request.args.get("tag"), gpu=request.args.get("gpu"),
                                       **_list_args())
    return jsonify(_page_json(page, worker_service.serialize_many(page.items, now)))


_BULK_KEYS = {"action", "ids", "all_matching", "filter", "bid", "tags", "dry_run"}
_FILTER_KEYS = ("q", "status", "tag", "gpu")


@bp.post("/workers/bulk")
@user_token_required
def provider_bulk_workers():
    """Pause, resume, set the bid of, tag, untag or delete many workers: by ids, or all matching a filter."""
    data = json_body()
    unknown = sorted(set(data) - _BULK_KEYS)
    if unknown:
        raise ServiceError("invalid_bulk", f"Unknown field(s): {', '.join(unknown)}.")
    filters = data.get("filter") or {}
    if not isinstance(filters, dict) or set(filters) - set(_FILTER_KEYS) or not all(
            isinstance(v, str) or v is None for v in filters.values()):
        raise ServiceError("invalid_filter", "\"filter\" is an object of strings: q, status, tag, gpu.")
    all_matching = data.get("all_matching", False)
    dry_run = data.get("dry_run", False)
    if not isinstance(all_matching, bool) or not isinstance(dry_run, bool):
        raise ServiceError("invalid_bulk", "\"all_matching\" and \"dry_run\" are true or false.")
    if all_matching and "ids" in data:
        raise ServiceError("invalid_bulk", "Send \"ids\" or \"all_matching\": true, not both.")
    result = fleet.run(g.user.id, data.get("action"), ids=data.get("ids"), all_matching=all_matching,
                       filters=filters, bid=data.get("bid"), tags=data.get("tags"), dry_run=dry_run)
    return jsonify({**result.to_dict(), "dry_run": dry_run})


@bp.get("/workers/<int:worker_id>")
@user_token_required
def provider_get_worker(worker_id: int):
    return jsonify(worker_service.serialize(permissions.owned_worker(g.user.id, worker_id)))


@bp.patch("/workers/<int:worker_id>")
@user_token_required
def provider_update_worker(worker_id: int):
    worker = permissions.owned_worker(g.user.id, worker_id)
    data = json_body()
    if "name" not in data and "location" not in data and "tags" not in data:
        raise ServiceError("nothing_to_change", "Send {\"name\": ...}, {\"location\": ...} (empty clears it) "
                                                "and/or {\"tags\": [...]}.")
    if "name" in data:
        worker_service.clean_name(data["name"])  # check every field before changing any
    if "tags" in data and data["tags"] != []:
        fleet.clean_tags(data["tags"])
        if not isinstance(data["tags"], list):
            raise ServiceError("invalid_tags", "Send the tags as a list, e.g. [\"farm-a\", \"rack-3\"].")
    if "tags" in data:
        fleet.set_tags(worker, data["tags"])
    if "location" in data:
        worker_service.set_location(worker, data["location"])
    if "name" in data:
        worker_service.rename(worker, data["name"])
    return jsonify(worker_service.serialize(worker))


@bp.delete("/workers/<int:worker_id>")
@user_token_required
def provider_delete_worker(worker_id: int):
    worker_service.delete(permissions.owned_worker(g.user.id, worker_id))
    return "", 204


@bp.post("/workers/<int:worker_id>/pairing-code")
@user_token_required
def provider_new_pairing_code(worker_id: int):
    worker = permissions.owned_worker(g.user.id, worker_id)
    code = worker_service.regenerate_pairing_code(worker)
    return jsonify({"worker_id": worker.id, "pairing_code": code,
                    "pairing_expires_at": worker_service.iso(worker.pairing_expires_at)}), 201


@bp.get("/workers/<int:worker_id>/tasks")
@user_token_required
def provider_worker_tasks(worker_id: int):
    worker = permissions.owned_worker(g.user.id, worker_id)
    page = worker_service.list_tasks(worker, **_list_args())
    now = utcnow()
    return jsonify(_page_json(page, [worker_service.serialize_task(t, now) for t in page.items]))


@bp.get("/workers/<int:worker_id>/stats")
@user_token_required
def provider_worker_stats(worker_id: int):
    worker = permissions.owned_worker(g.user.id, worker_id)
    return jsonify(worker_service.stats_series(worker, request.args.get("period") or "week",
                                               request.args.get("from"), request.args.get("to")))


# --- OpenAPI ------------------------------------------------------------------------------------------



_ERROR_TEXT = {400: "Bad input", 401: "Missing or unknown API token", 404: "Not found (or someone else's)"}


def _errors(*codes: int) -> dict:
    return schema.errors(_ERROR_TEXT, *codes)


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_WORKER_ID = {"name": "worker_id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}, "description": "Worker ID"}
_NAME_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["name"], "additionalProperties": True,
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": worker_service.NAME_MAX}}}}}}
_PAGING = [
    _query("q", {"type": "string"}, "Search text: part of the name, or an ID (\"123\" or \"#123\")"),
    _query("order", {"type": "string", "enum": list(worker_service.ORDERS)}, "Sort direction"),
    _query("page", {"type": "integer", "minimum": 1}, "Page number (from 1)"),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": worker_service.PER_PAGE_MAX}, "Items per page"),
]


def _list_of(name: str) -> dict:
    return {"type": "object", "required": ["items", "page", "pages", "total"], "properties": {
        "items": {"type": "array", "items": schema.ref(name)}, "page": {"type": "integer"},
        "pages": {"type": "integer"}, "total": {"type": "integer"}, "per_page": {"type": "integer"}}}


_SECURITY = [{"bearer": []}]
_WORKER_STATUSES = ["pending", "online", "busy", "paused", "error", "offline", "suspended"]
_TASK_STATUSES = ["queued", "running", "completed", "failed", "canceled"]

OPENAPI_PATHS = {
    "/workers": {
        "post": {
            "operationId": "createWorker", "tags": ["provider"], "security": _SECURITY,
            "summary": "Create a worker: returns its one-time pairing code and config (token shown once)",
            "requestBody": _NAME_BODY,
            "responses": {"201": schema.json_response({"allOf": [schema.ref("Worker"), {"type": "object", "properties": {
                "pairing_code": {"type": "string", "example": "ABCD-EF23"},
                "pairing_expires_at": {"type": "string", "format": "date-time"},
                "config": schema.ref("WorkerConfig")}}]}, "The new worker"), **_errors(400, 401)},
        },
        "get": {
            "operationId": "listWorkers", "tags": ["provider"], "security": _SECURITY,
            "summary": "List your workers: search (name, ID, hostname, GPU model, tag), filter, sort, page",
            "parameters": [
                *_PAGING,
                _query("tag", {"type": "string", "maxLength": fleet.TAG_MAX}, "Only workers with this tag"),
                _query("gpu", {"type": "string"}, "Only workers with this GPU model (as in gpu_name)"),
                _query("status", {"type": "string", "enum": _WORKER_STATUSES}, "Only workers in this status"),
                _query("sort", {"type": "string", "enum": list(worker_service.SORTS)}, "Sort key"),
            ],
            "responses": {"200": schema.json_response(_list_of("Worker"), "One page of workers"), **_errors(400, 401)},
        },
    },
    "/workers/bulk": {
        "post": {
            "operationId": "bulkWorkers", "tags": ["provider"], "security": _SECURITY,
            "summary": "One action on many workers: by ids (others' ids are ignored) or all matching a filter",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["action"], "additionalProperties": False, "properties": {
                    "action": {"type": "string", "enum": [a.value for a in fleet.BulkAction]},
                    "ids": {"type": "array", "minItems": 1, "maxItems": fleet.IDS_PER_ACTION_MAX,
                            "items": {"type": "integer", "minimum": 1}},
                    "all_matching": {"type": "boolean", "description": "act on every worker the filter matches"},
                    "filter": {"type": "object", "additionalProperties": False, "properties": {
                        "q": {"type": "string"}, "status": {"type": "string", "enum": _WORKER_STATUSES},
                        "tag": {"type": "string"}, "gpu": {"type": "string"}}},
                    "bid": {"type": "string", "nullable": True, "example": "0.45",
                            "description": "set_bid: USD per compute hour; null = the network average"},
                    "tags": {"type": "array", "minItems": 1, "maxItems": fleet.TAGS_PER_ACTION_MAX,
                             "items": {"type": "string", "minLength": 1, "maxLength": fleet.TAG_MAX,
                                       "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"}},
                    "dry_run": {"type": "boolean", "description": "only count the workers it would act on"}}}}}},
            "responses": {"200": schema.json_response({"type": "object", "required": ["action", "matched", "changed"],
                "properties": {"action": {"type": "string"}, "matched": {"type": "integer"},
                               "changed": {"type": "integer"}, "dry_run": {"type": "boolean"}}},
                "How many of your workers it named and changed"), **_errors(400, 401)},
        },
    },
    "/workers/{worker_id}": {
        "parameters": [_WORKER_ID],
        "get": {"operationId": "getWorker", "tags": ["provider"], "security": _SECURITY, "summary": "One worker",
                "responses": {"200": schema.json_response(schema.ref("Worker"), "The worker"), **_errors(401, 404)}},
        "patch": {"operationId": "updateWorker", "tags": ["provider"], "security": _SECURITY,
                  "summary": "Rename a worker, set its location (overrides the IP lookup; empty clears it) and/or "
                             "replace its tags",
                  "requestBody": {"required": True, "content": {"application/json": {"schema": {
                      "type": "object", "minProperties": 1, "additionalProperties": True, "properties": {
                          "name": {"type": "string", "minLength": 1, "maxLength": worker_service.NAME_MAX},
                          "location": {"type": "string", "maxLength": worker_service.LOCATION_MAX},
                          "tags": {"type": "array", "maxItems": fleet.TAGS_PER_ACTION_MAX, "items": {
                              "type": "string", "minLength": 1, "maxLength": fleet.TAG_MAX,
                              "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$"}}}}}}},
                  "responses": {"200": schema.json_response(schema.ref("Worker"), "The updated worker"), **_errors(400, 401, 404)}},
        "delete": {"operationId": "deleteWorker", "tags": ["provider"], "security": _SECURITY,
                   "summary": "Delete a worker: its token stops working, its running task is handed back",
                   "responses": {"204": {"description": "Deleted"}, **_errors(401, 404)}},
    },
    "/workers/{worker_id}/pairing-code": {
        "parameters": [_WORKER_ID],
        "post": {"operationId": "newPairingCode", "tags": ["provider"], "security": _SECURITY,
                 "summary": "A new one-time pairing code (the previous one stops working)",
                 "responses": {"201": schema.json_response({"type": "object", "properties": {
                     "worker_id": {"type": "integer"}, "pairing_code": {"type": "string"},
                     "pairing_expires_at": {"type": "string", "format": "date-time"}}}, "The new code"),
                     **_errors(401, 404)}},
    },
    "/workers/{worker_id}/tasks": {
        "parameters": [_WORKER_ID],
        "get": {"operationId": "listWorkerTasks", "tags": ["provider"], "security": _SECURITY,
                "summary": "The worker's tasks: search by job name or ID, filter, sort, page",
                "parameters": [
                    *_PAGING,
                    _query("status", {"type": "string", "enum": _TASK_STATUSES}, "Only tasks in this status"),
                    _query("sort", {"type": "string", "enum": list(worker_service.TASK_SORTS)}, "Sort key"),
                ],
                "responses": {"200": schema.json_response(_list_of("Task"), "One page of tasks"), **_errors(400, 401, 404)}},
    },
    "/workers/{worker_id}/stats": {
        "parameters": [_WORKER_ID],
        "get": {"operationId": "workerStats", "tags": ["provider"], "security": _SECURITY,
                "summary": "Earnings by task, processed tasks and mining earnings over a period",
                "parameters": [
                    _query("period", {"type": "string", "enum": list(worker_service.STATS_PERIODS)},
                           "week, month (30 days), year (12 months) or custom (needs from and to)"),
                    _query("from", {"type": "string", "format": "date"}, "First day of a custom period"),
                    _query("to", {"type": "string", "format": "date"}, "Last day of a custom period"),
                ],
                "responses": {"200": schema.json_response(schema.ref("WorkerStats"), "Totals and series"), **_errors(400, 401, 404)}},
    },
}

_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{6}$", "example": "0.125000"}
_STAT = {"type": "object", "properties": {
    "task_earnings": _MONEY, "mining_earnings": _MONEY, "tasks_completed": {"type": "integer"},
    "tasks_failed": {"type": "integer"}, "compute_seconds": {"type": "number"}}}

# Schemas only this module defines; openapi.py merges them with the shared ones.
OPENAPI_COMPONENTS = {
    "WorkerConfig": {"type": "object", "required": ["server_url", "worker_id", "token"], "properties": {
        "server_url": {"type": "string"}, "worker_id": {"type": "integer"},
        "token": {"type": "string", "description": "Shown once; only its hash is stored"}}},
    "WorkerStats": {"type": "object", "properties": {
        "worker_id": {"type": "integer"}, "period": {"type": "string"},
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "unit": {"type": "string", "enum": ["day", "month"]}, "totals": _STAT,
        "lifetime": {"type": "object", "properties": {"earnings": _MONEY, "compute_seconds": {"type": "number"}}},
        "buckets": {"type": "array", "items": {"allOf": [{"type": "object", "properties": {
            "start": {"type": "string", "format": "date"}, "label": {"type": "string"}}}, _STAT]}}}},
}

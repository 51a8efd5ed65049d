"""The OpenAPI 3.0.3 document of the JSON API, merged from the paths each API module declares."""

import re

from flask import jsonify

from . import bp, jobs, money, provider, worker

API_PREFIX = "/api/v1"
# The API modules, each declaring OPENAPI_PATHS (and OPENAPI_COMPONENTS) beside its routes.
SOURCES = (provider, worker, jobs, money)

_MONEY = {"type": "string", "description": "USD as a decimal string, never a float", "example": "0.125000"}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string", "description": "short machine code, e.g. not_found"},
                       "message": {"type": "string", "description": "what to do about it"}},
    },
    "Worker": {
        "type": "object",
        "required": ["id", "name", "status", "created_at", "updated_at", "last_heartbeat_at", "gpus", "ram_mb",
                     "earnings", "uptime_seconds", "uptime_percent_30d", "bid", "bench_score"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "online", "busy", "paused", "error", "offline",
                                                  "suspended"]},
            "suspended_reason": {"type": "string", "nullable": True,
                                 "description": "why a failed spot check stopped this worker"},
            "status_message": {"type": "string", "nullable": True},
            "created_at": _TIME, "updated_at": _TIME, "last_heartbeat_at": _TIME_OR_NULL, "paired_at": _TIME_OR_NULL,
            "gpus": {"type": "array", "items": {"type": "object"}},
            "gpu_name": {"type": "string", "nullable": True},
            "cpu": {"type": "string", "nullable": True},
            "os": {"type": "string", "nullable": True},
            "ram_mb": {"type": "integer", "nullable": True},
            "earnings": _MONEY,
            "compute_seconds": {"type": "number"},
            "uptime_seconds": {"type": "integer", "description": "current continuous online time"},
            "uptime_percent_30d": {"type": "number"},
            "bid": {**_MONEY, "nullable": True, "description": "USD per compute hour; null = network average"},
            "bench_score": {"type": "integer", "nullable": True,
                            "description": "measured by the portal (timed, checked Bench Score runs)"},
            "bench_score_reported": {"type": "integer", "nullable": True,
                                     "description": "what the app measured itself: shown, never priced"},
            "country": {"type": "string", "nullable": True},
            "location": {"type": "string", "nullable": True},
            "app_version": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "the provider's labels"},
            "paused_by_portal": {"type": "boolean", "description": "paused from the portal: it claims nothing"},
            "slots": {"type": "array", "description": "its devices (hello), one running task each", "items": {
                "type": "object", "properties": {
                    "id": {"type": "string", "example": "gpu0"}, "kind": {"type": "string", "nullable": True,
                                                                         "example": "CUDA"},
                    "name": {"type": "string"}, "memory_mb": {"type": "integer", "nullable": True},
                    "state": {"type": "string", "enum": ["busy", "idle"]},
                    "task": {"type": "object", "nullable": True, "properties": {
                        "id": {"type": "integer"}, "job_id": {"type": "integer"}, "job_name": {"type": "string"},
                        "progress": {"type": "number"}}},
                    "earnings": _MONEY, "tasks_completed": {"type": "integer"}}}},
            "earnings_pending": {**_MONEY, "description": "held for a spot check or still settling"},
            "earnings_available": {**_MONEY, "description": "settled: may be paid out"},
            "record": {"type": "object", "description": "the worker's spot checks", "properties": {
                "checked": {"type": "integer"}, "passed": {"type": "integer"}, "failed": {"type": "integer"},
                "check_rate": {"type": "number", "description": "chance its next result is checked"}}},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "job_id", "job_name", "job_type", "status", "progress", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "job_id": {"type": "integer"}, "job_name": {"type": "string"},
            "job_type": {"type": "string", "enum": ["render", "upscale", "verify"]},
            "software": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "canceled"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "message": {"type": "string", "nullable": True},
            "reward": {**_MONEY, "nullable": True},
            "slot": {"type": "string", "nullable": True, "description": "the worker's device it ran on"},
            "created_at": _TIME, "started_at": _TIME_OR_NULL, "finished_at": _TIME_OR_NULL,
            "duration_seconds": {"type": "number", "nullable": True},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "name", "type", "status", "progress", "created_at", "cost"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "type": {"type": "string", "enum": ["render", "upscale"]},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "canceled"]},
            "progress": {"type": "number"},
            "created_at": _TIME, "updated_at": _TIME, "finished_at": _TIME_OR_NULL,
            "software": {"type": "string"}, "priority": {"type": "integer"}, "device": {"type": "string"},
            "max_price": {**_MONEY, "description": "USD per bench-hour"},
            "task_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "inputs": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "sha256": {"type": "string"}, "size": {"type": "integer"}}}},
            "tasks": {"type": "array", "description": "in the single-job response", "items": {
                "type": "object", "properties": {
                    "id": {"type": "integer"}, "status": {"type": "string"}, "progress": {"type": "number"},
                    "worker_id": {"type": "integer", "nullable": True},
                    "reward": {**_MONEY, "nullable": True},
                    "verification": {"type": "string", "enum": ["none", "pending", "passed", "failed"],
                                     "description": "the spot check of the current result"},
                    "outputs": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "sha256": {"type": "string"},
                        "size": {"type": "integer"}}}}}}},
            "cost": {**_MONEY, "description": "what the job has cost so far"},
            "cost_estimate": {**_MONEY, "nullable": True},
            "bench_hours": {"type": "number", "description": "the finished tasks' work in reference-machine hours"},
            "paid_per_bench_hour": {**_MONEY, "nullable": True, "description": "what the work cost per bench-hour"},
            "saving": {**_MONEY, "nullable": True, "description": "max price x bench-hours, less the cost"},
            "budget": {**_MONEY, "nullable": True, "description": "the spend limit held from your credit; null = on account"},
            "paused_reason": {"type": "string", "nullable": True, "description": "why no more tasks start (its budget)"},
            "dependencies": {"type": "array", "description": "render: the files the scene uses, read from the .blend, "
                             "and whether the upload holds them", "items": {
                                 "type": "object", "required": ["path", "found"], "properties": {
                                     "path": {"type": "string"}, "found": {"type": "boolean"}}}},
            "waiting": {"type": "object", "nullable": True, "required": ["reason", "message"],
                        "description": "why no online worker takes its queued tasks; null while tasks run, "
                                       "once it is done, or when a free worker will take it at its next poll",
                        "properties": {
                            "reason": {"type": "string", "enum": ["no_capable_worker", "price_too_low",
                                                                  "gpu_required", "all_busy"]},
                            "message": {"type": "string", "description": "the reason in words, with what to do"}}},
            "projection": {"type": "object", "required": ["cost", "finish_at"],
                           "description": "projected total cost (within the budget) and finish time: from the "
                                          "job's completed tasks (basis job), a range from the network's similar "
                                          "tasks before then (basis network), the final figures once it ended",
                           "properties": {
                               "basis": {"type": "string", "nullable": True, "enum": ["job", "network", "final", None]},
                               "cost": {**_MONEY, "nullable": True}, "cost_low": {**_MONEY, "nullable": True},
                               "cost_high": {**_MONEY, "nullable": True},
                               "finish_at": _TIME_OR_NULL, "finish_low": _TIME_OR_NULL, "finish_high": _TIME_OR_NULL,
                               "over_budget": {"type": "boolean", "description": "it would cost more than its "
                                                                                 "budget: it pauses there"},
                               "explanation": {"type": "string"}}},
        },
    },
}


def _openapi_path(path: str) -> str:
    """Paths are relative to the /api/v1 server; Flask-style <int:id> becomes {id}."""
    if path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX):]
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", path)


def build_document() -> dict:
    paths: dict = {}
    schemas = dict(SCHEMAS)
    for module in SOURCES:
        for path, item in getattr(module, "OPENAPI_PATHS", {}).items():
            paths.setdefault(_openapi_path(path), {}).update(item)
        for schema_name, schema in getattr(module, "OPENAPI_COMPONENTS", {}).items():
            schemas.setdefault(schema_name, schema)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Pictor Worker API",
            "version": "1",
            "description": "Provider, creator and worker APIs of the Worker Portal. Authenticate with "
                           "'Authorization: Bearer TOKEN': a personal API token (Account page) for the "
                           "provider and creator APIs, a worker's token for /worker/*. Errors are "
                           "{\"error\", \"message\"} with a 4xx status; money is a decimal string in USD.",
        },
        "servers": [{"url": API_PREFIX}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_document())

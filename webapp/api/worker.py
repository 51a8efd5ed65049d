"""The worker API (docs/ARCHITECTURE.md, "A task's life"): what the Worker App calls with its own token, thin over the services."""

import os
import re
from urllib.parse import quote

from flask import Response, current_app, g, jsonify, request, send_file

from .. import money
from ..clock import utcnow
from ..extensions import db, limiter
from ..models import Task
from ..services import ServiceError, benchmarks, dispatch, fleet, market, mining, presence, releases, storage
from ..web import json_error as error
from ..web import server_url
from ..services import payouts
from . import bp, json_body, schema, worker_token_required

JSON_MAX_BYTES = 1024 * 1024  # the largest JSON a worker sends is a complete's output list
SPEEDTEST_MAX_BYTES = 50 * 1024 * 1024
SPEEDTEST_DEFAULT_BYTES = 10 * 1024 * 1024
_SPEEDTEST_BLOCK = None
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _json() -> dict:
    """The JSON body, refusing anything larger than a worker ever needs to send (413)."""
    request.max_content_length = JSON_MAX_BYTES
    return json_body()


def _iso(moment):
    return moment.isoformat() if moment else None


def task_payload(task: Task) -> dict:
    """The claimed-task JSON (_CLAIMED_TASK below documents it), with the job's software and its bid."""
    inputs = dispatch.task_inputs(task)
    base = server_url()
    estimate = dispatch.reward_estimate_micros(task)
    return {
        "id": task.id,
        "job_id": task.job_id,
        "type": task.type.value,
        "slot": task.slot,
        "params": task.params,
        "inputs": [{"name": name, "url": f"{base}/api/v1/worker/tasks/{task.id}/inputs/{quote(name, safe='')}",
                    "sha256": sha256, "size": size} for name, (sha256, size) in inputs.items()],
        "lease_expires_at": _iso(task.lease_expires_at),
        "lease_seconds": dispatch.lease_seconds(),
        "reward_estimate": money.fmt(estimate) if estimate is not None else None,
        "bid": money.fmt(task.bid_micros),
        "software": task.job.software,
        "job_name": task.job.name,
    }


# -- pairing and presence --------------------------------------------------------------------------

@bp.post("/pair")
@limiter.limit(lambda: current_app.config.get("PAIR_RATE_LIMIT", "20 per minute"))
def worker_pair():
    from ..services import workers  # the provider side owns pairing
    data = _json()
    code = data.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > 32:
        raise ServiceError("invalid_code", "Send the pairing code shown in the portal, e.g. {\"code\": \"ABCD-EFGH\"}.")
    worker, token = workers.pair(code)
    return jsonify(workers.worker_config(worker, token, server_url()))


@bp.post("/worker/hello")
@worker_token_required
def worker_hello():
    data = _json()
    worker = presence.record_hello(g.worker, data, request.remote_addr)
    average = market.average_bid_micros()
    bid = market.effective_bid_micros(worker, average=average)
    config = current_app.config
    intervals = presence.advised_intervals()
    return jsonify({
        "worker_id": worker.id,
        "name": worker.name,
        "poll_seconds": intervals.poll_seconds,
        "heartbeat_seconds": intervals.heartbeat_seconds,
        "lease_seconds": config["LEASE_SECONDS"],
        "average_bid": money.fmt(average),
        "bid": money.fmt(bid),
        "custom_bid": money.fmt(worker.bid_micros) if worker.bid_micros is not None else None,
        "bench_score": worker.bench_score,
        "bench_score_reported": worker.bench_score_reported,
        # A Bench Score run is queued for this worker or will be: the app prepares its scene first.
        "bench_run_due": benchmarks.needs_run(worker, utcnow()),
        "wallet_address": worker.wallet_address,
        "country": worker.country,
        "latest_app_version": releases.latest_version(),
        "paused": fleet.paused_by_portal(worker),
    })


@bp.post("/worker/heartbeat")
@worker_token_required(reads_first=True)
def worker_heartbeat():
    data = _json()
    presence.heartbeat(g.worker_id, data.get("state", "idle"), data.get("message"), known=g.worker_auth)
    # The portal-side pause (services/fleet.py) reaches the app here: it stops claiming until false again.
    return jsonify({"ok": True, "heartbeat_seconds": presence.advised_intervals().heartbeat_seconds,
                    "paused": fleet.paused_by_portal(g.worker_auth)})


# -- tasks -----------------------------------------------------------------------------------------

@bp.post("/worker/tasks/claim")
@worker_token_required(reads_first=True, loads_worker=True)  # an idle claim's question needs no write lock
def worker_claim():
    data = _json() if request.content_length else {}
    task = dispatch.claim_task(g.worker, slot=data.get("slot"))
    if task is None:
        response = Response(status=204)
        response.headers["Retry-After"] = str(presence.advised_intervals().poll_seconds)
        return response
    return jsonify(task_payload(task))


@bp.get("/worker/tasks/<int:task_id>/inputs/<path:name>")  # a project file: its relative path
@worker_token_required
def worker_task_input(task_id, name):
    task = dispatch.running_task_of(g.worker, task_id)
    found = dispatch.task_inputs(task).get(name)
    if found is None:
        return error("not_found", f"Task {task_id} has no input named {name!r}.", 404)
    sha256 = found[0]
    path = storage.path_for(sha256)
    if not path.exists():
        return error("input_missing", "The input file is no longer stored; the job cannot run.", 410)
    # conditional=True: ETag/If-None-Match and Range requests, so an interrupted download resumes.
    return send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name=name,
                     conditional=True, etag=sha256, max_age=0)


@bp.post("/worker/tasks/<int:task_id>/progress")
@worker_token_required(reads_first=True)  # one conditional UPDATE by the worker's id: its row is not loaded
def worker_task_progress(task_id):
    data = _json()
    keep_running = dispatch.report_progress(g.worker_id, task_id, data.get("progress"), data.get("eta_s"),
                                            data.get("message"))
    if not keep_running:
        response = jsonify({"keep_running": False, "error": "task_not_running",
                            "message": "This task was canceled or given to another worker: stop it."})
        response.status_code = 409
        return response
    return jsonify({"keep_running": True, "lease_seconds": dispatch.lease_seconds()})


@bp.put("/worker/tasks/<int:task_id>/outputs/<name>")
@worker_token_required(reads_first=True, loads_worker=True)  # the task is read too, before the upload
def worker_task_output(task_id, name):
    dispatch.check_output_name(name)
    expected = (request.headers.get("X-Content-SHA256") or "").strip()
    if not HEX64.match(expected):
        return error("missing_sha256", "Send the file's SHA-256 (64 hex digits) in the X-Content-SHA256 header.", 400)
    limit = int(current_app.config["OUTPUT_MAX_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        return error("too_large", f"Outputs are limited to {limit // (1024 * 1024)} MiB.", 413)
    request.max_content_length = limit
    sha256, size = dispatch.store_output(g.worker, task_id, name, request.stream, expected, limit)
    return jsonify({"name": name, "sha256": sha256, "size": size}), 201


@bp.post("/worker/tasks/<int:task_id>/complete")
@worker_token_required(reads_first=True, loads_worker=True)  # the files are checked in the token's read
def worker_task_complete(task_id):
    data = _json()
    reward = dispatch.complete_task(g.worker, task_id, data.get("outputs"), data.get("compute_seconds"))
    return jsonify({"reward": money.fmt(reward)})


@bp.post("/worker/tasks/<int:task_id>/fail")
@worker_token_required
def worker_task_fail(task_id):
    data = _json()
    retryable = data.get("retryable", True)
    status = dispatch.fail_task(g.worker, task_id, data.get("reason"), data.get("log_tail"), retryable)
    return jsonify({"status": status.value})


@bp.post("/worker/tasks/<int:task_id>/hand-back")
@worker_token_required
def worker_task_hand_back(task_id):
    data = _json() if request.content_length else {}
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ServiceError("invalid_reason", "'reason' must be a string.")
    dispatch.hand_back_task(g.worker, task_id, reason)
    return jsonify({"status": "queued"})


# -- settings, benchmark, speed test, mining -------------------------------------------------------

@bp.get("/worker/settings")
@worker_token_required
def worker_settings():
    # Money (services/payouts.py): the wallet payouts actually go to, and where it comes from.
    return jsonify(market.settings_of(g.worker) | payouts.payout_wallet(g.worker))


@bp.put("/worker/settings")
@worker_token_required
def worker_update_settings():
    market.update_settings(g.worker, _json())
    return jsonify(market.settings_of(g.worker) | payouts.payout_wallet(g.worker))


@bp.post("/worker/benchmark")
@worker_token_required
def worker_benchmark():
    data = _json()
    market.record_benchmark(g.worker, data.get("score"), data.get("details"))
    # The answer carries the portal's own score (what prices this worker) beside the reported one.
    return jsonify(market.settings_of(g.worker))


def _speedtest_block() -> bytes:
    global _SPEEDTEST_BLOCK
    if _SPEEDTEST_BLOCK is None:
        # Random so no proxy can compress it; one MiB reused so serving 50 MB costs no entropy.
        _SPEEDTEST_BLOCK = os.urandom(1024 * 1024)
    return _SPEEDTEST_BLOCK


@bp.get("/worker/speedtest/download")
@worker_token_required
def worker_speedtest_download():
    raw = request.args.get("bytes", str(SPEEDTEST_DEFAULT_BYTES))
    if not raw.isdigit() or not 1 <= int(raw) <= SPEEDTEST_MAX_BYTES:
        return error("invalid_bytes", f"'bytes' must be a whole number from 1 to {SPEEDTEST_MAX_BYTES}.", 400)
    total = int(raw)
    block = _speedtest_block()

    def generate():
        left = total
        while left > 0:
            chunk = block[:min(left, len(block))]
            left -= len(chunk)
            yield chunk

    response = Response(generate(), mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(total)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/worker/speedtest/upload")
@worker_token_required
def worker_speedtest_upload():
    if request.content_length is not None and request.content_length > SPEEDTEST_MAX_BYTES:
        return error("too_large", f"Speed-test uploads are limited to {SPEEDTEST_MAX_BYTES} bytes.", 413)
    request.max_content_length = SPEEDTEST_MAX_BYTES
    db.session.rollback()  # nothing to write: hand the connection back while the bytes arrive
    received = 0
    while chunk := request.stream.read(256 * 1024):
        received += len(chunk)
    return jsonify({"bytes": received})


@bp.post("/worker/speedtest/result")
@worker_token_required
def worker_speedtest_result():
    data = _json()
    presence.record_speed(g.worker, data.get("download_mbps"), data.get("upload_mbps"))
    return jsonify({"download_mbps": data["download_mbps"], "upload_mbps": data["upload_mbps"]})


@bp.post("/worker/mining/report")
@worker_token_required
def worker_mining_report():
    report = mining.report(g.worker, _json())
    return jsonify({"id": report.id, **mining.serialize(report)}), 201


# -- OpenAPI ---------------------------------------------------------------------------------------



_ERROR_TEXT = {400: "Bad input", 401: "Missing or unknown worker token", 404: "No such task (or not this worker's)",
            409: "The task is no longer running on this worker", 410: "The input is no longer stored",
            413: "Body too large",
            422: "invalid_output: a declared output broke a result rule (which file, which rule); counted as a "
                 "failed attempt"}


def _errors(*codes: int) -> dict:
    return schema.errors(_ERROR_TEXT, *codes)


def _body(properties: dict, required=(), description: str | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def _op(operation_id: str, summary: str, responses: dict, body: dict | None = None, **extra) -> dict:
    operation = {"operationId": operation_id, "tags": ["worker"], "security": [{"bearer": []}],
                 "summary": summary, "responses": responses, **extra}
    if body is not None:
        operation["requestBody"] = body
    return operation


_MONEY = {"type": "string", "description": "USD as a decimal string", "example": "0.450000"}
_MONEY_OR_NULL = {**_MONEY, "nullable": True}
_OBJ = {"type": "object"}
_BINARY_BODY = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_FILE_NAME = {"name": "name", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": dispatch.OUTPUT_NAME_RE.pattern}}
_INPUT_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "the input's name as the claim lists it: a file name, or a project file's relative "
                              "path (textures/wood.png)"}
_OUTPUT = {"type": "object", "required": ["name", "sha256", "size"], "properties": {
    "name": {"type": "string", "pattern": dispatch.OUTPUT_NAME_RE.pattern},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "size": {"type": "integer", "minimum": 0}}}
_MINING_CONFIG = {"type": "object", "properties": {
    "pool": {"type": "string", "example": "stratum+tcp://etc.example.org:4444"},
    "coin": {"type": "string", "example": "ETC"}, "wallet": {"type": "string"}, "extra": {"type": "string"},
    "enabled": {"type": "boolean"}}}
_SETTINGS = {"type": "object", "properties": {
    "name": {"type": "string", "description": "the worker's name on the portal"},
    "bid": {**_MONEY, "description": "USD per compute hour the worker charges (custom or the average)"},
    "custom_bid": _MONEY_OR_NULL, "average_bid": _MONEY, "bench_score": {"type": "integer", "nullable": True},
    "bench_score_reported": {"type": "integer", "nullable": True},
    "price_per_bench_hour": _MONEY_OR_NULL, "wallet_address": {"type": "string", "nullable": True},
    "payout_wallet": {"type": "string", "nullable": True, "description": "where payouts go: the account's wallet"},
    "payout_wallet_source": {"type": "string", "nullable": True, "description": "account, or null when none is set"},
    "mining_config": _MINING_CONFIG,
    "estimated_earning_per_hour": {"type": "object", "properties": {
        "amount": _MONEY, "utilisation": {"type": "number"}, "explanation": {"type": "string"}}},
    "mining_estimate": {"type": "object", "description": "the portal's estimate from this worker's mining reports",
                        "properties": {"today": _MONEY, "last_7_days": _MONEY, "explanation": {"type": "string"},
                                       "estimate": {"type": "boolean"}}}}}
_CLAIMED_TASK = {"type": "object", "required": ["id", "job_id", "type", "params", "inputs", "lease_expires_at",
                                                "reward_estimate"], "properties": {
    "id": {"type": "integer"}, "job_id": {"type": "integer"},
    "type": {"type": "string", "enum": ["render", "upscale", "verify", "benchmark"]},
    "slot": {"type": "string", "description": "the worker's device slot the task runs on"},
    "params": {"type": "object", "description": "render: blend, frames, engine, samples, resolution_percent, "
                                                "format, device; upscale: image, scale, model; verify: kind "
                                                "(render: the crops of one frame to re-render; upscale: a tile)"},
    "inputs": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string", "description": "a file name, or a project file's relative path: the app "
                 "puts it there inside the task folder (never outside)"}, "url": {"type": "string"}, "sha256": {"type": "string"},
        "size": {"type": "integer"}}}},
    "lease_expires_at": {"type": "string", "format": "date-time"}, "lease_seconds": {"type": "integer"},
    "reward_estimate": _MONEY_OR_NULL, "bid": _MONEY, "software": {"type": "string"},
    "job_name": {"type": "string"}}}

OPENAPI_PATHS = {
    "/pair": {"post": {
        "operationId": "pairWorker", "tags": ["worker"], "security": [],
        "summary": "Trade a one-time pairing code for the worker's config (server_url, worker_id, token)",
        "requestBody": _body({"code": {"type": "string", "example": "ABCD-EF23"}}, ["code"]),
        "responses": {"200": schema.json_response({"type": "object", "properties": {
            "server_url": {"type": "string"}, "worker_id": {"type": "integer"}, "token": {"type": "string"}}},
            "The config the app stores"), **_errors(400, 413),
            "429": schema.json_response(schema.ref("Error"), "Too many tries")}}},
    "/worker/hello": {"post": _op(
        "workerHello", "Report the machine (hardware, renderers, capabilities, compliance); counts as a heartbeat",
        {"200": schema.json_response({"type": "object", "properties": {
            "poll_seconds": {"type": "integer"}, "heartbeat_seconds": {"type": "integer"},
            "lease_seconds": {"type": "integer"}, "average_bid": _MONEY, "bid": _MONEY,
            "custom_bid": _MONEY_OR_NULL, "bench_score": {"type": "integer", "nullable": True},
            "bench_run_due": {"type": "boolean", "description": "a Bench Score run is queued for this worker "
                              "or will be: it is timed from its claim, so prepare the scene first"},
            "latest_app_version": {"type": "string", "nullable": True},
            "paused": {"type": "boolean", "description": "paused from the portal: claim nothing until false"}}},
            "Timings and market settings"),
         **_errors(400, 401, 413)},
        _body({"app_version": {"type": "string"}, "os": {"type": "string"}, "hostname": {"type": "string"},
               "cpu": {"type": "string"}, "ram_mb": {"type": "integer", "minimum": 0},
               "gpus": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                   "name": {"type": "string"}, "memory_mb": {"type": "integer"}, "driver": {"type": "string"}}}},
               "renderers": {"type": "object", "additionalProperties": _OBJ},
               "capabilities": {"type": "object", "properties": {
                   "job_types": {"type": "array", "items": {"type": "string", "enum": ["render", "upscale"]}},
                   "gpu": {"type": "boolean"}, "devices": {"type": "array", "items": {"type": "string"}}}},
               "slots": {"type": "array", "maxItems": 16, "description": "the devices it runs tasks on, one at "
                         "a time each; claims name one", "items": {
                   "type": "object", "required": ["id"], "properties": {
                       "id": {"type": "string", "pattern": "^(gpu(1[0-5]|[0-9])|cpu)$"},
                       "kind": {"type": "string", "enum": ["CUDA", "OPTIX", "HIP", "ONEAPI", "METAL", "GPU", "CPU"]},
                       "name": {"type": "string"}, "memory_mb": {"type": "integer", "minimum": 0}}}},
               "compliance": {"type": "array", "items": {"type": "object", "required": ["check", "status"],
                                                         "properties": {
                   "check": {"type": "string"}, "status": {"type": "string", "enum": ["pass", "warn", "fail"]},
                   "reason": {"type": "string"}}}},
               "state": {"type": "string", "enum": ["idle", "busy", "paused", "error"]},
               "message": {"type": "string"}}))},
    "/worker/heartbeat": {"post": _op(
        "workerHeartbeat", "I am alive, in this state",
        {"200": schema.json_response({"type": "object", "properties": {
            "ok": {"type": "boolean"}, "heartbeat_seconds": {"type": "integer"},
            "paused": {"type": "boolean", "description": "paused from the portal: claim nothing until false"}}},
            "Recorded"), **_errors(400, 401, 413)},
        _body({"state": {"type": "string", "enum": ["idle", "busy", "paused", "error"]},
               "message": {"type": "string"}}, ["state"]))},
    "/worker/tasks/claim": {"post": _op(
        "claimTask", "Claim the next task this worker may run on one of its device slots (atomic: no task is "
                     "given twice; one running task per slot)",
        {"200": schema.json_response(_CLAIMED_TASK, "A task, leased to this worker"),
         "204": {"description": "Nothing to do now (or the slot is busy); poll again after Retry-After seconds"},
         **_errors(400, 401)},
        {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {
            "slot": {"type": "string", "description": "a slot id from hello; default: the first"}}}}}})},
    "/worker/tasks/{task_id}/inputs/{name}": {"parameters": [_TASK_ID, _INPUT_NAME], "get": _op(
        "downloadTaskInput", "Download an input of this worker's running task (ETag = SHA-256; Range supported)",
        {"200": {"description": "The file", "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}},
         "206": {"description": "Part of the file (Range)"}, "304": {"description": "Not modified"},
         **_errors(401, 404, 409, 410)})},
    "/worker/tasks/{task_id}/progress": {"parameters": [_TASK_ID], "post": _op(
        "reportProgress", "Report progress and extend the lease; 409 means stop (canceled or reassigned)",
        {"200": schema.json_response({"type": "object", "properties": {"keep_running": {"type": "boolean"}}},
                               "Keep going"),
         "409": schema.json_response({"type": "object", "properties": {"keep_running": {"type": "boolean"},
                                                                  "error": {"type": "string"},
                                                                  "message": {"type": "string"}}}, "Stop the task"),
         **_errors(400, 401, 404, 413)},
        _body({"progress": {"type": "number", "minimum": 0, "maximum": 1},
               "eta_s": {"type": "integer", "minimum": 0, "nullable": True},
               "message": {"type": "string", "nullable": True}}, ["progress"]))},
    "/worker/tasks/{task_id}/outputs/{name}": {"parameters": [_TASK_ID, _FILE_NAME], "put": _op(
        "uploadTaskOutput", "Upload one output file of this worker's running task (raw body)",
        {"201": schema.json_response(_OUTPUT, "Stored"), **_errors(400, 401, 404, 409, 413)},
        _BINARY_BODY,
        parameters=[{"name": "X-Content-SHA256", "in": "header", "required": True,
                     "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                     "description": "SHA-256 of the body; the upload is refused if it differs"}])},
    "/worker/tasks/{task_id}/complete": {"parameters": [_TASK_ID], "post": _op(
        "completeTask", "Finish the task: every declared output must be uploaded and pass the result checks "
                        "(exactly the task's files, each a whole image of the job's format and size); idempotent",
        {"200": schema.json_response({"type": "object", "properties": {"reward": _MONEY}},
                                     "The reward credited (pending until its spot check passes or it settles)"),
         **_errors(400, 401, 404, 409, 413, 422)},
        _body({"outputs": {"type": "array", "minItems": 1, "items": _OUTPUT},
               "compute_seconds": {"type": "number", "minimum": 0}}, ["outputs", "compute_seconds"]))},
    "/worker/tasks/{task_id}/fail": {"parameters": [_TASK_ID], "post": _op(
        "failTask", "The task failed here: retryable ones go back to the queue (never to this worker)",
        {"200": schema.json_response({"type": "object", "properties": {"status": {"type": "string"}}},
                               "The task's new status"), **_errors(400, 401, 404, 409, 413)},
        _body({"reason": {"type": "string"}, "log_tail": {"type": "string"}, "retryable": {"type": "boolean"}},
              ["reason"]))},
    "/worker/tasks/{task_id}/hand-back": {"parameters": [_TASK_ID], "post": _op(
        "handBackTask", "Give a running task back unfinished (clean shutdown); not counted as a failure",
        {"200": schema.json_response(_OBJ, "Back in the queue"), **_errors(400, 401, 404, 409, 413)},
        {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {
            "reason": {"type": "string"}}}}}})},
    "/worker/settings": {
        "get": _op("getWorkerSettings", "Bid, wallet, mining config and estimates",
                   {"200": schema.json_response(_SETTINGS, "Settings"), **_errors(401)}),
        "put": _op("updateWorkerSettings", "Change any of bid (null = network average), wallet_address, mining_config",
                   {"200": schema.json_response(_SETTINGS, "Settings"), **_errors(400, 401, 413)},
                   _body({"bid": {**_MONEY, "nullable": True, "description": "USD per hour, 0 < bid <= 100"},
                          "wallet_address": {"type": "string", "nullable": True},
                          "mining_config": _MINING_CONFIG})),
    },
    "/worker/benchmark": {"post": _op(
        "reportBenchmark", "Store the Bench Score (1000 = the reference machine)",
        {"200": schema.json_response(_SETTINGS, "Settings with the new score"), **_errors(400, 401, 413)},
        _body({"score": {"type": "integer", "minimum": 1, "maximum": market.MAX_BENCH_SCORE},
               "details": _OBJ}, ["score"]))},
    "/worker/speedtest/download": {"get": _op(
        "speedtestDownload", "Random bytes to time a download",
        {"200": {"description": "bytes", "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}, **_errors(400, 401)},
        parameters=[{"name": "bytes", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": SPEEDTEST_MAX_BYTES}}])},
    "/worker/speedtest/upload": {"post": _op(
        "speedtestUpload", "Send bytes to time an upload; they are discarded",
        {"200": schema.json_response({"type": "object", "properties": {"bytes": {"type": "integer"}}}, "Bytes received"),
         **_errors(401, 413)},
        _BINARY_BODY)},
    "/worker/speedtest/result": {"post": _op(
        "speedtestResult", "Store the measured speeds (Mbit/s)",
        {"200": schema.json_response(_OBJ, "Stored"), **_errors(400, 401, 413)},
        _body({"download_mbps": {"type": "number", "minimum": 0}, "upload_mbps": {"type": "number", "minimum": 0}},
              ["download_mbps", "upload_mbps"]))},
    "/worker/mining/report": {"post": _op(
        "reportMining", "Report a period the worker mined (ending now); the portal caps the hashrate by the "
                        "worker's GPUs and estimates the earnings from its operator's rate table",
        {"201": schema.json_response({"type": "object", "properties": {
            "id": {"type": "integer"}, "coin": {"type": "string"}, "pool": {"type": "string"},
            "hashrate": {"type": "number", "description": "H/s counted (at most the GPUs' cap)"},
            "hashrate_reported": {"type": "number"}, "period_start": {"type": "string", "format": "date-time"},
            "period_end": {"type": "string", "format": "date-time"}, "period_seconds": {"type": "integer"},
            "shares_accepted": {"type": "integer", "nullable": True},
            "shares_rejected": {"type": "integer", "nullable": True},
            "earnings": {**_MONEY, "description": "the portal's estimate"}, "estimate": {"type": "boolean"}}},
            "Accepted"), **_errors(400, 401, 409, 413)},
        _body({"coin": {"type": "string"}, "pool": {"type": "string"},
               "hashrate": {"type": "number", "minimum": 0, "description": "hashes per second, as the miner measured"},
               "period_seconds": {"type": "integer", "minimum": 1, "maximum": 86400,
                                  "description": "how long it mined, ending now"},
               "shares_accepted": {"type": "integer", "minimum": 0}, "shares_rejected": {"type": "integer", "minimum": 0}},
              ["coin", "pool", "hashrate", "period_seconds"]))},
}

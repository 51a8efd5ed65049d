"""The creator API: submit render and upscale jobs, follow them, cancel or requeue, download outputs."""

from flask import g, jsonify, request, url_for

from ..models import JobStatus
from ..services import scenes
from .. import web
from ..services import ServiceError, dispatch, job_price, jobs, permissions, queue_status, uploads
from . import bp, json_body, schema, user_token_required


def _spec_from_request():
    """The `spec` part of the multipart body: a form field or a file part holding JSON."""
    raw = request.form.get("spec")
    if raw is None and "spec" in request.files:
        raw = request.files["spec"].read(1024 * 1024).decode("utf-8", "replace")
    if raw is None:
        raise ServiceError("missing_spec", "Send the job spec as the multipart part 'spec' (a JSON object), "
                           "with the files as parts 'blend', 'images' or 'archive'.")
    spec = web.load_json(raw)
    if not isinstance(spec, dict):
        raise ServiceError("invalid_spec", "The 'spec' part must be a JSON object.")
    return spec


def _error_with_fields(exc: ServiceError):
    """The usual {error, message}, plus `fields` (field -> message) when the refusal is about fields."""
    body = {"error": exc.code, "message": exc.message}
    if isinstance(exc, jobs.SpecError):
        body["fields"] = exc.errors
    elif isinstance(exc, uploads.InputError):
        body["fields"] = {exc.field: exc.message}
    elif isinstance(exc, scenes.MissingDependencies):  # each with what to do; allow_missing submits anyway
        body["dependencies"] = [{"path": d["path"], "found": False, "kind": d.get("kind"),
                                 "advice": scenes.advice(d)} for d in exc.missing]
    return jsonify(body), exc.status


@bp.post("/jobs")
@user_token_required
def create_job():
    try:
        spec = _spec_from_request()
        kind = spec.get("type")
        if kind == "render":
            blend, project = request.files.get("blend"), request.files.get("project")
            if blend and project:
                raise uploads.InputError("bad_request", "Send either 'blend' or 'project' (a zip), not both.", "project")
            job = jobs.submit_render_job(g.user, spec, blend.stream if blend else None,
                                         blend.filename if blend else None,
                                         project=(project.filename, project.stream) if project else None)
        elif kind == "upscale":
            images = [(f.filename, f.stream) for f in request.files.getlist("images")]
            archive = request.files.get("archive")
            job = jobs.submit_upscale_job(g.user, spec, images, (archive.filename, archive.stream) if archive else None)
        else:
            raise jobs.SpecError({"type": f"Must be 'render' or 'upscale' (got {kind!r})."})
    except ServiceError as exc:
        return _error_with_fields(exc)
    response = jobs.serialize_job(job)
    return response, 201, {"Location": url_for("api.get_job", job_id=job.id)}


@bp.get("/jobs")
@user_token_required
def list_jobs():
    status = request.args.get("status") or None
    if status and status not in {s.value for s in JobStatus}:
        raise ServiceError("invalid_status", f"status must be one of {', '.join(s.value for s in JobStatus)}.")
    page = request.args.get("page", 1, type=int) or 1
    per_page = min(max(request.args.get("per_page", 25, type=int) or 25, 1), 100)
    result = jobs.list_jobs(g.user.id, status=status, page=page, per_page=per_page)
    assessments = queue_status.assess_jobs(result.items)  # the whole page's queue status at once
    return {"items": [jobs.serialize_job(j, with_tasks=False, assessment=assessments[j.id]) for j in result.items],
            "page": result.page, "pages": result.pages, "total": result.total}


@bp.get("/jobs/<int:job_id>")
@user_token_required
def get_job(job_id):
    return jobs.serialize_job(permissions.owned_job(g.user.id, job_id))


@bp.post("/jobs/<int:job_id>/cancel")
@user_token_required
def cancel_job(job_id):
    job = permissions.owned_job(g.user.id, job_id)
    dispatch.cancel(job)
    return jobs.serialize_job(job)


@bp.post("/jobs/<int:job_id>/requeue")
@user_token_required
def requeue_job(job_id):
    job = permissions.owned_job(g.user.id, job_id)
    count = dispatch.requeue_failed(job)
    return dict(jobs.serialize_job(job), requeued=count)


@bp.post("/jobs/<int:job_id>/max_price")
@user_token_required
def raise_job_max_price(job_id):
    job = permissions.owned_job(g.user.id, job_id)
    job_price.raise_max_price(job, json_body().get("max_price"))
    return jobs.serialize_job(permissions.owned_job(g.user.id, job_id))


@bp.get("/jobs/<int:job_id>/outputs.zip")
@user_token_required
def job_outputs_zip(job_id):
    return web.job_outputs_zip(permissions.owned_job(g.user.id, job_id))


@bp.get("/jobs/<int:job_id>/tasks/<int:task_id>/outputs/<path:name>")
@user_token_required
def job_output(job_id, task_id, name):
    _, output = permissions.job_output(g.user.id, job_id, task_id, name)
    return web.stored_file_download(output.sha256, name)


_SECURITY = [{"bearer": []}]
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}




_ERROR_TEXT = {400: "Bad input (JSON {error, message, fields}; missing_dependencies lists the scene's files the "
                    "upload lacks as dependencies [{path, found, kind, advice}])", 401: "Missing or bad API token",
             404: "No such job (or not yours)", 409: "Not possible in the job's state",
             410: "Outputs deleted after the retention period", 413: "Upload too large",
             402: "insufficient_credit: the budget is more than your available credit"}


def _errors(*codes: int) -> dict:
    return schema.errors(_ERROR_TEXT, *codes)


OPENAPI_COMPONENTS = {
    "JobSpec": {
        "type": "object", "required": ["type", "name"],
        "description": "render: frame_start..frame_end every frame_step, chunk frames per task; fields left "
                       "out (frame_start, frame_end, frame_step, samples, resolution_percent, engine, format) "
                       "take the .blend's own values; upscale: one task per image. Unknown fields are rejected.",
        "properties": {
            "type": {"type": "string", "enum": ["render", "upscale"]},
            "name": {"type": "string", "minLength": 1, "maxLength": jobs.NAME_MAX},
            "frame_start": {"type": "integer", "minimum": 0, "maximum": jobs.FRAME_MAX},
            "frame_end": {"type": "integer", "minimum": 0, "maximum": jobs.FRAME_MAX},
            "frame_step": {"type": "integer", "minimum": 1, "default": 1},
            "chunk": {"type": "integer", "minimum": 1, "maximum": jobs.CHUNK_MAX, "default": 1},
            "engine": {"type": "string", "enum": list(jobs.ENGINES), "default": "CYCLES"},
            "samples": {"type": "integer", "minimum": 1, "maximum": jobs.SAMPLES_MAX, "default": 128},
            "resolution_percent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
            "format": {"type": "string", "enum": list(jobs.FORMATS), "default": "PNG"},
            "device": {"type": "string", "enum": list(jobs.DEVICES), "default": "any"},
            "priority": {"type": "integer", "minimum": jobs.PRIORITY_MIN, "maximum": jobs.PRIORITY_MAX,
                         "default": 0},
            "max_price": {"type": "string", "example": "0.80",
                          "description": "USD per bench-hour (decimal string > 0); default: average bid + 25%"},
            "budget": {"type": "string", "example": "25.00",
                       "description": "USD spend limit (decimal string > 0), held from your credit at submission; "
                                      "the job pauses when its spend reaches it (402 insufficient_credit beyond "
                                      "your available credit)"},
            "main": {"type": "string", "example": "shots/shot010.blend",
                     "description": "render with a 'project' zip: the .blend to render, its path inside the zip "
                                    "(default: the only .blend at the top of the zip)"},
            "allow_missing": {"type": "boolean", "default": False,
                              "description": "render: submit although the scene uses files the upload lacks "
                                             "(otherwise 400 missing_dependencies lists them)"},
            "scale": {"type": "integer", "enum": list(jobs.SCALES), "default": 4},
            "model": {"type": "string", "enum": list(jobs.MODELS), "default": jobs.DEFAULT_MODEL},
        },
    },
    "JobList": {"type": "object", "required": ["items", "page", "pages", "total"], "properties": {
        "items": {"type": "array", "items": schema.ref("Job")}, "page": {"type": "integer"},
        "pages": {"type": "integer"}, "total": {"type": "integer"}}},
}

_ZIP = {"description": "A zip of the completed tasks' outputs, streamed. Its layout is stable (a file is always at "
                      "the same path): each output at the top level under the name its task delivered (frame_0001.png "
                      "..., <image>_x4.png), except a name two of the job's tasks deliver, which is in "
                      "task-<seq, 4 digits>/<name> for each of them",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}

OPENAPI_PATHS = {
    "/jobs": {
        "post": {
            "operationId": "createJob", "tags": ["creator"], "security": _SECURITY,
            "summary": "Submit a render (.blend or project zip) or upscale (images or one zip) job",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["spec"], "properties": {
                    "spec": {"type": "string", "description": "JSON of a JobSpec"},
                    "blend": {"type": "string", "format": "binary", "description": "render: the .blend file"},
                    "project": {"type": "string", "format": "binary",
                                "description": "render, instead of blend: a zip of the project (the .blend and the "
                                               "files it uses at their relative paths; spec 'main' names the .blend)"},
                    "images": {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": "upscale: PNG, JPEG or WebP images (repeat the part)"},
                    "archive": {"type": "string", "format": "binary", "description": "upscale: one zip of images"},
                }}}}},
            "responses": {"201": schema.json_response(schema.ref("Job"), "The job, its tasks queued"), **_errors(400, 401, 402, 413)},
        },
        "get": {
            "operationId": "listJobs", "tags": ["creator"], "security": _SECURITY,
            "summary": "Your jobs, newest first (without their tasks)",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": [s.value for s in JobStatus]}},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
            ],
            "responses": {"200": schema.json_response(schema.ref("JobList"), "One page of jobs"), **_errors(400, 401)},
        },
    },
    "/jobs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {"operationId": "getJob", "tags": ["creator"], "security": _SECURITY,
                "summary": "A job with per-task status, progress and outputs, and its cost so far",
                "responses": {"200": schema.json_response(schema.ref("Job"), "The job"), **_errors(401, 404)}},
    },
    "/jobs/{job_id}/cancel": {
        "parameters": [_JOB_ID],
        "post": {"operationId": "cancelJob", "tags": ["creator"], "security": _SECURITY,
                 "summary": "Cancel: queued tasks never start, running ones stop at their next progress report",
                 "responses": {"200": schema.json_response(schema.ref("Job"), "The canceled job"), **_errors(401, 404, 409)}},
    },
    "/jobs/{job_id}/max_price": {
        "parameters": [_JOB_ID],
        "post": {"operationId": "raiseJobMaxPrice", "tags": ["creator"], "security": _SECURITY,
                 "summary": "Raise the maximum price per bench-hour (its queued tasks take it at once): what a "
                            "price_too_low waiting message asks for",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["max_price"], "properties": {
                         "max_price": {"type": "string", "example": "0.80",
                                       "description": "USD per bench-hour, more than the current maximum"}}}}}},
                 "responses": {"200": schema.json_response(schema.ref("Job"), "The job"), **_errors(400, 401, 404, 409)}},
    },
    "/jobs/{job_id}/requeue": {
        "parameters": [_JOB_ID],
        "post": {"operationId": "requeueFailedTasks", "tags": ["creator"], "security": _SECURITY,
                 "summary": "Put the job's failed tasks back in the queue",
                 "responses": {"200": schema.json_response({"allOf": [schema.ref("Job"), {"type": "object", "properties": {
                     "requeued": {"type": "integer"}}}]}, "The job"), **_errors(401, 404, 409)}},
    },
    "/jobs/{job_id}/outputs.zip": {
        "parameters": [_JOB_ID],
        "get": {"operationId": "downloadJobOutputs", "tags": ["creator"], "security": _SECURITY,
                "summary": "All outputs of the completed tasks as one zip",
                "responses": {"200": _ZIP, **_errors(401, 404, 410)}},
    },
    "/jobs/{job_id}/tasks/{task_id}/outputs/{name}": {
        "parameters": [_JOB_ID, {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                       {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"operationId": "downloadTaskOutput", "tags": ["creator"], "security": _SECURITY,
                "summary": "One output file of a completed task",
                "responses": {"200": {"description": "The file", "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}}, **_errors(401, 404, 410)}},
    },
}

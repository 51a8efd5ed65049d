"""The creators' pages: job list, new render/upscale job, job detail with live progress and outputs."""

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import money
from ..extensions import htmx
from ..forms import EmptyForm, MaxPriceForm, RenderJobForm, UpscaleJobForm
from ..models import Job, JobStatus, Task
from ..services import ServiceError, dispatch, jobs, market, outputs, permissions, thumbnails, uploads, verification
from ..services import scenes
from ..services import job_price, projection, queue_status
from ..web import job_outputs_zip, stored_file_download

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

TASKS_PER_PAGE = 50
THUMBS_SHOWN = 48
ACTIVE_JOB = (JobStatus.QUEUED, JobStatus.RUNNING)


def _page_arg() -> int:
    return request.args.get("page", 1, type=int) or 1


def _vary(response):
    response.headers["Vary"] = "HX-Request"  # one URL serves the page and its live fragment
    return response


@bp.get("")
@login_required
def index():
    status = request.args.get("status") or None
    page = jobs.list_jobs(current_user.id, status=status, page=_page_arg(),
                          per_page=current_app.config["PAGE_SIZE"])
    summaries = jobs.job_summaries([j.id for j in page.items])
    waiting = queue_status.waiting_for_jobs(page.items)  # the page's queue status in one go
    live = any(j.status in ACTIVE_JOB for j in page.items)
    template = "jobs/_table.html" if htmx else "jobs/index.html"
    return _vary(Response(render_template(template, page=page, summaries=summaries, waiting=waiting, status=status,
                                          statuses=[s.value for s in JobStatus], live=live)))


def _new_page(render_form=None, upscale_form=None, status=200, active="render", draft=None):
    default_price = market.default_max_price_micros()
    render_form = render_form or RenderJobForm(prefix="render")
    if draft is not None:  # an empty field shows the value it will take
        for key, value in scenes.file_defaults(draft.reading).items():
            if key in ("engine", "format"):
                label = jobs.ENGINES.get(value, value.replace("_", "")) if key == "engine" else value.replace("_", "")
                render_form[key].choices = [("", f"From the file: {label}"), *render_form[key].choices[1:]]
            else:
                render_form[key].render_kw = {"placeholder": f"{value} (from the file)"}
    return render_template(
        "jobs/new.html", render_form=render_form,
        upscale_form=upscale_form or UpscaleJobForm(prefix="upscale"), active=active,
        default_price=money.fmt(default_price), default_price_usd=money.usd(default_price, 4),
        limits=jobs, max_images=uploads.MAX_IMAGES, **_scene_context(draft)), status


def _scene_context(draft, error: str | None = None) -> dict:
    """What the form shows of the uploaded scene (templates/jobs/_scene.html)."""
    reading = draft.reading if draft is not None else {}
    return {"draft": draft, "scene": reading.get("settings"), "scene_notes": scenes.notes(reading),
            "dependencies": reading.get("dependencies") or [], "missing": scenes.missing(reading),
            "advice": scenes.advice, "pack_advice": scenes.PACK_ADVICE, "scene_error": error,
            "engines": jobs.ENGINES}


@bp.get("/new")
@login_required
def new():
    return _new_page(active=request.args.get("type", "render"))


def _show_errors(form, exc: ServiceError) -> None:
    """Put a service's refusal next to the field it is about (or above the form)."""
    if isinstance(exc, jobs.SpecError):
        pairs = exc.errors.items()
    elif isinstance(exc, scenes.MissingDependencies):  # the files are listed with the scene, with what to do
        pairs = [("allow_missing", f"The scene uses {len(exc.missing)} file(s) the upload lacks (listed above): "
                                   "add them, or tick this to render without them.")]
    else:
        pairs = [(getattr(exc, "field", None), exc.message)]
    for key, message in pairs:
        key = {"project": "blend"}.get(key, key)  # one file field takes a .blend or a project zip
        field = form._fields.get(key) if key else None
        if field is not None:
            field.errors = list(field.errors) + [message]
        else:
            form.form_errors.append(message)


def _upload(storage_obj):
    """A FileStorage the browser really sent (an empty file input arrives with no filename)."""
    return storage_obj if storage_obj is not None and getattr(storage_obj, "filename", "") else None


@bp.post("/new/render")
@login_required
def create_render():
    form = RenderJobForm(prefix="render")
    draft = None
    if form.validate_on_submit():
        spec = {key: form[key].data for key in ("name", "frame_start", "frame_end", "frame_step", "chunk",
                                                 "engine", "samples", "resolution_percent", "format",
                                                 "device", "priority", "max_price")}
        spec["type"] = "render"
        spec["max_price"] = (spec["max_price"] or "").strip() or None
        spec["budget"] = (form.budget.data or "").strip() or None
        spec["engine"], spec["format"] = spec["engine"] or None, spec["format"] or None  # empty: the file's
        spec["allow_missing"] = bool(form.allow_missing.data)
        if (form.main.data or "").strip():
            spec["main"] = form.main.data.strip()
        upload = _upload(form.blend.data)
        try:
            if upload is None and form.draft.data:  # uploaded before: the form was corrected
                draft = scenes.owned_draft(current_user.id, form.draft.data)
            job = jobs.submit_render_job(current_user, spec, upload.stream if upload else None,
                                         upload.filename if upload else None, draft=draft, keep_draft=True)
        except ServiceError as exc:
            draft = getattr(exc, "draft", None) or draft
            _show_errors(form, exc)
        else:
            flash(f"Render job “{job.name}” submitted: {len(job.tasks)} task(s) queued.", "success")
            return redirect(url_for("jobs.detail", job_id=job.id))
    elif form.draft.data:
        try:
            draft = scenes.owned_draft(current_user.id, form.draft.data)
        except ServiceError:
            draft = None
    return _new_page(render_form=form, status=400, active="render", draft=draft)


@bp.post("/new/render/scene")
@login_required
def render_scene():
    """htmx: the file chosen in the form, uploaded and read at once; answers the scene panel."""
    form = RenderJobForm(prefix="render")
    upload = _upload(form.blend.data)
    draft, error = None, None
    if upload is None:
        error = "Choose a .blend file, or a .zip of the project."
    else:
        try:
            draft = jobs.upload_scene(current_user, upload.filename, upload.stream, (form.main.data or "").strip() or None)
        except ServiceError as exc:
            error = exc.message
        else:
            scenes.discard_draft(current_user.id, form.draft.data)  # the file it replaces, if any
    # A fragment the form swaps in: 200 even for a refused file, whose message is the content.
    return render_template("jobs/_scene.html", f=form, **_scene_context(draft, error))


@bp.post("/new/upscale")
@login_required
def create_upscale():
    form = UpscaleJobForm(prefix="upscale")
    if form.validate_on_submit():
        spec = {"type": "upscale", "name": form.name.data, "scale": form.scale.data, "model": form.model.data,
                "priority": form.priority.data, "max_price": (form.max_price.data or "").strip() or None,
                "budget": (form.budget.data or "").strip() or None}
        images = [(f.filename, f.stream) for f in (form.images.data or []) if _upload(f)]
        archive = _upload(form.archive.data)
        try:
            job = jobs.submit_upscale_job(current_user, spec, images,
                                          (archive.filename, archive.stream) if archive else None)
        except ServiceError as exc:
            _show_errors(form, exc)
        else:
            flash(f"Upscale job “{job.name}” submitted: {len(job.tasks)} image(s) queued.", "success")
            return redirect(url_for("jobs.detail", job_id=job.id))
    return _new_page(upscale_form=form, status=400, active="upscale")


def _detail_context(job: Job) -> dict:
    counts = jobs.task_counts(job)
    pages = max(1, -(-counts["total"] // TASKS_PER_PAGE))
    page = min(max(1, _page_arg()), pages)
    tasks = outputs.tasks_with_outputs(job, page=page, per_page=TASKS_PER_PAGE)
    costs, assessment = jobs.cost_summary(job), queue_status.assess_jobs([job])[job.id]
    return {
        "job": job, "counts": counts, "progress": jobs.job_progress(job), "costs": costs,
        "waiting": assessment.waiting, "projection": projection.project(job, costs, assessment=assessment),
        "price_form": MaxPriceForm(formdata=None, max_price=money.fmt(assessment.waiting.price_needed_micros).rstrip("0").rstrip(".")
                                   if assessment.waiting and assessment.waiting.price_needed_micros else None),
        "tasks": tasks, "checks": verification.states_of([t.id for t in tasks]), "page": page, "pages": pages,
        "outputs": [] if job.outputs_purged_at else outputs.completed_outputs(job, limit=THUMBS_SHOWN),
        "live": job.status in ACTIVE_JOB, "action_form": EmptyForm(), "thumbs_shown": THUMBS_SHOWN,
    }


@bp.get("/<int:job_id>")
@login_required
def detail(job_id):
    job = permissions.owned_job(current_user.id, job_id)
    template = "jobs/_live.html" if htmx else "jobs/detail.html"
    return _vary(Response(render_template(template, **_detail_context(job))))


@bp.post("/<int:job_id>/cancel")
@login_required
def cancel(job_id):
    job = permissions.owned_job(current_user.id, job_id)
    if EmptyForm().validate_on_submit():
        try:
            dispatch.cancel(job)
        except ServiceError as exc:
            flash(exc.message, "error")
        else:
            flash("Job canceled: queued tasks won't start, running ones stop at their next report.", "success")
    return redirect(url_for("jobs.detail", job_id=job.id))


@bp.post("/<int:job_id>/max-price")
@login_required
def raise_max_price(job_id):
    job = permissions.owned_job(current_user.id, job_id)
    form = MaxPriceForm()
    if form.validate_on_submit():
        try:
            micros = job_price.raise_max_price(job, form.max_price.data)
        except ServiceError as exc:
            flash(exc.message, "error")
        else:
            flash(f"Maximum price raised to {money.usd_exact(micros)} per bench-hour: the queued tasks are offered "
                  "to workers at that price now.", "success")
    else:
        flash("Enter the new maximum price, e.g. 0.80.", "error")
    return redirect(url_for("jobs.detail", job_id=job.id))


@bp.post("/<int:job_id>/requeue")
@login_required
def requeue(job_id):
    job = permissions.owned_job(current_user.id, job_id)
    if EmptyForm().validate_on_submit():
        try:
            count = dispatch.requeue_failed(job)
        except ServiceError as exc:
            flash(exc.message, "error")
        else:
            flash(f"{count} failed task(s) back in the queue.", "success")
    return redirect(url_for("jobs.detail", job_id=job.id))


@bp.get("/<int:job_id>/outputs.zip")
@login_required
def outputs_zip(job_id):
    return job_outputs_zip(permissions.owned_job(current_user.id, job_id))


@bp.get("/<int:job_id>/outputs/<int:task_id>/<path:name>")
@login_required
def output(job_id, task_id, name):
    _, out = permissions.job_output(current_user.id, job_id, task_id, name)
    return stored_file_download(out.sha256, name)


@bp.get("/<int:job_id>/thumb/<int:task_id>/<path:name>")
@login_required
def thumb(job_id, task_id, name):
    _, out = permissions.job_output(current_user.id, job_id, task_id, name)
    data = thumbnails.thumbnail(out.sha256)
    response = Response(data, mimetype=thumbnails.content_type(data))
    # Content-addressed and owner-only: the browser may keep it, shared caches may not.
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.set_etag(out.sha256)
    return response.make_conditional(request)


@bp.app_template_filter("task_label")
def task_label(task: Task) -> str:
    """What a task works on, in the creator's words: 'Frames 1–10' or the image's name."""
    params = task.params or {}
    if "frames" in params:
        frames = params["frames"]
        if len(frames) == 1:
            return f"Frame {frames[0]}"
        step = frames[1] - frames[0]
        return f"Frames {frames[0]}–{frames[-1]}" + (f" (every {step})" if step != 1 else "")
    return params.get("image", f"Task {task.seq}")

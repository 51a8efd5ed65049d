"""Worker Management, New Worker and Worker Details pages (HTMX fragments for the live parts)."""

import json
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from jinja2_fragments.flask import render_block
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from .. import charts, timezones
from ..clock import utcnow
from ..extensions import db, htmx
from ..forms import EmptyForm
from ..models import TaskStatus, WorkerStatus
from ..services import ServiceError, dispatch, fleet, permissions, presence, stats
from ..services import workers as worker_service
from ..security import seal, unseal
from ..web import chart_response, server_url

bp = Blueprint("workers", __name__, url_prefix="/workers")

LIST_DEFAULTS = {"q": "", "status": "", "tag": "", "gpu": "", "sort": "created", "order": "desc", "page": 1}
TASK_DEFAULTS = {"q": "", "status": "", "sort": "created", "order": "desc", "page": 1}
PAIRING_SESSION_KEY = "pairing_codes"


class WorkerNameForm(FlaskForm):
    name = StringField("Worker name", validators=[
        DataRequired(message="Give the worker a name."),
        Length(max=80, message="A worker name has at most 80 characters.")])


# --- helpers ----------------------------------------------------------------------------------------

def _page_size() -> int:
    return int(current_app.config.get("PAGE_SIZE", 25))


def _state(defaults: dict) -> dict:
    """The list state from the query string (unknown values are left for the service to reject)."""
    state = {key: request.args.get(key, default) for key, default in defaults.items()}
    try:
        state["page"] = max(1, int(state["page"]))
    except (TypeError, ValueError):
        state["page"] = 1
    state["q"] = (state["q"] or "").strip()[:200]
    return state


def _query(state: dict, defaults: dict, **changes) -> dict:
    """Query-string arguments for a link: the current state with changes, defaults left out (short URLs)."""
    merged = {**state, **changes}
    return {k: v for k, v in merged.items() if v not in (None, "") and str(v) != str(defaults.get(k))}


def _fragment(template: str, block: str, **context) -> Response:
    response = current_app.make_response(render_block(template, block, **context))
    response.vary.add("HX-Request")
    return response


def _partial(template: str, **context) -> Response:
    response = current_app.make_response(render_template(template, **context))
    response.vary.add("HX-Request")
    return response


def _page(template: str, http_status: int = 200, **context) -> Response:
    response = current_app.make_response((render_template(template, **context), http_status))
    response.vary.add("HX-Request")
    return response


def _wants_fragment() -> bool:
    # A history restore after a cache miss needs the whole page, not a fragment.
    return bool(htmx) and not htmx.history_restore_request and not htmx.boosted


def _safe_next(default: str) -> str:
    target = request.form.get("next") or request.args.get("next") or ""
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return default


def _rows(items, now) -> list[dict]:
    """What each table row shows about a worker, with one query per uptime figure for the page."""
    ids = [w.id for w in items]
    percents, currents = presence.uptime_percent(ids, now=now), presence.current_uptimes(ids, now=now)
    rows = []
    for worker in items:
        status = worker_service.status_of(worker, now).value
        rows.append({"worker": worker, "status": status, "uptime_percent": float(percents[worker.id] or 0.0),
                     "uptime_seconds": 0 if status in ("offline", "pending") else currents[worker.id]})
    return rows


# --- Worker Management -------------------------------------------------------------------------------

@bp.get("")
@login_required
def index():
    now = utcnow()
    state = _state(LIST_DEFAULTS)
    filters = {"q": state["q"], "status": state["status"] or None, "tag": state["tag"], "gpu": state["gpu"]}
    try:
        page = worker_service.list_workers(current_user.id, sort=state["sort"], order=state["order"],
                                           page=state["page"], per_page=_page_size(), now=now, **filters)
    except ServiceError as exc:
        abort(400, exc.message)
    if page.total and state["page"] > page.pages:
        # A page that emptied (workers deleted meanwhile): show the last one that has rows.
        state["page"] = page.pages
        page = worker_service.list_workers(current_user.id, sort=state["sort"], order=state["order"],
                                           page=page.pages, per_page=_page_size(), now=now, **filters)
    context = {
        "state": state,
        "page": page,
        "rows": _rows(page.items, now),
        "counts": worker_service.status_counts(current_user.id, now=now),
        "statuses": [s.value for s in WorkerStatus],
        "list_url": lambda **changes: url_for("workers.index", **_query(state, LIST_DEFAULTS, **changes)),
        "next_url": url_for("workers.index", **_query(state, LIST_DEFAULTS)),
        "delete_form": EmptyForm(),
        "bulk_actions": BULK_ACTIONS,
        "now": now,
    }
    if _wants_fragment():
        return _fragment("workers/index.html", "live", **context)
    from ..services import payouts  # the Earnings card on top (services/payouts.py sums the ledger)
    return _page("workers/index.html", figures=payouts.earnings(current_user.id, now),
                 tags=fleet.owner_tags(current_user.id), gpu_models=fleet.owner_gpu_models(current_user.id),
                 **context)


# The bulk bar's choices, in the order a farm operator reaches for them.
BULK_ACTIONS = [("pause", "Pause"), ("resume", "Resume"), ("set_bid", "Set bid…"), ("tag", "Add tags…"),
                ("untag", "Remove tags…"), ("delete", "Delete")]
_BULK_DONE = {"pause": "Paused", "resume": "Resumed", "set_bid": "Set the bid of", "tag": "Tagged",
              "untag": "Untagged", "delete": "Deleted"}


def _plural(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


@bp.post("/bulk")
@login_required
def bulk():
    """One action on many workers. The first post answers with a confirmation that says how many of the
    user's workers it names; the confirmed post (confirm=1) does it (services/fleet.py)."""
    if not EmptyForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    form = request.form
    all_matching = form.get("all_matching") == "1"
    filters = {key: (form.get(key) or "").strip()[:200] or None for key in ("q", "status", "tag", "gpu")}
    ids = form.getlist("ids")
    next_url = _safe_next(url_for("workers.index"))
    context = {"next_url": next_url, "all_matching": all_matching, "filters": filters, "form": form}
    try:
        if not all_matching and not ids:
            raise ServiceError("invalid_ids", "Select workers first (the box at the start of each row), or tick "
                                              "“all matching the filter”.")
        arguments = fleet.prepare(form.get("action"), bid=form.get("bid"), tags=form.get("tags"))
        chosen = fleet.target_ids(current_user.id, ids=ids or None, all_matching=all_matching, **filters)
        if not chosen:
            raise ServiceError("invalid_ids", "None of the selected workers is in your list any more.")
        if form.get("confirm") == "1":
            result = fleet.apply(current_user.id, chosen, arguments["action"],
                                 bid_micros=arguments.get("bid_micros"), tags=arguments.get("tags"))
            flash(f"{_BULK_DONE[result.action.value]} {_plural(result.matched)}"
                  + (f" ({result.changed} changed)." if result.changed != result.matched else "."), "success")
            if htmx:
                response = current_app.make_response("")
                response.headers["HX-Redirect"] = next_url
                return response
            return redirect(next_url)
    except ServiceError as exc:
        db.session.rollback()
        return _partial_or_page("workers/_bulk_confirm.html", 400, error=exc.message, **context)
    verb = fleet.ACTION_VERBS[arguments["action"]]
    return _partial_or_page("workers/_bulk_confirm.html", 200, action=arguments["action"].value, verb=verb,
                            count=len(chosen), ids=chosen, label=_plural(len(chosen)),
                            bid=form.get("bid") or "", tags=" ".join(arguments.get("tags") or []), **context)


def _partial_or_page(template: str, http_status: int, **context) -> Response:
    """The fragment for htmx; without JavaScript, the same fragment in a page of its own."""
    if htmx:
        # 200 even for a refusal: htmx swaps no 4xx, and the message belongs where the user is looking.
        return _partial(template, **context)
    return _page("workers/bulk.html", http_status=http_status, fragment=template, **context)


@bp.post("/<int:worker_id>/rename")
@login_required
def rename(worker_id):
    worker = permissions.owned_worker(current_user.id, worker_id)
    form = WorkerNameForm()
    error = None
    if form.validate_on_submit():
        try:
            worker_service.rename(worker, form.name.data)
        except ServiceError as exc:
            db.session.rollback()
            error = exc.message
    else:
        error = "; ".join(e for errors in form.errors.values() for e in errors) or "Give the worker a name."
    if htmx:
        # The row, swapped in place; with its rename form still open when the name was refused.
        now = utcnow()
        response = current_app.make_response(render_template(
            "workers/_row.html", row=_rows([worker], now)[0], now=now, rename_error=error,
            rename_value=form.name.data, next_url=_safe_next(url_for("workers.index")), delete_form=EmptyForm()))
        return response
    if error:
        flash(f"Could not rename the worker: {error}", "error")
    else:
        flash(f"Renamed to “{worker.name}”.", "success")
    return redirect(_safe_next(url_for("workers.index")))


class WorkerLocationForm(FlaskForm):
    location = StringField("Location", validators=[
        Length(max=worker_service.LOCATION_MAX, message="A location has at most 128 characters.")])


@bp.post("/<int:worker_id>/location")
@login_required
def set_location(worker_id):
    """The provider's own location label (e.g. a farm's site), overriding the IP lookup; empty clears it."""
    worker = permissions.owned_worker(current_user.id, worker_id)
    form = WorkerLocationForm()
    try:
        if not form.validate_on_submit():
            raise ServiceError("invalid_location", "; ".join(e for errs in form.errors.values() for e in errs))
        worker_service.set_location(worker, form.location.data)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Could not set the location: {exc.message}", "error")
    else:
        flash("Location saved." if worker.location_override else "Location cleared: it follows the worker's IP.",
              "success")
    return redirect(url_for("workers.detail", worker_id=worker.id))


@bp.post("/<int:worker_id>/delete")
@login_required
def delete(worker_id):
    worker = permissions.owned_worker(current_user.id, worker_id)
    if not EmptyForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    name = worker.name
    worker_service.delete(worker)
    flash(f"Deleted “{name}”: its token no longer works; its history and earnings are kept.", "success")
    target = _safe_next(url_for("workers.index"))
    if target.startswith(url_for("workers.detail", worker_id=worker_id)):
        target = url_for("workers.index")
    return redirect(target)


# --- New Worker ----------------------------------------------------------------------------------------

def _remember_code(worker_id: int, code: str) -> None:
    # The code exists only in this response and, sealed, in the session cookie (hashed in the
    # database): the guide page can show it again, while the cookie's holder can't read it (Flask's
    # session is signed, not encrypted).
    codes = dict(session.get(PAIRING_SESSION_KEY) or {})
    codes[str(worker_id)] = seal(code, current_app.secret_key, PAIRING_SESSION_KEY)
    session[PAIRING_SESSION_KEY] = dict(list(codes.items())[-5:])


def _live_code(worker, now) -> str | None:
    """The pairing code this browser was shown for `worker`, if it is still the worker's live code."""
    sealed = (session.get(PAIRING_SESSION_KEY) or {}).get(str(worker.id))
    code = unseal(sealed, current_app.secret_key, PAIRING_SESSION_KEY,
                  60 * int(current_app.config["PAIRING_MINUTES"])) if isinstance(sealed, str) else None
    return code if worker_service.is_live_pairing_code(worker, code, now) else None


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    form = WorkerNameForm()
    if form.validate_on_submit():
        try:
            worker, code, _token = worker_service.create_worker(current_user, form.name.data)
        except ServiceError as exc:
            db.session.rollback()
            form.name.errors = [exc.message]
        else:
            _remember_code(worker.id, code)
            return redirect(url_for("workers.setup", worker_id=worker.id))
        return _page("workers/new.html", http_status=400, form=form)
    status = 400 if request.method == "POST" else 200
    return _page("workers/new.html", http_status=status, form=form)


def _setup_context(worker, now) -> dict:
    code = _live_code(worker, now)
    return {
        "worker": worker,
        "status": worker_service.status_of(worker, now).value,
        "code": code,
        "expires_at": worker.pairing_expires_at if code else None,
        "seconds_left": max(0, int((worker.pairing_expires_at - now).total_seconds())) if code else 0,
        "server_url": server_url(),
        "form": EmptyForm(),
        "now": now,
    }


@bp.get("/<int:worker_id>/setup")
@login_required
def setup(worker_id):
    worker = permissions.owned_worker(current_user.id, worker_id)
    return _page("workers/setup.html", **_setup_context(worker, utcnow()))


@bp.post("/<int:worker_id>/pairing-code")
@login_required
def pairing_code(worker_id):
    worker = permissions.owned_worker(current_user.id, worker_id)
    if not EmptyForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    _remember_code(worker.id, worker_service.regenerate_pairing_code(worker))
    if htmx:
        return render_template("workers/_pairing.html", **_setup_context(worker, utcnow()))
    flash("A new pairing code was created; the previous one no longer works.", "success")
    return redirect(url_for("workers.setup", worker_id=worker.id))


@bp.get("/<int:worker_id>/connection")
@login_required
def connection(worker_id):
    """Polled by the guide page: keeps polling while the worker is pending, stops once it connected."""
    worker = permissions.owned_worker(current_user.id, worker_id)
    now = utcnow()
    return render_template("workers/_connection.html", worker=worker,
                           status=worker_service.status_of(worker, now).value, now=now)


@bp.post("/<int:worker_id>/config.json")
@login_required
def config_file(worker_id):
    """A config file for the Worker App. Only the token's hash is stored, so the file carries a fresh token:
    downloading it signs out an app that used the previous token, and retires the pairing code."""
    worker = permissions.owned_worker(current_user.id, worker_id)
    if not EmptyForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    token = worker_service.reissue_token(worker)
    body = json.dumps(worker_service.worker_config(worker, token, server_url()), indent=2) + "\n"
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="pictor-worker-{worker.id}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Worker Details ------------------------------------------------------------------------------------

PREVIEWABLE = (".png", ".jpg", ".jpeg", ".webp")


def _output_links(task, output) -> dict:
    """The output's name, and links to it and its thumbnail when the jobs pages serve them to this user
    (the job's creator owns the files; a provider rendering someone else's job sees the names only)."""
    links = {"name": output.name, "url": None, "thumb": None}
    if task.job.owner_id != current_user.id or "jobs.output" not in current_app.view_functions:
        return links
    args = {"job_id": task.job_id, "task_id": task.id, "name": output.name}
    links["url"] = url_for("jobs.output", **args)
    if "jobs.thumb" in current_app.view_functions and output.name.lower().endswith(PREVIEWABLE):
        links["thumb"] = url_for("jobs.thumb", **args)
    return links


def _task_rows(page, worker, now) -> list[dict]:
    rows = []
    for task in page.items:
        rows.append({
            "task": task,
            "software": worker_service.task_software_label(task, worker),
            "duration": worker_service.task_duration_seconds(task, now),
            "estimate": dispatch.reward_estimate_micros(task) if task.status == TaskStatus.RUNNING else None,
            "outputs": [_output_links(task, o) for o in task.outputs] if task.status == TaskStatus.COMPLETED else [],
            "job_url": url_for("jobs.detail", job_id=task.job_id)
            if task.job.owner_id == current_user.id and "jobs.detail" in current_app.view_functions else None,
        })
    return rows


@bp.get("/<int:worker_id>")
@login_required
def detail(worker_id):
    worker = permissions.owned_worker(current_user.id, worker_id)
    now = utcnow()
    tab = request.args.get("tab", "stats")
    if tab not in ("stats", "tasks"):
        abort(400, "Unknown tab: use stats or tasks.")
    context = {"worker": worker, "tab": tab, "now": now, "status": worker_service.status_of(worker, now).value,
               "summary": stats.summary(worker, now=now)}
    from ..services import slots  # each GPU with its state, current task and earnings (the head's Devices card)
    context["device_slots"] = slots.summary(worker, micros=True)
    from ..services import market  # its bid as $/hour beside the resulting $/bench-hour (market.py prices)
    context.update(bid_micros=market.effective_bid_micros(worker, now), price_micros=market.worker_price_micros(worker, now))
    if _wants_fragment() and htmx.target == "worker-head":
        return _partial("workers/_head.html", **context)
    status_code = 200
    if tab == "stats":
        period = request.args.get("period", "week")
        start, end = request.args.get("from", ""), request.args.get("to", "")
        chart_args = {"period": period}
        if period == "custom":
            chart_args.update({"from": start, "to": end})
        period_error = None
        try:
            series = stats.series(worker.id, period, start or None, end or None, now=now, zone=timezones.current_zone())
        except ServiceError as exc:
            period_error, status_code = exc.message, 400
            series = stats.series(worker.id, "week", now=now, zone=timezones.current_zone())
            chart_args = {"period": "week"}
        context.update({
            "series": series,
            "period": period,
            "period_from": start or (series.start.isoformat()),
            "period_to": end or (series.end.isoformat()),
            "period_error": period_error,
            "chart_args": chart_args,
            "charts": charts.CHARTS,
            "compliance": worker_service.compliance_checks(worker),
            "gpu_groups": worker_service.gpu_groups(worker),
        })
    else:
        state = _state(TASK_DEFAULTS)
        try:
            page = worker_service.list_tasks(worker, q=state["q"], status=state["status"] or None,
                                             sort=state["sort"], order=state["order"], page=state["page"],
                                             per_page=_page_size())
        except ServiceError as exc:
            abort(400, exc.message)
        context.update({
            "state": state,
            "page": page,
            "rows": _task_rows(page, worker, now),
            "any_running": any(t.status == TaskStatus.RUNNING for t in page.items),
            "task_statuses": [s.value for s in TaskStatus],
            "tasks_url": lambda **changes: url_for("workers.detail", worker_id=worker.id, tab="tasks",
                                                   **_query(state, TASK_DEFAULTS, **changes)),
        })
        if _wants_fragment() and htmx.target == "worker-tasks":
            return _partial("workers/_task_table.html", **context)
    return _page("workers/detail.html", http_status=status_code, **context)


@bp.get("/<int:worker_id>/charts/<name>.svg")
@login_required
def chart(worker_id, name):
    worker = permissions.owned_worker(current_user.id, worker_id)
    if name not in charts.CHARTS:
        abort(404)
    try:
        series = stats.series(worker.id, request.args.get("period", "week"), request.args.get("from") or None,
                              request.args.get("to") or None, zone=timezones.current_zone())
    except ServiceError as exc:
        abort(400, exc.message)
    return chart_response(series, name)


@bp.get("/<int:worker_id>/tasks/<int:task_id>/log")
@login_required
def task_log(worker_id, task_id):
    _, task = permissions.worker_task_of_owner(current_user.id, worker_id, task_id)
    if htmx:
        return render_template("workers/_log.html", task=task)
    return Response(task.log_tail or "(no log was reported for this task)\n", mimetype="text/plain")


@bp.app_template_filter("mb")
def _mb(value) -> str:
    """RAM / GPU memory in MB -> '32 GB' / '512 MB'."""
    if not value:
        return "—"
    value = int(value)
    return f"{value / 1024:.0f} GB" if value >= 1024 else f"{value} MB"


@bp.app_template_global("countdown")
def _countdown(seconds: int) -> str:
    minutes, secs = divmod(max(0, int(seconds)), 60)
    return f"{minutes}:{secs:02d}"


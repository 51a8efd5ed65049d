"""Worker management for providers: create and pair workers, derive their status, list, rename, delete."""

import math
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import Integer, String, case, func, literal_column, update
from sqlalchemy.orm import selectinload

from ..clock import utcnow
from ..database import begin_write_transaction
from ..extensions import db
from ..models import AccountActionKind, Job, JobType, Task, TaskStatus, Worker, WorkerState, WorkerStatus
from ..money import fmt
from ..security import new_pairing_code, new_token, normalize_pairing_code, token_hash
from . import NotFound, Page, ServiceError, is_single_line, ledger, limits, verification

NAME_MAX = 80
PER_PAGE_MAX = 100
SORTS = ("status", "name", "created", "updated")
ORDERS = ("asc", "desc")
TASK_SORTS = ("status", "name", "created")
STATS_PERIODS = ("week", "month", "year", "custom")  # as webapp.services.stats.PERIODS
# The largest id an INTEGER column holds on PostgreSQL; a bigger one cannot exist (and would be a DB error).
MAX_ID = 2**31 - 1

# Sorting by status groups the ones that need attention first: errors, then working, then idle ...
STATUS_RANK = {
    WorkerStatus.SUSPENDED: -1,
    WorkerStatus.ERROR: 0,
    WorkerStatus.BUSY: 1,
    WorkerStatus.ONLINE: 2,
    WorkerStatus.PAUSED: 3,
    WorkerStatus.OFFLINE: 4,
    WorkerStatus.PENDING: 5,
}
TASK_STATUS_RANK = {
    TaskStatus.RUNNING: 0,
    TaskStatus.QUEUED: 1,
    TaskStatus.FAILED: 2,
    TaskStatus.COMPLETED: 3,
    TaskStatus.CANCELED: 4,
}


# --- settings -------------------------------------------------------------------------------------

def _offline_after() -> int:
    return int(current_app.config.get("OFFLINE_AFTER_SECONDS", 90))


def _pairing_minutes() -> int:
    return int(current_app.config.get("PAIRING_MINUTES", 15))


# --- names ----------------------------------------------------------------------------------------

LOCATION_MAX = 128


def clean_name(name) -> str:
    """A worker name: 1..80 printable characters after stripping, or a 400 that says what is wrong."""
    if not isinstance(name, str):
        raise ServiceError("invalid_name", "Give the worker a name (text, 1 to 80 characters).")
    name = name.strip()
    if not name:
        raise ServiceError("invalid_name", "Give the worker a name (1 to 80 characters).")
    if len(name) > NAME_MAX:
        raise ServiceError("invalid_name", f"A worker name has at most {NAME_MAX} characters.")
    if not is_single_line(name):
        raise ServiceError("invalid_name", "A worker name cannot contain control characters or line breaks.")
    return name


# --- create, pair ---------------------------------------------------------------------------------

def _fresh_pairing_code(worker: Worker, now: datetime) -> str:
    """Give `worker` a new pairing code; only its hash is kept."""
    for _ in range(10):
        code = new_pairing_code()
        digest = token_hash(normalize_pairing_code(code))
        # ~40 bits of code space: a clash with a live code is unlikely but would break the unique key.
        if not db.session.execute(db.select(Worker.id).where(Worker.pairing_code_hash == digest)).first():
            break
    worker.pairing_code_hash = digest
    worker.pairing_expires_at = now + timedelta(minutes=_pairing_minutes())
    return code


def create_worker(owner, name: str) -> tuple[Worker, str, str]:
    """A new worker in `pending`: returns it, its one-time pairing code and its token (both shown once)."""
    name = clean_name(name)
    # SQLite: take the write lock before the code-clash read, so the insert cannot lose a race to a
    # heartbeat committed in between (that would be "database is locked", not a wait).
    begin_write_transaction(db.session)
    now = utcnow()
    try:
        limits.take(owner.id, AccountActionKind.WORKER_CREATED, now)
    except limits.LimitReached:
        db.session.rollback()
        raise
    token = new_token("pwk")
    worker = Worker(owner_id=owner.id, name=name, token_hash=token_hash(token), created_at=now, updated_at=now,
                    gpus=[], renderers={}, capabilities={}, compliance=[], mining_config={}, bench_details={},
                    earnings_micros=0, compute_seconds=0.0)
    db.session.add(worker)
    code = _fresh_pairing_code(worker, now)
    db.session.commit()
    return worker, code, token


def regenerate_pairing_code(worker: Worker) -> str:
    """A new pairing code (the old one stops working); the current token stays live until a pair."""
    if worker.deleted_at is not None:
        raise NotFound("worker")
    begin_write_transaction(db.session)
    code = _fresh_pairing_code(worker, utcnow())
    db.session.commit()
    return code


def pair(code: str) -> tuple[Worker, str]:
    """Trade a pairing code for the worker's config token: single use, expires, rotates the token."""
    if not isinstance(code, str) or not code.strip():
        raise ServiceError("invalid_code", "Type the pairing code shown on the New Worker page (like ABCD-EF23).")
    digest = token_hash(normalize_pairing_code(code))
    now = utcnow()
    begin_write_transaction(db.session)
    worker = db.session.execute(
        db.select(Worker).where(Worker.pairing_code_hash == digest, Worker.deleted_at.is_(None))
    ).scalar_one_or_none()
    if worker is None:
        db.session.rollback()
        raise ServiceError("invalid_code", "This pairing code is unknown or was used already: "
                                           "create a new one on the worker's page in the portal.")
    if worker.pairing_expires_at is None or worker.pairing_expires_at <= now:
        db.session.rollback()
        raise ServiceError("expired_code", "This pairing code has expired (codes last "
                                           f"{_pairing_minutes()} minutes): create a new one in the portal.")
    try:
        limits.take(worker.owner_id, AccountActionKind.WORKER_PAIRED, now)  # the code stays good meanwhile
    except limits.LimitReached:
        db.session.rollback()
        raise
    token = new_token("pwk")
    # One conditional UPDATE: of two apps pairing with the same code at once, exactly one wins.
    won = db.session.execute(
        update(Worker)
        .where(Worker.id == worker.id, Worker.pairing_code_hash == digest)
        .values(pairing_code_hash=None, pairing_expires_at=None, token_hash=token_hash(token),
                paired_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.session.rollback()
        raise ServiceError("invalid_code", "This pairing code was used already: create a new one in the portal.")
    db.session.commit()
    db.session.refresh(worker)
    return worker, token


def is_live_pairing_code(worker: Worker, code: str | None, now: datetime | None = None) -> bool:
    """Whether `code` is the worker's current, unexpired pairing code (compared by hash)."""
    now = now or utcnow()
    if not code or worker.pairing_code_hash is None or worker.pairing_expires_at is None:
        return False
    return worker.pairing_expires_at > now and worker.pairing_code_hash == token_hash(normalize_pairing_code(code))


def reissue_token(worker: Worker) -> str:
    """A new token for a config file download (only hashes are kept, so the old one cannot be shown
    again): the previous token stops working and the pairing code is retired; the file is the way in."""
    if worker.deleted_at is not None:
        raise NotFound("worker")
    token = new_token("pwk")
    worker.token_hash = token_hash(token)
    worker.pairing_code_hash = None
    worker.pairing_expires_at = None
    db.session.commit()
    return token


def worker_config(worker: Worker, token: str, server_url: str) -> dict:
    """What the Worker App stores: where to call, who it is, its bearer token."""
    return {"server_url": (server_url or "").rstrip("/"), "worker_id": worker.id, "token": token}


# --- derived status -------------------------------------------------------------------------------

def _derived(now: datetime, values: dict):
    """The status rule as one SQL CASE; `values` maps each WorkerStatus to the SQL value to produce."""
    cutoff = (now or utcnow()) - timedelta(seconds=_offline_after())
    heartbeat = Worker.last_heartbeat_at
    return case(
        (Worker.suspended_at.is_not(None), values[WorkerStatus.SUSPENDED]),
        (heartbeat.is_(None), values[WorkerStatus.PENDING]),
        (heartbeat < cutoff, values[WorkerStatus.OFFLINE]),
        (Worker.state == WorkerState.BUSY, values[WorkerStatus.BUSY]),
        # Paused from the portal shows as paused before the app has heard it (services/fleet.py).
        (db.or_(Worker.state == WorkerState.PAUSED, Worker.paused_at.is_not(None)), values[WorkerStatus.PAUSED]),
        (Worker.state == WorkerState.ERROR, values[WorkerStatus.ERROR]),
        else_=values[WorkerStatus.ONLINE],
    )


def status_expr(now: datetime | None = None):
    """SQL expression: the derived status string of a Worker row (usable in SELECT, WHERE, ORDER BY)."""
    # Constants, not bind parameters: the same expression may appear twice in one statement.
    return _derived(now, {s: literal_column(f"'{s.value}'", String) for s in WorkerStatus})


def status_rank_expr(now: datetime | None = None):
    """SQL expression: the position of the derived status in STATUS_RANK (for sorting)."""
    return _derived(now, {s: literal_column(str(rank), Integer) for s, rank in STATUS_RANK.items()})


def status_of(worker: Worker, now: datetime | None = None) -> WorkerStatus:
    """The same rule as status_expr, in Python."""
    now = now or utcnow()
    if worker.suspended_at is not None:
        return WorkerStatus.SUSPENDED
    heartbeat = worker.last_heartbeat_at
    if heartbeat is None:
        return WorkerStatus.PENDING
    if heartbeat < now - timedelta(seconds=_offline_after()):
        return WorkerStatus.OFFLINE
    if worker.paused_at is not None and worker.state != WorkerState.BUSY:
        return WorkerStatus.PAUSED
    return {
        WorkerState.BUSY: WorkerStatus.BUSY,
        WorkerState.PAUSED: WorkerStatus.PAUSED,
        WorkerState.ERROR: WorkerStatus.ERROR,
    }.get(worker.state, WorkerStatus.ONLINE)


# --- paging helpers -------------------------------------------------------------------------------

def _choice(value, allowed, what: str, default):
    if value is None or value == "":
        return default
    value = str(value).lower()
    if value not in allowed:
        raise ServiceError(f"invalid_{what}", f"Unknown {what} {value!r}: use one of {', '.join(allowed)}.")
    return value


def _page_numbers(page, per_page) -> tuple[int, int]:
    try:
        page = int(page)
    except (TypeError, ValueError):
        raise ServiceError("invalid_page", "page must be a whole number, 1 or more.") from None
    try:
        per_page = int(per_page)
    except (TypeError, ValueError):
        raise ServiceError("invalid_per_page", f"per_page must be a whole number from 1 to {PER_PAGE_MAX}.") from None
    if page < 1 or page > 1_000_000:
        raise ServiceError("invalid_page", "page must be a whole number, 1 or more.")
    if not 1 <= per_page <= PER_PAGE_MAX:
        raise ServiceError("invalid_per_page", f"per_page must be a whole number from 1 to {PER_PAGE_MAX}.")
    return page, per_page


def _paginate(query, filters, order_by, page: int, per_page: int, count_from) -> Page:
    total = db.session.execute(
        db.select(func.count()).select_from(count_from).where(*filters)
    ).scalar_one()
    items = list(db.session.execute(
        query.where(*filters).order_by(*order_by).limit(per_page).offset((page - 1) * per_page)
    ).scalars())
    return Page(items=items, page=page, pages=max(1, math.ceil(total / per_page)), total=total, per_page=per_page)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _id_from_query(q: str) -> tuple[int | None, bool]:
    """(id, only_id): "#12" means exactly worker 12; "12" means id 12 or a name containing "12"."""
    text = q[1:].strip() if q.startswith("#") else q
    if text.isdigit() and text.isascii():
        number = int(text)
        return (number if 0 < number <= MAX_ID else -1), q.startswith("#")
    return None, False


# --- listing --------------------------------------------------------------------------------------

def _worker_filters(owner_id: int, q: str | None, status: str | None, now: datetime,
                    tag: str | None = None, gpu: str | None = None) -> list:
    from . import fleet  # the fleet service owns what a search matches beyond ids (names, GPUs, hosts, tags)
    filters = [Worker.owner_id == owner_id, Worker.deleted_at.is_(None)]
    q = (q or "").strip()[:200]
    if q:
        number, only_id = _id_from_query(q)
        if only_id:
            filters.append(Worker.id == number)
        elif number is not None:
            filters.append(db.or_(Worker.id == number, fleet.text_match(q)))
        else:
            filters.append(fleet.text_match(q))
    if status:
        filters.append(status_expr(now) == status)
    return filters + fleet.filter_conditions(tag, gpu)


def _status_filter(status) -> str | None:
    status = _choice(status, [s.value for s in WorkerStatus] + ["all"], "status", None)
    return None if status == "all" else status


def list_filters(owner_id: int, q: str | None = None, status: str | None = None, tag: str | None = None,
                 gpu: str | None = None, now: datetime | None = None) -> list:
    """The WHERE of the worker list, for acting on "all matching" exactly what the list shows."""
    return _worker_filters(owner_id, q, _status_filter(status), now or utcnow(), tag, gpu)


def list_workers(owner_id: int, q: str | None = None, status: str | None = None, sort: str = "created",
                 order: str = "desc", page: int = 1, per_page: int = 25, now: datetime | None = None,
                 tag: str | None = None, gpu: str | None = None) -> Page:
    """One page of the owner's workers: search, filters, sort and paging all done by the database."""
    now = now or utcnow()
    status = _status_filter(status)
    sort = _choice(sort, SORTS, "sort", "created")
    order = _choice(order, ORDERS, "order", "desc")
    page, per_page = _page_numbers(page, per_page)

    key = {
        "status": status_rank_expr(now),
        "name": func.lower(Worker.name),
        "created": Worker.created_at,
        "updated": Worker.updated_at,
    }[sort]
    direction = (lambda col: col.asc()) if order == "asc" else (lambda col: col.desc())
    return _paginate(db.select(Worker).options(selectinload(Worker.tag_rows)), _worker_filters(owner_id, q, status, now, tag, gpu),
                     [direction(key), direction(Worker.id)], page, per_page, Worker)


def status_counts(owner_id: int, now: datetime | None = None) -> dict[str, int]:
    """How many of the owner's workers are in each derived status (every status present, zeros too)."""
    now = now or utcnow()
    derived = db.select(status_expr(now).label("status")).where(
        Worker.owner_id == owner_id, Worker.deleted_at.is_(None)).subquery()
    rows = db.session.execute(
        db.select(derived.c.status, func.count()).group_by(derived.c.status)
    ).all()
    counts = {s.value: 0 for s in WorkerStatus}
    counts.update({status: n for status, n in rows})
    return counts


# --- changes --------------------------------------------------------------------------------------

def rename(worker: Worker, name: str) -> Worker:
    name = clean_name(name)
    begin_write_transaction(db.session)
    worker.name = name
    db.session.commit()
    return worker


def set_location(worker: Worker, location) -> Worker:
    """The provider's own location label, shown instead of the country looked up from the worker's IP;
    an empty one clears it."""
    if location is not None and not isinstance(location, str):
        raise ServiceError("invalid_location", "A location is text, e.g. \"Berlin, DE\"; empty clears it.")
    location = (location or "").strip()
    if len(location) > LOCATION_MAX:
        raise ServiceError("invalid_location", f"A location has at most {LOCATION_MAX} characters.")
    if not is_single_line(location):
        raise ServiceError("invalid_location", "A location cannot contain control characters or line breaks.")
    begin_write_transaction(db.session)
    worker.location_override = location or None
    db.session.commit()
    return worker


def delete(worker: Worker) -> None:
    """Hide the worker and revoke its token at once; its tasks go back to the queue, its history stays."""
    if worker.deleted_at is not None:
        return
    from . import dispatch  # imported late: dispatch imports this module's neighbours
    # Revoke first: once committed the app can claim nothing more, so the hand-back below is final
    # (and if it never ran, the lease reaper would still return the tasks).
    begin_write_transaction(db.session)
    worker.deleted_at = utcnow()
    worker.token_hash = None
    worker.pairing_code_hash = None
    worker.pairing_expires_at = None
    db.session.commit()
    dispatch.requeue_worker_tasks(worker, "worker deleted")


# --- JSON -----------------------------------------------------------------------------------------

def iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def serialize(worker: Worker, now: datetime | None = None, uptime_percent: float | None = None,
              uptime_seconds: int | None = None, device_slots: list[dict] | None = None) -> dict:
    """The Worker JSON of the provider API (documented in its OpenAPI schema); money as decimal strings."""
    from . import presence, slots
    now = now or utcnow()
    if uptime_percent is None:
        uptime_percent = presence.uptime_percent([worker.id], now=now).get(worker.id, 0.0)
    if uptime_seconds is None:
        uptime_seconds = presence.current_uptime_seconds(worker, now=now)
    split = ledger.earnings_split(worker.id, now)
    return {
        "id": worker.id,
        "name": worker.name,
        "status": status_of(worker, now).value,
        "status_message": worker.state_message,
        "created_at": iso(worker.created_at),
        "updated_at": iso(worker.updated_at),
        "last_heartbeat_at": iso(worker.last_heartbeat_at),
        "paired_at": iso(worker.paired_at),
        "gpus": worker.gpus or [],
        "gpu_name": worker.gpu_name,
        "cpu": worker.cpu,
        "os": worker.os,
        "ram_mb": worker.ram_mb,
        "earnings": fmt(worker.earnings_micros),
        "earnings_pending": fmt(split["pending"]),
        "earnings_available": fmt(split["available"]),
        "record": verification.record_of(worker),
        "suspended_reason": worker.suspended_reason,
        "compute_seconds": round(worker.compute_seconds or 0.0, 3),
        "uptime_seconds": int(uptime_seconds),
        "uptime_percent_30d": round(float(uptime_percent), 2),
        "bid": fmt(worker.bid_micros) if worker.bid_micros is not None else None,
        "bench_score": worker.bench_score,
        "bench_score_reported": worker.bench_score_reported,
        "country": worker.country,
        "location": worker.location_override or worker.country,
        "app_version": worker.app_version,
        "tags": worker.tags,
        "paused_by_portal": worker.paused_at is not None,
        "slots": device_slots if device_slots is not None else slots.summary(worker),
    }


def serialize_many(workers: list[Worker], now: datetime | None = None) -> list[dict]:
    """serialize() for a page of workers with one query per uptime figure for all of them."""
    from . import presence, slots
    now = now or utcnow()
    ids = [w.id for w in workers]
    percents, currents = presence.uptime_percent(ids, now=now), presence.current_uptimes(ids, now=now)
    device_slots = slots.summaries(workers)
    return [serialize(w, now, uptime_percent=percents[w.id], uptime_seconds=currents[w.id],
                      device_slots=device_slots[w.id]) for w in workers]


# --- a worker's tasks -----------------------------------------------------------------------------

def list_tasks(worker: Worker, q: str | None = None, status: str | None = None, sort: str = "created",
               order: str = "desc", page: int = 1, per_page: int = 25) -> Page:
    """One page of the tasks this worker holds or ran: search by job name (or job/task ID), filter, sort."""
    status = _choice(status, [s.value for s in TaskStatus] + ["all"], "status", None)
    status = None if status == "all" else status
    sort = _choice(sort, TASK_SORTS, "sort", "created")
    order = _choice(order, ORDERS, "order", "desc")
    page, per_page = _page_numbers(page, per_page)

    filters = [Task.worker_id == worker.id]
    q = (q or "").strip()[:200]
    if q:
        number, only_id = _id_from_query(q)
        by_name = Job.name.ilike(_like(q), escape="\\")
        if only_id:
            filters.append(db.or_(Task.job_id == number, Task.id == number))
        elif number is not None:
            filters.append(db.or_(Task.job_id == number, Task.id == number, by_name))
        else:
            filters.append(by_name)
    if status:
        filters.append(Task.status == TaskStatus(status))
    key = {
        "status": case(*((Task.status == s, rank) for s, rank in TASK_STATUS_RANK.items()), else_=9),
        "name": func.lower(Job.name),
        "created": Task.created_at,
    }[sort]
    direction = (lambda col: col.asc()) if order == "asc" else (lambda col: col.desc())
    # Count through the join only when the job name filters: otherwise the count is an index-only scan
    # of tasks (a farm node has ~100k tasks; the join made the count ~30x slower).
    count_from = Task.__table__.join(Job.__table__, Task.job_id == Job.id) if q else Task.__table__
    return _paginate(db.select(Task).join(Job, Task.job_id == Job.id), filters,
                     [direction(key), direction(Task.id)], page, per_page, count_from)


def task_duration_seconds(task: Task, now: datetime) -> float | None:
    """How long the task ran: start to finish, or to now while it runs; None before it started."""
    if task.started_at is None:
        return None
    end = task.finished_at or (now if task.status == TaskStatus.RUNNING else None)
    return None if end is None else max(0.0, round((end - task.started_at).total_seconds(), 3))


def task_software_label(task: Task, worker: Worker) -> str:
    """The job type as the software used, e.g. "Blender 3.4 · Cycles" or "Real-ESRGAN x4"."""
    if task.type == JobType.VERIFY:
        return f"Spot check · {task.job.software}"
    label = task.job.software or task.type.value.title()
    renderers = worker.renderers or {}
    version = None
    if task.type.value == "render":
        version = (renderers.get("blender") or {}).get("version")
        product = "Blender"
    else:
        product = "Real-ESRGAN"
    if version and product in label and str(version) not in label:
        short = ".".join(str(version).split(".")[:2])
        label = label.replace(product, f"{product} {short}", 1)
    return label


COMPLIANCE_STATUSES = {"ok": "pass", "passed": "pass", "warning": "warn", "failed": "fail", "error": "fail"}


# The Worker App reports its checks by id (tray_client/compliance.py): the titles a person reads.
COMPLIANCE_TITLES = {
    "app_version": "App version", "credentials_file": "Worker token file", "server_connection": "Connection to the portal",
    "renderer_hardening": "Blender auto-run scripts off", "renderer_sandbox": "Render sandbox",
    "not_admin": "Runs without admin rights", "free_disk": "Free disk space", "gpu_driver": "GPU driver",
}


def _check_title(raw) -> str:
    """A known id's title; an unknown snake_case id made readable ("os_updates" -> "Os updates")."""
    text = str(raw or "Check")
    if text in COMPLIANCE_TITLES:
        return COMPLIANCE_TITLES[text]
    return text.replace("_", " ").capitalize() if "_" in text or text.islower() else text


def compliance_checks(worker: Worker) -> list[dict]:
    """The app's security checks, whatever key names it used, as name / status (pass|warn|fail) / reason."""
    checks = []
    for item in worker.compliance or []:
        if not isinstance(item, dict):
            continue
        status = str(item.get("status") or item.get("result") or "warn").lower()
        status = COMPLIANCE_STATUSES.get(status, status)
        reason = str(item.get("reason") or item.get("message") or item.get("detail") or "")
        checks.append({
            "name": _check_title(item.get("label") or item.get("name") or item.get("check") or item.get("id")),
            "status": status if status in ("pass", "warn", "fail") else "warn",
            "reason": reason[:1].upper() + reason[1:],  # the app writes clauses; the page shows sentences
        })
    return checks


def gpu_groups(worker: Worker) -> list[dict]:
    """Identical GPUs counted once: "4 × NVIDIA GeForce RTX 3090 · 24 GB · driver 535.154.05"."""
    groups: dict[tuple, dict] = {}
    for gpu in worker.gpus or []:
        if not isinstance(gpu, dict):
            continue
        key = (gpu.get("name") or "GPU", gpu.get("memory_mb"), gpu.get("driver"))
        group = groups.setdefault(key, {"name": key[0], "memory_mb": key[1], "driver": key[2], "count": 0})
        group["count"] += 1
    return list(groups.values())


def serialize_task(task: Task, now: datetime | None = None) -> dict:
    now = now or utcnow()
    duration = task_duration_seconds(task, now)
    return {
        "id": task.id,
        "job_id": task.job_id,
        "job_name": task.job.name,
        "job_type": task.type.value,
        "software": task.job.software,
        "status": task.status.value,
        "progress": round(float(task.progress or 0.0), 4),
        "message": task.message,
        "reward": fmt(task.reward_micros) if task.reward_micros is not None else None,
        "slot": task.slot,  # the device it ran on (gpu0, cpu...)
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration_seconds": duration,
    }


# --- statistics -----------------------------------------------------------------------------------

def stats_series(worker: Worker, period: str | None = "week", start=None, end=None,
                 now: datetime | None = None) -> dict:
    """Totals and per-bucket series (earnings by task, completed/failed, mining) over a period, for the API."""
    from . import stats  # the statistics service owns the daily roll-ups and their bucketing
    body = stats.series(worker.id, period or "week", start, end, now=now).to_dict()
    body["worker_id"] = worker.id
    body["lifetime"] = {"earnings": fmt(worker.earnings_micros),
                        "compute_seconds": round(worker.compute_seconds or 0.0, 3)}
    return body
